/**
 * Durable triggers: `replica.on('change', handler, { where })` runs `handler` for every change
 * a replica records, never skipping one across crashes and restarts.
 *
 * A replicated database runs the same code at every replica, so "run this when a document
 * changes" needs an answer to "where?". `origin` runs once in the whole cluster, at the leader
 * that accepted the write; `every-replica` runs once at each replica, for each change that
 * replica records (to keep a local cache, index or search engine in step).
 *
 * How: a trigger is declared durably (meta `trigger/<name>`) the first time `on` names it, and
 * from then on a commit hook writes one outbox entry per event into meta
 * (`tq/<name>/<seq>/<n>`), inside the commit's own transaction, so an event exists exactly when
 * its change does. Delivery takes the outbox in order, one event at a time; deleting an entry
 * after the handler's promise resolves is the checkpoint. A crash between the handler acting and
 * that delete delivers the event again, with the same `key` (the write's dot, `replica:counter`,
 * equal at every replica): handlers that must act exactly once dedupe by it.
 *
 * What `every-replica` sees: replication ships document states, not every write, so a write
 * superseded at its origin before it reached a replica is never seen there. The guarantee is
 * once per replica per change that replica records, and the latest state of every document is
 * always delivered (its final context's writes each reach the handler).
 */
import { hlcToIso, isDeletedState, isTextState, latestHlc, checkCollection, utf8, fromUtf8 } from '../core/index.js';
import type { JsonValue, RecordState } from '../core/index.js';
import type { Env, TimerHandle } from '../env/env.js';
import type { Storage, WriteTx } from '../storage/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import type { CommitHook, RecordedChange } from './commit-hooks.js';
import { isSystemCollection } from './collection-config.js';

/** Where a trigger runs: once in the cluster at the accepting leader, or once per replica. */
export type TriggerWhere = 'origin' | 'every-replica';

/** One delivery to a trigger's handler. */
export interface TriggerEvent {
  /**
   * The idempotency key: the write's dot `replica:counter`, the same at every replica and on
   * every repeated delivery. A handler whose effect must happen once records the keys it handled.
   */
  key: string;
  /** The trigger's name. */
  trigger: string;
  collection: string;
  id: string;
  /** The replica that accepted the write. */
  origin: string;
  /** This replica's feed position of the change (`changes({ since })` order). */
  seq: number;
  /** ISO time of the write's hybrid logical clock (a map delete, which keeps none: when recorded here). */
  time: string;
  deleted: boolean;
  /**
   * The document as this replica showed it right after the change: null when deleted (or, logged,
   * when showing it failed: a merge function that threw).
   */
  value: JsonValue | null;
  /** 1 on the first delivery of this event in this process, more on retries. */
  attempt: number;
}

/** How `on('change', ...)` declares and runs a trigger. */
export interface TriggerOptions {
  /** Default 'origin'. */
  where?: TriggerWhere;
  /** The trigger's durable identity (its outbox survives restarts under it); default: `where`. */
  name?: string;
  /** Only changes of this collection (text documents included when named); default: every user collection. */
  collection?: string;
  /** Backoff between retries of a failing event, doubling from minMs (default 100) to maxMs (default 60000). */
  retry?: { minMs?: number; maxMs?: number };
}

/** A trigger's state, for dashboards and tests. */
export interface TriggerStatus {
  name: string;
  where: TriggerWhere;
  collection: string | null;
  /** Whether a handler runs it in this process now. */
  attached: boolean;
  /** Events captured and not yet acknowledged by a handler (durable: they survive restarts). */
  pending: number;
  /** Events acknowledged in this process. */
  delivered: number;
  /** Handler failures (throws and rejections) in this process. */
  failures: number;
  lastError: string | null;
  lastErrorAt: string | null;
  /** When the failing event is tried again, or null. */
  nextRetryAt: string | null;
}

/** The handle `on('change', ...)` returns. */
export interface Trigger {
  readonly name: string;
  /** Resolves once the declaration is durable: every commit from then on is captured for it. */
  readonly ready: Promise<void>;
  status(): TriggerStatus;
  /** Detaches the handler; events keep accumulating in the outbox for the next `on` with this name. */
  close(): void;
}

export type TriggerHandler = (e: TriggerEvent) => unknown;

/** What the module needs of its replica. */
export interface TriggerHost {
  readonly storage: Storage;
  readonly env: Env;
  readonly replicaId: string;
  /** The document's value as the replica shows it, null when deleted or absent. */
  view(collection: string, id: string, state: RecordState): JsonValue | null;
}

