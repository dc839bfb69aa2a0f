/**
 * The simulated network: connections between replicas whose frames travel with seeded
 * delays. Each direction of a connection is a FIFO queue (TCP keeps order), while deliveries
 * on different connections interleave in the order their seeded delays give them. Faults:
 * a cut closes both ends at once; a partition stalls every connection across it (frames
 * queue and wait) until it heals, when each stalled connection is either cut or resumes; a
 * crashed replica's end dies silently, and its peer learns of it only when the close arrives
 * (or its heartbeat gives up).
 * Invariant: a frame is delivered at most once, in order, and never after its connection died.
 */
import type { CloseInfo, Connection } from '../transport/index.js';
import type { SeededRandom } from './prng.js';
import { between, chance } from './prng.js';
import type { EventHandle } from './event-queue.js';
import type { VirtualTime } from './sim-clock.js';

/** Frame tags of the wire protocol (protocol/codec.ts), for traces and the quiet-round check. */
export const FRAME_TYPES = ['?', 'hello', 'auth', 'pull', 'batch', 'ack', 'error', 'ping', 'pong'] as const;
export const TAG_PING = 7;
export const TAG_PONG = 8;

type Item = { kind: 'frame'; bytes: Uint8Array; readyAt: number } | { kind: 'fin'; info: CloseInfo; readyAt: number };

interface Direction {
  queue: Item[];
  pump: EventHandle | null;
  lastReadyAt: number;
}

export interface LinkLatency {
  baseMs: number;
  jitterMs: number;
}

export interface NetworkObserver {
  delivered?(conn: SimConnection, fromSide: 0 | 1, bytes: Uint8Array): void;
  closed?(conn: SimConnection, side: 0 | 1, info: CloseInfo, how: 'local' | 'remote' | 'cut'): void;
}

export const linkKey = (a: number, b: number): string => (a < b ? `${a}-${b}` : `${b}-${a}`);

class SimEnd implements Connection {
  closed = false;
  private frameListeners: ((f: Uint8Array) => void)[] = [];
  private closeListeners: ((c: CloseInfo) => void)[] = [];

  constructor(
    private readonly conn: SimConnection,
    readonly side: 0 | 1,
  ) {}

  send(frame: Uint8Array): boolean {
    if (this.closed) return false;
    this.conn.countSent(frame);
    this.conn.enqueue(this.side, { kind: 'frame', bytes: frame.slice(), readyAt: 0 });
    return true;
  }

  close(code: string, message: string): void {
    if (this.closed) return;
    this.closed = true;
    this.notify({ code, message });
    this.conn.observer.closed?.(this.conn, this.side, { code, message }, 'local');
    this.conn.enqueue(this.side, { kind: 'fin', info: { code, message }, readyAt: 0 });
    this.conn.checkDead();
  }

  onFrame(listener: (frame: Uint8Array) => void): void {
    this.frameListeners.push(listener);
  }

  onClose(listener: (info: CloseInfo) => void): void {
    if (this.closed) listener({ code: 'closed', message: 'connection already closed' });
    else this.closeListeners.push(listener);
  }

  deliver(frame: Uint8Array): void {
    if (this.closed) return;
    for (const l of this.frameListeners) l(frame);
  }

  /** The other end closed, or the connection was cut. */
  remoteClosed(info: CloseInfo, how: 'remote' | 'cut'): void {
    if (this.closed) return;
    this.closed = true;
    this.conn.observer.closed?.(this.conn, this.side, info, how);
    this.notify(info);
  }

  /** The process holding this end died: nothing more reaches it, nobody is told. */
  kill(): void {
    this.closed = true;
    this.frameListeners = [];
    this.closeListeners = [];
  }

  private notify(info: CloseInfo): void {
    const ls = this.closeListeners;
    this.closeListeners = [];
    for (const l of ls) l(info);
  }
}

