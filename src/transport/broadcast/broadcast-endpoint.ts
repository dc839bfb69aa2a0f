/**
 * Connections between the tabs of one origin over a BroadcastChannel. A channel reaches every
 * other tab listening on its name, so each tab's endpoint has an id and every message names
 * its sender, its addressee and its connection: many point-to-point Connections share one
 * channel. Messages from one tab arrive in the order it posted them. A tab that goes away
 * says 'gone' if it can; one that crashes says nothing (the tabs layer learns it from Web Locks).
 * Browser-safe: no Node built-ins.
 */
import type { CloseInfo, Connection } from '../connection.js';

/** The part of the standard BroadcastChannel this transport uses (browsers', Node's). */
export interface BroadcastChannelLike {
  postMessage(message: unknown): void;
  close(): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
}

/** A BroadcastChannel class: `globalThis.BroadcastChannel` in browsers and Node 18+. */
export type BroadcastChannelConstructor = new (name: string) => BroadcastChannelLike;

/** The wire of the channel: plain objects, structured-cloned by the browser. */
type Message =
  | { k: 'open'; from: string; to: string; conn: string }
  | { k: 'frame'; from: string; to: string; conn: string; data: Uint8Array }
  | { k: 'close'; from: string; to: string; conn: string; code: string; message: string }
  | { k: 'signal'; from: string; to: string | null; topic: string; data: unknown }
  | { k: 'gone'; from: string };

/** Reads a message posted by another tab; anything malformed (another app, another version) is null. */
function parse(data: unknown): Message | null {
  if (data === null || typeof data !== 'object') return null;
  const m = data as Record<string, unknown>;
  if (typeof m['from'] !== 'string') return null;
  const str = (key: string): boolean => typeof m[key] === 'string';
  switch (m['k']) {
    case 'open':
      return str('to') && str('conn') ? (m as Message) : null;
    case 'frame':
      return str('to') && str('conn') && m['data'] instanceof Uint8Array ? (m as Message) : null;
    case 'close':
      return str('to') && str('conn') && str('code') && str('message') ? (m as Message) : null;
    case 'signal':
      return (m['to'] === null || str('to')) && str('topic') ? (m as Message) : null;
    case 'gone':
      return m as Message;
    default:
      return null;
  }
}

class BroadcastConnection implements Connection {
  private readonly frameListeners: ((frame: Uint8Array) => void)[] = [];
  private closeListeners: ((info: CloseInfo) => void)[] = [];
  private closeInfo: CloseInfo | undefined;
  /** Frames that arrived before the first onFrame listener. */
  private backlog: Uint8Array[] = [];

  constructor(
    private readonly endpoint: BroadcastEndpoint,
    readonly peer: string,
    readonly id: string,
  ) {}

  send(frame: Uint8Array): boolean {
    if (this.closeInfo !== undefined) return false;
    // postMessage clones synchronously: the caller may reuse its buffer at once.
    return this.endpoint.post({ k: 'frame', from: this.endpoint.self, to: this.peer, conn: this.id, data: frame });
  }

  close(code: string, message: string): void {
    if (this.closeInfo !== undefined) return;
    this.endpoint.post({ k: 'close', from: this.endpoint.self, to: this.peer, conn: this.id, code, message });
    this.finish({ code, message });
  }

  onFrame(listener: (frame: Uint8Array) => void): void {
    this.frameListeners.push(listener);
    if (this.frameListeners.length === 1 && this.backlog.length > 0) queueMicrotask(() => this.flush());
  }

  onClose(listener: (info: CloseInfo) => void): void {
    if (this.closeInfo !== undefined) listener(this.closeInfo);
    else this.closeListeners.push(listener);
  }

  /** A frame from the peer. */
  received(frame: Uint8Array): void {
    if (this.closeInfo !== undefined) return;
    if (this.frameListeners.length === 0 || this.backlog.length > 0) {
      this.backlog.push(frame);
      return;
    }
    for (const l of this.frameListeners) l(frame);
  }

  private flush(): void {
    while (this.closeInfo === undefined && this.frameListeners.length > 0) {
      const frame = this.backlog.shift();
      if (frame === undefined) return;
      for (const l of this.frameListeners) l(frame);
    }
  }

