/**
 * Presence: small ephemeral states (name, colour, cursor) per publisher and room, relayed
 * between replicas like Yjs awareness and never stored. Each replica holds one hub, shared by
 * all its sessions; the hub floods every new update to every other session and drops repeats.
 * Invariant: for each (publisher, room) only the highest counter ever counts, so flooding over
 * any graph of leaders ends (a repeat is not forwarded) and every hub converges on the newest
 * update. It must never write to storage or block a session.
 *
 * How a state disappears:
 *   - the publisher leaves (`set(null)`, `close()`): a `null` update, flooded like any other;
 *   - its session closes: only the hub at the other end of that session (the one that heard
 *     it with `hops` 0) announces `null` for it, with the next counter, and only when its
 *     newest update came through that session; every other hub waits for that announcement;
 *   - anything else (a leader crash, a partition): the state lapses `ttlMs` after its last
 *     refresh at each hub. Publishers refresh every ttlMs / 3.
 * An announced `null` is a guess made for the publisher, so the publisher keeps the last word:
 * when it attaches or loses a session it republishes with a counter two ahead (above any
 * announcement for its last counter), and when it hears `null` for itself while it is still
 * in the room it refutes it at once with a higher counter.
 */
import type { JsonValue } from '../core/json-value.js';
import { encodeJsonValue } from '../core/json-value.js';
import type { Env, TimerHandle } from '../env/env.js';
import type { MessageOf } from '../protocol/index.js';
import { WIRE_LIMITS } from '../protocol/index.js';
import { fromUtf8 } from '../core/codec.js';
import { DbError, ErrorCode, isDbError } from '../shared/errors.js';

export type PresenceMessage = MessageOf<'presence'>;

/** Another publisher's state in a room. */
export interface PresencePeer {
  /** The publisher id: the replica id, `~`, a suffix chosen per open database. */
  readonly id: string;
  readonly state: JsonValue;
}

export interface PresenceHubOptions {
  env: Env;
  /** The publisher id of this hub's own rooms (see `publisherId`). */
  self: string;
  /** Lifetime of this hub's own states without a refresh (default 30 s). */
  ttlMs?: number;
}

/** One session as the hub sees it: the driver hands in what it receives, and detaches at the end. */
export interface PresencePort {
  receive(message: PresenceMessage): void;
  detach(): void;
}

export const PRESENCE_TTL_MS_DEFAULT = 30_000;
/** A lapse sweep runs at most this often, so refreshes that keep moving the earliest deadline cost little. */
const SWEEP_GAP_MS = 250;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** A publisher id for a database: unique per open, so two tabs of one replica are distinct. */
export function publisherId(replica: string, env: Env): string {
  let suffix = '';
  for (const b of env.random.bytes(6)) suffix += b.toString(16).padStart(2, '0');
  return `${replica}~${suffix}`;
}

class Port implements PresencePort {
  open = true;
  /** Publishers heard with hops 0 here: the peer itself, one hop away. */
  readonly direct = new Set<string>();

  constructor(
    private readonly hub: PresenceHub,
    readonly send: (message: PresenceMessage) => void,
  ) {}

  receive(message: PresenceMessage): void {
    if (this.open) this.hub.receive(this, message);
  }

  detach(): void {
    if (this.open) this.hub.detach(this);
  }
}

interface Entry {
  counter: number;
  /** JSON text; null once the publisher left or lapsed (kept until `expiresAtMs` so a late repeat stays dropped). */
  state: string | null;
  hops: number;
  ttlMs: number;
  expiresAtMs: number;
  /** The session its newest update came through; null when this hub made it (an announced leave). */
  via: Port | null;
}

interface LocalState {
  text: string;
  /** The counter it was last sent with. */
  counter: number;
  ttlMs: number;
  refresh: TimerHandle | undefined;
}

export class PresenceHub {
  readonly self: string;
  private readonly env: Env;
  private readonly ttlMs: number;
  private readonly ports = new Set<Port>();
  /** room -> publisher -> newest update heard. */
  private readonly rooms = new Map<string, Map<string, Entry>>();
  private readonly local = new Map<string, LocalState>();
  private readonly listeners = new Map<string, Set<(others: PresencePeer[]) => void>>();
  private readonly handles = new Map<string, PresenceRoom>();
  private counter = 0;
  private sweepAtMs = Infinity;
  private sweepTimer: TimerHandle | undefined;
  private closed = false;

  constructor(options: PresenceHubOptions) {
    this.env = options.env;
    this.self = options.self;
    this.ttlMs = checkTtl(options.ttlMs ?? PRESENCE_TTL_MS_DEFAULT);
  }