export class SimConnection {
  readonly ends: readonly [SimEnd, SimEnd];
  private readonly dirs: [Direction, Direction] = [
    { queue: [], pump: null, lastReadyAt: 0 },
    { queue: [], pump: null, lastReadyAt: 0 },
  ];
  stalled = false;
  dead = false;

  constructor(
    readonly id: number,
    /** The replica index at each end. */
    readonly replicas: readonly [number, number],
    private readonly net: SimNetwork,
    readonly observer: NetworkObserver,
    private readonly onDead: (conn: SimConnection) => void,
  ) {
    this.ends = [new SimEnd(this, 0), new SimEnd(this, 1)];
  }

  get key(): string {
    return linkKey(this.replicas[0], this.replicas[1]);
  }

  sideOf(replica: number): 0 | 1 {
    return this.replicas[0] === replica ? 0 : 1;
  }

  countSent(frame: Uint8Array): void {
    const tag = frame[0] ?? 0;
    const by = this.net.stats.sentByTag;
    by[tag] = (by[tag] ?? 0) + 1;
  }

  /** Items queued in either direction. */
  get queued(): number {
    return this.dirs[0].queue.length + this.dirs[1].queue.length;
  }

  enqueue(fromSide: 0 | 1, item: Item): void {
    if (this.dead) return;
    const d = this.dirs[fromSide];
    item.readyAt = Math.max(d.lastReadyAt, this.net.time.nowMs + this.net.delayMs(this.key));
    d.lastReadyAt = item.readyAt;
    d.queue.push(item);
    this.schedulePump(fromSide);
  }

  private schedulePump(fromSide: 0 | 1): void {
    const d = this.dirs[fromSide];
    if (this.stalled || this.dead || d.pump !== null) return;
    const head = d.queue[0];
    if (head === undefined) return;
    d.pump = this.net.time.at(head.readyAt, `deliver c${this.id}`, () => {
      d.pump = null;
      this.deliverHead(fromSide);
    });
  }

  private deliverHead(fromSide: 0 | 1): void {
    if (this.stalled || this.dead) return;
    const d = this.dirs[fromSide];
    const item = d.queue.shift();
    if (item === undefined) return;
    const to = this.ends[fromSide === 0 ? 1 : 0];
    if (item.kind === 'frame') {
      if (!to.closed) {
        this.net.stats.delivered++;
        this.observer.delivered?.(this, fromSide, item.bytes);
        to.deliver(item.bytes);
      }
    } else {
      to.remoteClosed(item.info, 'remote');
      this.checkDead();
    }
    this.schedulePump(fromSide);
  }

  stall(): void {
    if (this.stalled) return;
    this.stalled = true;
    for (const d of this.dirs) {
      d.pump?.cancel();
      d.pump = null;
    }
  }

  resume(): void {
    if (!this.stalled) return;
    this.stalled = false;
    for (const side of [0, 1] as const) {
      const d = this.dirs[side];
      // What waited goes out now, after a fresh delay, in order.
      let at = this.net.time.nowMs;
      for (const item of d.queue) {
        at = Math.max(at, this.net.time.nowMs + this.net.delayMs(this.key));
        item.readyAt = at;
      }
      d.lastReadyAt = Math.max(d.lastReadyAt, at);
      this.schedulePump(side);
    }
  }

  /** Both ends close at once (a reset): nothing queued is delivered. */
  cut(info: CloseInfo): void {
    if (this.dead) return;
    this.clearQueues();
    this.ends[0].remoteClosed(info, 'cut');
    this.ends[1].remoteClosed(info, 'cut');
    this.checkDead();
  }

  /** The replica at `side` died: frames to it are lost; what it sent still goes, then a close. */
  killSide(side: 0 | 1): void {
    if (this.dead) return;
    this.ends[side].kill();
    const toDead = this.dirs[side === 0 ? 1 : 0];
    toDead.queue = [];
    toDead.pump?.cancel();
    toDead.pump = null;
    this.enqueue(side, {
      kind: 'fin',
      info: { code: 'disconnected', message: 'the peer process died' },
      readyAt: 0,
    });
    this.checkDead();
  }