const DECL_PREFIX = 'trigger/';
const OUTBOX_PREFIX = 'tq/';
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const DEFAULT_RETRY = { minMs: 100, maxMs: 60_000 };
/** Outbox entries read per storage read while delivering. */
const BATCH = 32;

interface Declaration {
  where: TriggerWhere;
  collection: string | null;
}

/** An event as stored in the outbox: everything but the trigger's name and the attempt. */
type StoredEvent = Omit<TriggerEvent, 'trigger' | 'attempt'>;

const outboxPrefix = (name: string): string => `${OUTBOX_PREFIX}${name}/`;
/** Zero-padded so keys sort as (seq, n); 16 digits hold every safe integer. */
const outboxKey = (name: string, seq: number, n: number): string =>
  `${outboxPrefix(name)}${String(seq).padStart(16, '0')}/${String(n).padStart(6, '0')}`;

function invalid(message: string): DbError {
  return new DbError(ErrorCode.invalidInput, message);
}

function encodeJson(value: unknown): Uint8Array {
  return utf8(JSON.stringify(value));
}

function decodeDeclaration(bytes: Uint8Array): Declaration {
  const d = JSON.parse(fromUtf8(bytes)) as Declaration;
  return { where: d.where, collection: d.collection ?? null };
}

/** One declared trigger: its declaration, its handler if attached, and its delivery state. */
class TriggerState {
  /** True once the declaration is durable: commits capture events for it. */
  captured = false;
  handler: TriggerHandler | undefined;
  retry = DEFAULT_RETRY;
  pending = 0;
  delivered = 0;
  failures = 0;
  lastError: string | null = null;
  lastErrorAt: string | null = null;
  nextRetryAt: string | null = null;
  retryTimer: TimerHandle | undefined;
  /** Bumped by every attach and detach: a delivery loop of an older generation stops. */
  gen = 0;
  /** The generation of the loop running now, or -1. */
  loopGen = -1;
  /** Set when new events may have arrived while the loop was reading. */
  wake = false;
  /** The event being retried and how many times it was tried in this process. */
  attemptKey: string | undefined;
  attempts = 0;
  dropped = false;
  /** Resolves once the declaration is durable. */
  ready: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    readonly decl: Declaration,
  ) {}

  status(): TriggerStatus {
    return {
      name: this.name,
      where: this.decl.where,
      collection: this.decl.collection,
      attached: this.handler !== undefined,
      pending: this.pending,
      delivered: this.delivered,
      failures: this.failures,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt,
      nextRetryAt: this.nextRetryAt,
    };
  }
}

function checkOptions(options: unknown): { decl: Declaration; name: string; retry: typeof DEFAULT_RETRY } {
  if (options === undefined)
    return { decl: { where: 'origin', collection: null }, name: 'origin', retry: DEFAULT_RETRY };
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw invalid('trigger options must be an object');
  }
  const o = options as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!['where', 'name', 'collection', 'retry'].includes(k))
      throw invalid(`unknown trigger option ${JSON.stringify(k)}`);
  }
  const where = o.where ?? 'origin';
  if (where !== 'origin' && where !== 'every-replica') {
    throw invalid(`a trigger's where is 'origin' or 'every-replica', got ${JSON.stringify(where)}`);
  }
  const name = o.name ?? where;
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new DbError(
      ErrorCode.invalidName,
      `invalid trigger name ${JSON.stringify(name)}: use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit`,
    );
  }
  const collection = o.collection === undefined ? null : checkCollection(o.collection);
  let retry = DEFAULT_RETRY;
  if (o.retry !== undefined) {
    if (o.retry === null || typeof o.retry !== 'object') throw invalid('retry must be { minMs?, maxMs? }');
    const r = o.retry as Record<string, unknown>;
    // A zero delay would retry a failing handler in a hot loop.
    const num = (v: unknown, dflt: number, what: string): number => {
      if (v === undefined) return dflt;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 1) throw invalid(`retry.${what} must be a number >= 1`);
      return v;
    };
    const minMs = num(r.minMs, DEFAULT_RETRY.minMs, 'minMs');
    const maxMs = num(r.maxMs, Math.max(DEFAULT_RETRY.maxMs, minMs), 'maxMs');
    if (maxMs < minMs) throw invalid('retry.maxMs must be >= retry.minMs');
    retry = { minMs, maxMs };
  }
  return { decl: { where, collection }, name, retry };
}