  /**
   * A session joins: it gets this hub's current states at once (a tab that joins sees the
   * others immediately), then every update heard elsewhere. `send` must not throw.
   */
  attach(send: (message: PresenceMessage) => void): PresencePort {
    const port = new Port(this, send);
    if (this.closed) {
      port.open = false;
      return port;
    }
    this.ports.add(port);
    this.republishLocal();
    const now = this.env.clock.nowMs();
    for (const [room, entries] of this.rooms) {
      for (const [publisher, e] of entries) {
        if (e.hops + 1 > WIRE_LIMITS.presenceHopsMax) continue;
        // Leaves too: the peer may still hold a state this hub knows is gone.
        const ttlMs = Math.max(1, Math.min(e.ttlMs, e.expiresAtMs - now));
        port.send({ type: 'presence', publisher, room, counter: e.counter, hops: e.hops + 1, ttlMs, state: e.state });
      }
    }
    return port;
  }

  /** The room handle of this hub's own publisher; the same one until it is closed. */
  room(name: string, options: { ttlMs?: number } = {}): PresenceRoom {
    checkRoom(name);
    const ttlMs = options.ttlMs === undefined ? this.ttlMs : checkTtl(options.ttlMs);
    let r = this.handles.get(name);
    if (r === undefined) {
      r = new PresenceRoom(this, name, ttlMs);
      this.handles.set(name, r);
    }
    return r;
  }

  /** Publishers with a live state in any room, this hub's own included: the size of the crowd. */
  publishers(): number {
    const ids = new Set<string>();
    if (this.local.size > 0) ids.add(this.self);
    for (const entries of this.rooms.values()) for (const [id, e] of entries) if (e.state !== null) ids.add(id);
    return ids.size;
  }