  /** The peer closed, or went away. */
  finish(info: CloseInfo): void {
    if (this.closeInfo !== undefined) return;
    this.flush();
    this.closeInfo = info;
    this.backlog = [];
    this.endpoint.forget(this);
    const listeners = this.closeListeners;
    this.closeListeners = [];
    for (const l of listeners) l(info);
  }
}

/**
 * One tab's end of a BroadcastChannel: opens Connections to other tabs, accepts theirs, and
 * carries small signals (a leader's announcement) to one tab or all.
 */
export class BroadcastEndpoint {
  private readonly connections = new Map<string, BroadcastConnection>();
  private acceptListener: ((conn: Connection, from: string) => void) | undefined;
  private readonly signalListeners: ((topic: string, from: string, data: unknown) => void)[] = [];
  private closed = false;
  private nextConn = 0;

  /**
   * @param channel a BroadcastChannel this endpoint owns (it closes it).
   * @param self this tab's id, unique among the tabs on the channel (random per page load).
   */
  constructor(
    private readonly channel: BroadcastChannelLike,
    readonly self: string,
  ) {
    channel.addEventListener('message', (event) => this.receive(event.data));
  }

  /** Opens a Connection to tab `to`. Frames may be sent at once; they follow the opening. */
  connect(to: string): Connection {
    const conn = new BroadcastConnection(this, to, `${this.self}.${++this.nextConn}`);
    if (this.closed) {
      conn.finish({ code: 'closed', message: 'this tab closed its channel' });
      return conn;
    }
    this.connections.set(key(to, conn.id), conn);
    this.post({ k: 'open', from: this.self, to, conn: conn.id });
    return conn;
  }

  /** Who handles Connections other tabs open to this one; without a listener they are refused. */
  onAccept(listener: ((conn: Connection, from: string) => void) | undefined): void {
    this.acceptListener = listener;
  }

  /** Sends a signal to tab `to`, or to every other tab when `to` is null. */
  signal(topic: string, data: unknown = null, to: string | null = null): void {
    this.post({ k: 'signal', from: this.self, to, topic, data });
  }

  onSignal(listener: (topic: string, from: string, data: unknown) => void): void {
    this.signalListeners.push(listener);
  }

  /** Closes every connection, tells the other tabs this one is gone, and closes the channel. */
  close(): void {
    if (this.closed) return;
    for (const c of [...this.connections.values()]) c.close('closed', 'the tab closed its channel');
    this.post({ k: 'gone', from: this.self });
    this.closed = true;
    this.acceptListener = undefined;
    this.channel.close();
  }

  /** Posts a message; false when the channel is closed (the tab is going away). */
  post(message: Message): boolean {
    if (this.closed) return false;
    try {
      this.channel.postMessage(message);
      return true;
    } catch {
      // A channel closed under us (page unloading): like a socket that died.
      return false;
    }
  }

  forget(conn: BroadcastConnection): void {
    this.connections.delete(key(conn.peer, conn.id));
  }

  private receive(data: unknown): void {
    if (this.closed) return;
    const m = parse(data);
    if (m === null || m.from === this.self) return;
    switch (m.k) {
      case 'open': {
        if (m.to !== this.self) return;
        const conn = new BroadcastConnection(this, m.from, m.conn);
        this.connections.set(key(m.from, m.conn), conn);
        const accept = this.acceptListener;
        if (accept === undefined) conn.close('unavailable', 'this tab does not accept connections');
        else accept(conn, m.from);
        return;
      }
      case 'frame':
        if (m.to === this.self) this.connections.get(key(m.from, m.conn))?.received(m.data);
        return;
      case 'close':
        if (m.to === this.self) this.connections.get(key(m.from, m.conn))?.finish({ code: m.code, message: m.message });
        return;
      case 'signal':
        if (m.to === null || m.to === this.self) for (const l of [...this.signalListeners]) l(m.topic, m.from, m.data);
        return;
      case 'gone':
        for (const c of [...this.connections.values()]) {
          if (c.peer === m.from) c.finish({ code: 'disconnected', message: `tab ${m.from} went away` });
        }
        return;
    }
  }
}

function key(peer: string, conn: string): string {
  return `${peer}/${conn}`;
}