/**
 * The triggers of one replica: declarations, capture (a commit hook) and delivery. The replica
 * creates it before opening completes, registers `hook`, and calls `load` before any commit.
 */
export class Triggers {
  private readonly states = new Map<string, TriggerState>();
  /** Outbox entries the commit in progress wrote, per trigger, counted once it is durable. */
  private staged = new Map<TriggerState, number>();
  private closed = false;

  readonly hook: CommitHook = {
    beforeCommit: (tx, changes) => this.capture(tx, changes),
    committed: () => this.captured(),
    aborted: () => {
      this.staged = new Map();
    },
  };

  constructor(private readonly host: TriggerHost) {}

  /** Loads the declarations and counts their outboxes; runs once, as the replica opens. */
  async load(): Promise<void> {
    const decls = await this.host.storage.read(async (tx) => {
      const out: { key: string; value: Uint8Array }[] = [];
      for (let after: string | undefined; ; ) {
        const page = await tx.listMeta(DECL_PREFIX, after, 500);
        out.push(...page);
        if (page.length < 500) return out;
        after = page[page.length - 1]?.key;
      }
    });
    for (const { key, value } of decls) {
      const t = new TriggerState(key.slice(DECL_PREFIX.length), decodeDeclaration(value));
      t.captured = true;
      t.pending = await this.countOutbox(t.name);
      this.states.set(t.name, t);
    }
  }

  private countOutbox(name: string): Promise<number> {
    return this.host.storage.read(async (tx) => {
      let n = 0;
      for (let after: string | undefined; ; ) {
        const page = await tx.listMeta(outboxPrefix(name), after, 1000);
        n += page.length;
        if (page.length < 1000) return n;
        after = page[page.length - 1]?.key;
      }
    });
  }

  // ---------------------------------------------------------------- API

  on(event: unknown, handler: unknown, options?: unknown): Trigger {
    if (this.closed) throw new DbError(ErrorCode.closed, `replica ${this.host.replicaId} is closed`);
    if (event !== 'change') throw invalid(`triggers listen to 'change', got ${JSON.stringify(event)}`);
    if (typeof handler !== 'function') throw invalid('a trigger needs a handler function');
    const { decl, name, retry } = checkOptions(options);
    let t = this.states.get(name);
    if (t !== undefined && (t.decl.where !== decl.where || t.decl.collection !== decl.collection)) {
      throw invalid(
        `trigger ${name} is declared with where ${t.decl.where} and collection ${t.decl.collection ?? '(all)'}: ` +
          'drop it first (dropTrigger) to declare it differently',
      );
    }
    if (t?.handler !== undefined)
      throw invalid(`trigger ${name} already has a handler in this process: close it first`);
    let ready: Promise<void>;
    if (t === undefined) {
      t = new TriggerState(name, decl);
      this.states.set(name, t);
      ready = this.declare(t);
    } else {
      ready = t.captured ? Promise.resolve() : t.ready;
    }
    t.ready = ready;
    t.handler = handler as TriggerHandler;
    t.retry = retry;
    t.gen++;
    const state = t;
    const gen = t.gen;
    ready.then(
      () => this.pump(state),
      () => undefined,
    );
    return {
      name,
      ready,
      status: () => state.status(),
      close: () => {
        // Only the attachment this handle made: a later `on` with the name is not undone.
        if (state.gen !== gen || state.handler === undefined) return;
        this.detach(state);
      },
    };
  }

  /** Every declared trigger, attached here or not. */
  status(): TriggerStatus[] {
    return [...this.states.values()]
      .map((t) => t.status())
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Forgets a trigger: its declaration and every event its outbox holds, in one transaction. */
  async drop(name: unknown): Promise<void> {
    if (this.closed) throw new DbError(ErrorCode.closed, `replica ${this.host.replicaId} is closed`);
    if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
      throw new DbError(ErrorCode.invalidName, `invalid trigger name ${JSON.stringify(name)}`);
    }
    const t = this.states.get(name);
    if (t === undefined) throw new DbError(ErrorCode.notFound, `no trigger named ${name}`);
    await t.ready.catch(() => undefined);
    if (this.states.get(name) !== t) return; // dropped meanwhile
    this.detach(t);
    try {
      await this.host.storage.write(async (tx) => {
        tx.deleteMeta(DECL_PREFIX + name);
        for (;;) {
          const page = await tx.listMeta(outboxPrefix(name), undefined, 1000);
          for (const { key } of page) tx.deleteMeta(key);
          if (page.length < 1000) break;
        }
        // Inside the transaction: no commit after this one captures for the trigger.
        t.captured = false;
      });
    } catch (e) {
      t.captured = true; // the declaration stands: keep capturing for it
      throw e;
    }
    t.dropped = true;
    t.pending = 0;
    this.states.delete(name);
  }