  /** The other publishers' states in `room`, sorted by id. */
  others(room: string): PresencePeer[] {
    const entries = this.rooms.get(room);
    if (entries === undefined) return [];
    const out: PresencePeer[] = [];
    for (const [id, e] of entries) if (e.state !== null) out.push({ id, state: JSON.parse(e.state) as JsonValue });
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Calls `listener` with `others(room)` whenever it changes; returns the unsubscribe function. */
  subscribe(room: string, listener: (others: PresencePeer[]) => void): () => void {
    let set = this.listeners.get(room);
    if (set === undefined) {
      set = new Set();
      this.listeners.set(room, set);
    }
    const wrapped = (others: PresencePeer[]): void => listener(others);
    set.add(wrapped);
    return () => {
      set.delete(wrapped);
      if (set.size === 0 && this.listeners.get(room) === set) this.listeners.delete(room);
    };
  }

  /** This hub's own state in `room`, or null. */
  localState(room: string): JsonValue | null {
    const l = this.local.get(room);
    return l === undefined ? null : (JSON.parse(l.text) as JsonValue);
  }

  /** Publishes (or with null, withdraws) this hub's own state in `room` to every session. */
  publish(room: string, state: JsonValue | null, ttlMs: number = this.ttlMs): void {
    checkRoom(room);
    checkTtl(ttlMs);
    if (this.closed) throw new DbError(ErrorCode.closed, 'presence is closed: the database was closed');
    const old = this.local.get(room);
    if (state === null) {
      if (old === undefined) return;
      old.refresh?.cancel();
      this.local.delete(room);
      const counter = ++this.counter;
      this.broadcast(null, { type: 'presence', publisher: this.self, room, counter, hops: 0, ttlMs, state: null });
      return;
    }
    const text = checkState(state);
    old?.refresh?.cancel();
    const l: LocalState = { text, counter: 0, ttlMs, refresh: undefined };
    this.local.set(room, l);
    this.sendLocal(room, l);
  }

  /** Leaves every room of this hub (the sessions hear it) and stops its timers. */
  close(): void {
    if (this.closed) return;
    for (const r of [...this.handles.values()]) r.close();
    for (const room of [...this.local.keys()]) this.publish(room, null);
    this.closed = true;
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
    this.sweepAtMs = Infinity;
    this.listeners.clear();
    for (const p of this.ports) p.open = false;
    this.ports.clear();
  }

  /** @internal A room handle closed: the next `room(name)` makes a new one. */
  forget(handle: PresenceRoom): void {
    if (this.handles.get(handle.name) === handle) this.handles.delete(handle.name);
  }

  /** @internal From a Port. */
  receive(from: Port, m: PresenceMessage): void {
    if (m.publisher === this.self) {
      this.refute(m);
      return;
    }
    // Before the repeat check: a publisher connected twice sends each update both ways.
    if (m.hops === 0) from.direct.add(m.publisher);
    let entries = this.rooms.get(m.room);
    const old = entries?.get(m.publisher);
    // Seen, or older than what we hold: the loop guard of the flood, and the ordering rule.
    if (old !== undefined && m.counter <= old.counter) return;
    if (entries === undefined) {
      entries = new Map();
      this.rooms.set(m.room, entries);
    }
    const now = this.env.clock.nowMs();
    const e: Entry = {
      counter: m.counter,
      state: m.state,
      hops: m.hops,
      ttlMs: m.ttlMs,
      expiresAtMs: now + m.ttlMs,
      via: from,
    };
    entries.set(m.publisher, e);
    this.scheduleSweep(e.expiresAtMs);
    if (m.hops < WIRE_LIMITS.presenceHopsMax) this.broadcast(from, { ...m, hops: m.hops + 1 });
    if ((old?.state ?? null) !== m.state) this.emit(m.room);
  }

  /** @internal From a Port: announce the publishers that were one hop away through it and nowhere else. */
  detach(port: Port): void {
    port.open = false;
    this.ports.delete(port);
    const now = this.env.clock.nowMs();
    for (const [room, entries] of this.rooms) {
      let changed = false;
      for (const [publisher, e] of entries) {
        if (e.state === null || e.via !== port || e.hops !== 0) continue;
        if (this.isDirectElsewhere(publisher)) continue;
        const counter = e.counter + 1;
        entries.set(publisher, {
          counter,
          state: null,
          hops: 1,
          ttlMs: e.ttlMs,
          expiresAtMs: now + e.ttlMs,
          via: null,
        });
        this.scheduleSweep(now + e.ttlMs);
        this.broadcast(null, { type: 'presence', publisher, room, counter, hops: 1, ttlMs: e.ttlMs, state: null });
        changed = true;
      }
      if (changed) this.emit(room);
    }
    // Our own states may just have been announced gone by the hub at the other end.
    if (this.ports.size > 0) this.republishLocal();
  }

  private isDirectElsewhere(publisher: string): boolean {
    for (const p of this.ports) if (p.direct.has(publisher)) return true;
    return false;
  }

  /** Someone announced our own leave while we are still in the room: say otherwise, higher. */
  private refute(m: PresenceMessage): void {
    if (m.counter > this.counter) this.counter = m.counter;
    const l = this.local.get(m.room);
    if (m.state === null && l !== undefined && m.counter >= l.counter) this.sendLocal(m.room, l);
  }

  /** Skips one counter, so each republished state beats a leave announced for our last one. */
  private republishLocal(): void {
    if (this.local.size === 0) return;
    this.counter++;
    for (const [room, l] of this.local) this.sendLocal(room, l);
  }

  private sendLocal(room: string, l: LocalState): void {
    l.refresh?.cancel();
    l.counter = ++this.counter;
    this.broadcast(null, {
      type: 'presence',
      publisher: this.self,
      room,
      counter: l.counter,
      hops: 0,
      ttlMs: l.ttlMs,
      state: l.text,
    });
    l.refresh = this.env.timers.setTimeout(
      () => {
        l.refresh = undefined;
        if (this.local.get(room) === l) this.sendLocal(room, l);
      },
      Math.max(1, Math.floor(l.ttlMs / 3)),
    );
  }

  private broadcast(except: Port | null, message: PresenceMessage): void {
    for (const p of [...this.ports]) if (p !== except && p.open) p.send(message);
  }

  private emit(room: string): void {
    const set = this.listeners.get(room);
    if (set === undefined || set.size === 0) return;
    const others = this.others(room);
    for (const l of [...set]) {
      try {
        l(others);
      } catch (e) {
        this.env.logger.log('error', 'a presence listener threw', { room, error: (e as Error)?.message });
      }
    }
  }

  private scheduleSweep(atMs: number): void {
    if (this.closed || atMs >= this.sweepAtMs) return;
    this.sweepTimer?.cancel();
    this.sweepAtMs = atMs;
    this.sweepTimer = this.env.timers.setTimeout(() => this.sweep(), Math.max(0, atMs - this.env.clock.nowMs()));
  }

  /** States past their lifetime become leaves (kept a lifetime more, so a late repeat stays dropped), then go. */
  private sweep(): void {
    this.sweepTimer = undefined;
    this.sweepAtMs = Infinity;
    const now = this.env.clock.nowMs();
    let next = Infinity;
    for (const [room, entries] of this.rooms) {
      let changed = false;
      for (const [publisher, e] of entries) {
        if (e.expiresAtMs > now) {
          next = Math.min(next, e.expiresAtMs);
        } else if (e.state !== null) {
          e.state = null;
          e.via = null;
          e.expiresAtMs = now + e.ttlMs;
          next = Math.min(next, e.expiresAtMs);
          changed = true;
        } else {
          entries.delete(publisher);
        }
      }
      if (entries.size === 0) this.rooms.delete(room);
      if (changed) this.emit(room);
    }
    if (next !== Infinity) this.scheduleSweep(Math.max(next, now + SWEEP_GAP_MS));
  }
}

/**
 * This client's presence in one room: its own state, and the others' states as they come and
 * go. Get one from `db.presence(room)`.
 */
export class PresenceRoom {
  private closed = false;
  private readonly unsubscribes = new Set<() => void>();