  checkDead(): void {
    if (this.dead || !this.ends[0].closed || !this.ends[1].closed) return;
    this.dead = true;
    this.clearQueues();
    this.onDead(this);
  }

  private clearQueues(): void {
    for (const d of this.dirs) {
      d.queue = [];
      d.pump?.cancel();
      d.pump = null;
    }
  }
}

export interface NetworkStats {
  /** Frames sent, by wire tag (index 7 is ping, 8 pong). */
  sentByTag: number[];
  connections: number;
  delivered: number;
  cuts: number;
  stalls: number;
}

export class SimNetwork {
  private readonly conns = new Set<SimConnection>();
  private readonly partitioned = new Set<string>();
  private readonly latency = new Map<string, LinkLatency>();
  private nextId = 1;
  readonly stats: NetworkStats = { sentByTag: [], connections: 0, delivered: 0, cuts: 0, stalls: 0 };

  constructor(
    readonly time: VirtualTime,
    private readonly rng: SeededRandom,
    private readonly observer: NetworkObserver = {},
  ) {}

  setLatency(a: number, b: number, latency: LinkLatency): void {
    this.latency.set(linkKey(a, b), latency);
  }

  /** One frame's delay on a link: its base latency, jitter, and now and then a spike. */
  delayMs(key: string): number {
    const l = this.latency.get(key) ?? { baseMs: 5, jitterMs: 5 };
    let ms = l.baseMs + this.rng.int(l.jitterMs + 1);
    if (chance(this.rng, 0.02)) ms += between(this.rng, 50, 600);
    return ms;
  }

  /** Opens a connection between replicas `a` and `b` (side 0 is `a`). */
  connect(a: number, b: number, onDead: (conn: SimConnection) => void): SimConnection {
    const conn = new SimConnection(this.nextId++, [a, b], this, this.observer, (c) => {
      this.conns.delete(c);
      onDead(c);
    });
    this.conns.add(conn);
    this.stats.connections++;
    if (this.partitioned.has(conn.key)) {
      conn.stall();
      this.stats.stalls++;
    }
    return conn;
  }

  isPartitioned(a: number, b: number): boolean {
    return this.partitioned.has(linkKey(a, b));
  }

  get hasPartition(): boolean {
    return this.partitioned.size > 0;
  }

  /** Stalls every connection on the given links, and any opened on them later. */
  partition(links: readonly (readonly [number, number])[]): void {
    for (const [a, b] of links) this.partitioned.add(linkKey(a, b));
    for (const c of this.conns) {
      if (this.partitioned.has(c.key) && !c.stalled) {
        c.stall();
        this.stats.stalls++;
      }
    }
  }

  /** Ends the partition: each stalled connection is cut or resumes, as the seed says. */
  heal(): void {
    this.partitioned.clear();
    for (const c of [...this.conns]) {
      if (!c.stalled) continue;
      if (chance(this.rng, 0.5)) this.cut(c, 'the partition broke the connection');
      else c.resume();
    }
  }

  cut(conn: SimConnection, message: string): void {
    if (conn.dead) return;
    this.stats.cuts++;
    conn.cut({ code: 'cut', message });
  }

  /** A replica's process died: each of its connections loses that end. */
  crash(replica: number): void {
    for (const c of [...this.conns]) {
      if (c.replicas[0] === replica) c.killSide(0);
      else if (c.replicas[1] === replica) c.killSide(1);
    }
  }

  /** Open connections, oldest first. */
  connections(): SimConnection[] {
    return [...this.conns];
  }

  /** Frames and closes queued anywhere (stalled ones included). */
  get pending(): number {
    let n = 0;
    for (const c of this.conns) n += c.queued;
    return n;
  }
}