  /** The replica is closing: no handler runs from now on. Capture goes on until the store closes. */
  close(): void {
    this.closed = true;
    for (const t of this.states.values()) this.detach(t);
  }

  private detach(t: TriggerState): void {
    t.handler = undefined;
    t.gen++;
    t.retryTimer?.cancel();
    t.retryTimer = undefined;
    t.nextRetryAt = null;
  }

  private declare(t: TriggerState): Promise<void> {
    const p = this.host.storage.write((tx) => {
      tx.putMeta(DECL_PREFIX + t.name, encodeJson(t.decl));
      // Inside the transaction: every commit after this one captures for the trigger.
      t.captured = true;
    });
    const ready = p.catch((e: unknown) => {
      t.captured = false;
      if (this.states.get(t.name) === t) this.states.delete(t.name);
      this.detach(t);
      throw e;
    });
    // The caller may never look at `ready`: its failure must not be an unhandled rejection.
    ready.catch(() => undefined);
    return ready;
  }

  // ---------------------------------------------------------------- capture

  private capture(tx: WriteTx, changes: readonly RecordedChange[]): void {
    this.staged = new Map();
    for (const t of this.states.values()) {
      if (!t.captured) continue;
      let n = 0;
      for (const c of changes) {
        if (isSystemCollection(c.collection)) continue;
        if (t.decl.collection === null ? isTextState(c.after) : c.collection !== t.decl.collection) continue;
        for (const e of this.eventsOf(t.decl.where, c)) {
          tx.putMeta(outboxKey(t.name, c.seq, n++), encodeJson(e));
        }
      }
      if (n > 0) this.staged.set(t, n);
    }
  }

  /** The events one recorded change makes for a trigger running `where`. */
  private eventsOf(where: TriggerWhere, c: RecordedChange): StoredEvent[] {
    const grown: [string, number][] = [];
    if (where === 'origin') {
      // Every local write mints at least one dot of ours; the latest names the write.
      const me = this.host.replicaId;
      const counter = c.after.context.get(me) ?? 0;
      if (c.origin === 'local' && counter > (c.before?.context.get(me) ?? 0)) grown.push([me, counter]);
    } else {
      for (const [replica, counter] of c.after.context) {
        if (counter > (c.before?.context.get(replica) ?? 0)) grown.push([replica, counter]);
      }
    }
    if (grown.length === 0) return [];
    const deleted = isDeletedState(c.after);
    const value = deleted ? null : this.viewOf(c);
    return grown.map(([replica, counter]) => {
      const own = c.after.siblings.find((s) => s.dot.replica === replica && s.dot.counter === counter);
      const hlc = own?.hlc ?? latestHlc(c.after);
      const time = hlc.ms === 0 ? hlcToIso({ ms: this.host.env.clock.nowMs(), c: 0 }) : hlcToIso(hlc);
      return {
        key: `${replica}:${counter}`,
        collection: c.collection,
        id: c.id,
        origin: replica,
        seq: c.seq,
        time,
        deleted,
        value,
      };
    });
  }

  /**
   * The document's value; null if showing it fails (a merge function that throws): capture must
   * never throw, since throwing here would refuse a remote change forever and stall replication.
   */
  private viewOf(c: RecordedChange): JsonValue | null {
    try {
      return this.host.view(c.collection, c.id, c.after);
    } catch (e) {
      this.host.env.logger.log('warn', 'a trigger event carries no value: the document could not be shown', {
        collection: c.collection,
        id: c.id,
        error: e instanceof Error ? e.message : String(e),
      });
      return null;
    }
  }

  private captured(): void {
    const staged = this.staged;
    this.staged = new Map();
    for (const [t, n] of staged) {
      if (t.dropped) continue;
      t.pending += n;
      this.pump(t);
    }
  }

  // ---------------------------------------------------------------- delivery

  private deliverable(t: TriggerState, gen: number): boolean {
    return !this.closed && !t.dropped && t.captured && t.gen === gen && t.handler !== undefined;
  }