  constructor(
    private readonly hub: PresenceHub,
    /** The room's name. */
    readonly name: string,
    private readonly ttlMs: number,
  ) {}

  /** This client's publisher id, as the others see it in `others()`. */
  get id(): string {
    return this.hub.self;
  }

  /**
   * Publishes this client's state to everyone in the room (at most 4 KiB of JSON), or with
   * null leaves the room. It stays until replaced, left, or this client disconnects.
   * @example
   * room.set({ name: 'Ana', color: '#e33', cursor: { anchor: 4, head: 9 } });
   */
  set(state: JsonValue | null): void {
    if (this.closed) throw new DbError(ErrorCode.closed, `presence room ${this.name} is closed`);
    this.hub.publish(this.name, state, this.ttlMs);
  }

  /**
   * This client's own state in the room, or null.
   * @example
   * const mine = room.get();
   */
  get(): JsonValue | null {
    return this.hub.localState(this.name);
  }

  /**
   * The other clients' states in the room, sorted by id.
   * @example
   * for (const { id, state } of room.others()) drawCursor(id, state);
   */
  others(): PresencePeer[] {
    return this.hub.others(this.name);
  }

  /**
   * Calls `listener` with `others()` each time someone arrives, changes state or leaves (not
   * at once: read `others()` for the current crowd). Returns the unsubscribe function.
   * @example
   * const stop = room.subscribe((others) => renderCursors(others));
   */
  subscribe(listener: (others: PresencePeer[]) => void): () => void {
    if (this.closed) throw new DbError(ErrorCode.closed, `presence room ${this.name} is closed`);
    const stop = this.hub.subscribe(this.name, listener);
    this.unsubscribes.add(stop);
    return () => {
      this.unsubscribes.delete(stop);
      stop();
    };
  }

  /**
   * Leaves the room (everyone sees this client go) and drops this handle's subscriptions.
   * @example
   * room.close();
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.unsubscribes) stop();
    this.unsubscribes.clear();
    this.hub.forget(this);
    this.hub.publish(this.name, null, this.ttlMs);
  }
}

function checkRoom(room: unknown): asserts room is string {
  if (typeof room !== 'string' || room.length === 0 || room.length > WIRE_LIMITS.presenceRoomCharsMax) {
    throw new DbError(
      ErrorCode.invalidName,
      `a presence room is a name of 1-${WIRE_LIMITS.presenceRoomCharsMax} characters`,
    );
  }
  if (LONE_SURROGATE.test(room)) throw new DbError(ErrorCode.invalidName, 'a presence room contains a lone surrogate');
}

function checkTtl(ttlMs: unknown): number {
  if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < 3 || ttlMs > WIRE_LIMITS.presenceTtlMsMax) {
    throw new DbError(
      ErrorCode.invalidInput,
      `a presence ttlMs is an integer in 3-${WIRE_LIMITS.presenceTtlMsMax}, got ${String(ttlMs)}`,
    );
  }
  return ttlMs;
}

/** The JSON text of a state, within the wire limits; the errors name what to fix. */
function checkState(state: JsonValue): string {
  const limit = WIRE_LIMITS.presenceStateBytesMax;
  let bytes: Uint8Array;
  try {
    bytes = encodeJsonValue(state, { docBytesMax: limit, valueDepthMax: WIRE_LIMITS.presenceStateDepthMax });
  } catch (e) {
    if (!isDbError(e, ErrorCode.tooLarge)) throw e;
    throw new DbError(ErrorCode.tooLarge, `a presence state is at most ${limit} bytes of JSON: ${e.message}`, {
      cause: e,
      details: e.details === undefined ? {} : { ...e.details },
    });
  }
  return fromUtf8(bytes);
}