  /** Starts the delivery loop of `t`'s current attachment, or tells the running one to look again. */
  private pump(t: TriggerState): void {
    if (!this.deliverable(t, t.gen) || t.retryTimer !== undefined) return;
    if (t.loopGen === t.gen) {
      t.wake = true;
      return;
    }
    void this.run(t, t.gen);
  }

  private async run(t: TriggerState, gen: number): Promise<void> {
    t.loopGen = gen;
    try {
      while (this.deliverable(t, gen)) {
        t.wake = false;
        const batch = await this.host.storage.read((tx) => tx.listMeta(outboxPrefix(t.name), undefined, BATCH));
        if (batch.length === 0) {
          if (t.wake) continue;
          return;
        }
        // Acknowledged events leave the outbox together, one transaction per page: a crash
        // before it delivers them again, with their keys, which at-least-once allows.
        const acked: string[] = [];
        try {
          for (const entry of batch) {
            if (!this.deliverable(t, gen)) return;
            if (!(await this.deliver(t, gen, entry.key, entry.value))) return;
            acked.push(entry.key);
          }
        } finally {
          // Not once the replica closed: the events are then delivered again at the next open.
          if (acked.length > 0 && !this.closed && !t.dropped) await this.acknowledge(t, acked);
        }
      }
    } catch (e) {
      this.storageFailed(t, e);
    } finally {
      if (t.loopGen === gen) {
        t.loopGen = -1;
        // Woken while it was leaving (a retry timer that fired during the last acknowledgement):
        // nobody else will start the next loop.
        if (t.wake) this.pump(t);
      }
    }
  }

  /** One delivery; true when acknowledged and the loop may go on. */
  private async deliver(t: TriggerState, gen: number, key: string, bytes: Uint8Array): Promise<boolean> {
    const stored = JSON.parse(fromUtf8(bytes)) as StoredEvent;
    if (t.attemptKey !== key) {
      t.attemptKey = key;
      t.attempts = 0;
    }
    const event: TriggerEvent = { ...stored, trigger: t.name, attempt: ++t.attempts };
    const handler = t.handler as TriggerHandler;
    try {
      await handler(event);
    } catch (e) {
      if (this.closed || t.dropped) return false;
      t.failures++;
      t.lastError = e instanceof Error ? e.message : String(e);
      t.lastErrorAt = hlcToIso({ ms: this.host.env.clock.nowMs(), c: 0 });
      this.host.env.logger.log('warn', 'trigger handler failed', {
        trigger: t.name,
        key: event.key,
        attempt: event.attempt,
        error: t.lastError,
      });
      if (t.gen === gen) this.retryLater(t, t.attempts);
      return false;
    }
    // The handler acted: the caller acknowledges it, even when detached meanwhile.
    t.attemptKey = undefined;
    t.attempts = 0;
    return !this.closed && !t.dropped;
  }

  /** Removes acknowledged events from the outbox: the trigger's durable checkpoint. */
  private async acknowledge(t: TriggerState, keys: readonly string[]): Promise<void> {
    const removed = await this.host.storage.write(async (tx) => {
      let n = 0;
      for (const key of keys) {
        if ((await tx.getMeta(key)) === undefined) continue; // acknowledged by an older loop
        tx.deleteMeta(key);
        n++;
      }
      return n;
    });
    t.pending = Math.max(0, t.pending - removed);
    t.delivered += removed;
  }

  /** Exponential backoff with jitter: half the doubled delay fixed, half random. */
  private retryLater(t: TriggerState, attempt: number): void {
    const { minMs, maxMs } = t.retry;
    const base = Math.min(maxMs, minMs * 2 ** Math.min(attempt - 1, 40));
    const delay = Math.round(base / 2 + (this.host.env.random.next() * base) / 2);
    t.nextRetryAt = hlcToIso({ ms: this.host.env.clock.nowMs() + delay, c: 0 });
    t.retryTimer?.cancel();
    t.retryTimer = this.host.env.timers.setTimeout(() => {
      t.retryTimer = undefined;
      t.nextRetryAt = null;
      this.pump(t);
    }, delay);
  }

  /** A storage read or acknowledgement failed: stop when closing, else try again later. */
  private storageFailed(t: TriggerState, e: unknown): void {
    if (this.closed || t.dropped || (e instanceof DbError && e.code === ErrorCode.closed)) return;
    this.host.env.logger.log('warn', 'trigger delivery could not reach storage', {
      trigger: t.name,
      error: e instanceof Error ? e.message : String(e),
    });
    this.retryLater(t, Math.max(1, t.attempts));
  }
}
