/**
 * Several tabs of one app sharing one IndexedDB replica. One tab leads: it holds the Web Lock
 * `polyarch-tabs:NAME` and is the only one that opens the store. Every other tab runs a memory
 * replica replicating with the leader over a BroadcastChannel, so each tab sees every change
 * at once and the store has one writer and one replica id. When the leader goes, the lock passes
 * to a waiting tab, which opens the store and connects its memory replica to it: the protocol
 * pushes whatever that replica held that the store lacks. Browser-safe: no Node built-ins.
 */
import type { Env, TimerHandle } from '../env/env.js';
import { realEnv } from '../env/real.js';
import type { SessionDriver } from '../replication/session-driver.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { defaultLocks, openIndexedDbStorage, tryLock } from '../storage/indexeddb/index.js';
import type { IndexedDbStorageOptions, LockManagerLike } from '../storage/indexeddb/index.js';
import { openMemoryStorage } from '../storage/memory/index.js';
import type { Storage } from '../storage/index.js';
import { BroadcastEndpoint } from '../transport/broadcast/index.js';
import type { BroadcastChannelConstructor } from '../transport/broadcast/index.js';
import { memoryConnectionPair } from '../transport/memory/index.js';
import { Database, openDatabase } from './database.js';
import type { OpenOptions } from './database.js';

export type { LockManagerLike } from '../storage/indexeddb/index.js';
export type { BroadcastChannelConstructor, BroadcastChannelLike } from '../transport/broadcast/index.js';

/** Options of `openReplica` for `storage: 'indexeddb:NAME'`. */
export interface BrowserStorageOptions {
  /**
   * `'shared'` (default): the tabs of this origin share the store, one leading (see docs/sdk.md).
   * `'exclusive'`: this tab opens the store itself and fails with `unavailable` while another
   * tab has it open.
   */
  tabs?: 'shared' | 'exclusive';
  /** The IDBFactory (default `globalThis.indexedDB`). */
  indexedDB?: IDBFactory;
  /** Web Locks (default `navigator.locks`). */
  locks?: LockManagerLike;
  /** The BroadcastChannel class (default `globalThis.BroadcastChannel`). */
  BroadcastChannel?: BroadcastChannelConstructor;
  /**
   * How long a tab that does not lead waits, at most, for the leader's documents before
   * `openReplica` resolves (default 2000 ms). It resolves sooner once it has them.
   */
  tabReadyMs?: number;
}

/** Tab sessions: a background tab's timers may be throttled to one a minute, so silence is normal. */
const TAB_SESSION = { heartbeatMs: 5_000, deadAfterMs: 120_000 } as const;
/** A follower whose link dropped asks who leads again after this. */
const ASK_AGAIN_MS = 250;
/** How often readiness and flushing are checked (a condition polled up to a deadline). */
const POLL_MS = 10;

/** A Database opened on `indexeddb:NAME` with `tabs: 'shared'`: knows its tab's role. */
export class TabDatabase extends Database {
  /** @internal */
  constructor(
    replica: Database['replica'],
    env: Env,
    private readonly group: TabGroup,
  ) {
    super(replica, env);
  }

  /**
   * `'leader'` when this tab holds the IndexedDB store, `'follower'` when its writes reach the
   * store through the leading tab. A follower becomes leader when the leading tab closes.
   */
  get tabRole(): 'leader' | 'follower' {
    return this.group.role;
  }

  /**
   * Resolves true once every write this tab has made is in the IndexedDB store (at once in the
   * leading tab, whose writes resolve only when stored), or false if that takes over `timeoutMs`.
   * A follower's write resolves when it is in the tab's memory; call this before the page goes
   * away to be sure it was stored.
   * @example
   * await db.collection('events').put('e1', event);
   * await db.persisted();
   */
  persisted(timeoutMs = 2000): Promise<boolean> {
    return this.group.persisted(timeoutMs);
  }

  /** Waits briefly for this tab's writes to reach the store, then closes; another tab takes over. */
  override close(): Promise<void> {
    return this.group.close(() => super.close());
  }
}

/** The coordination of one tab with the others: its role, its link to the leader, the store. */
export class TabGroup {
  role: 'leader' | 'follower' = 'follower';
  /** The database the app holds. */
  app: TabDatabase | undefined;
  /** The persistent replica, once this tab leads (the app's own in a tab that led from the start). */
  private hub: Database | undefined;
  /** The session that carries this tab's writes towards the store, when the app is not the hub. */
  private upstream: { leader: string; driver: SessionDriver } | undefined;
  private readonly abort = new AbortController();
  private askTimer: TimerHandle | undefined;
  private releaseLeadership: (() => Promise<void>) | undefined;
  private closing: Promise<void> | undefined;
  /** Set once closing is past its last flush: from then on the tab answers nothing. */
  private down = false;
  private readied: (() => void) | undefined;

  constructor(
    private readonly name: string,
    private readonly options: OpenOptions & BrowserStorageOptions,
    private readonly env: Env,
    private readonly endpoint: BroadcastEndpoint,
    private readonly locks: LockManagerLike,
  ) {
    endpoint.onSignal((topic, from, data) => this.onSignal(topic, from, data));
  }

  private get lockName(): string {
    return `polyarch-tabs:${this.name}`;
  }

  /** Leads if no tab does, else follows; resolves with the app's database. */
  async start(): Promise<TabDatabase> {
    const release = await tryLock(this.locks, this.lockName);
    if (release !== null) {
      this.releaseLeadership = release;
      let hub: Database;
      try {
        hub = await this.openHub();
      } catch (e) {
        await release();
        throw e;
      }
      const app = new TabDatabase(hub.replica, this.env, this);
      this.app = app;
      this.hub = app;
      this.lead();
      return app;
    }
    const { id: _persistentId, ...rest } = this.options;
    const memory = await openDatabase({ ...rest, env: this.env, storage: openMemoryStorage() }, unusedOpener);
    const app = new TabDatabase(memory.replica, this.env, this);
    this.app = app;
    const ready = new Promise<void>((resolve) => (this.readied = resolve));
    const deadline = this.env.timers.setTimeout(() => this.ready(), this.options.tabReadyMs ?? 2000);
    this.waitForLeadership();
    this.endpoint.signal('who');
    await ready;
    deadline.cancel();
    return app;
  }

  private ready(): void {
    const r = this.readied;
    this.readied = undefined;
    r?.();
  }

  /** Opens the IndexedDB replica; closes the store again if the replica cannot open on it. */
  private async openHub(): Promise<Database> {
    const idb: IndexedDbStorageOptions = { locks: this.locks };
    if (this.options.indexedDB !== undefined) idb.indexedDB = this.options.indexedDB;
    const storage = await openIndexedDbStorage(this.name, idb);
    try {
      return await openDatabase({ ...this.options, env: this.env, storage }, unusedOpener);
    } catch (e) {
      await storage.close();
      throw e;
    }
  }

  /** Serves the other tabs from the hub and tells them so. */
  private lead(): void {
    this.role = 'leader';
    this.endpoint.onAccept((conn) => {
      const hub = this.hub;
      if (hub === undefined || this.down) conn.close(ErrorCode.unavailable, 'this tab is closing');
      else hub.connect(conn, TAB_SESSION);
    });
    this.announce(null);
  }

  private announce(to: string | null): void {
    this.endpoint.signal('leader', { head: this.hub?.replica.seq ?? 0 }, to);
  }

  private onSignal(topic: string, from: string, data: unknown): void {
    if (this.down) return;
    if (topic === 'who' && this.role === 'leader') this.announce(from);
    if (topic === 'leader' && this.role === 'follower' && this.upstream?.leader !== from) {
      const head = (data as { head?: unknown } | null)?.head;
      this.follow(from, typeof head === 'number' ? head : 0);
    }
  }

  /** Replicates the app's memory replica with the leading tab `leader`, whose feed reaches `head`. */
  private follow(leader: string, head: number): void {
    const app = this.app as TabDatabase;
    this.askTimer?.cancel();
    this.upstream?.driver.close('closed', `tab ${leader} leads now`);
    const driver = app.connect(this.endpoint.connect(leader), TAB_SESSION);
    const link = { leader, driver };
    this.upstream = link;
    driver.onClose(() => {
      if (this.upstream !== link) return;
      this.upstream = undefined;
      // The leader went, or the link timed out: ask again; a new leader also announces itself.
      if (!this.down && this.role === 'follower') {
        this.askTimer = this.env.timers.setTimeout(() => this.endpoint.signal('who'), ASK_AGAIN_MS);
      }
    });
    this.readyWhen(() => driver.info().checkpoint >= head);
  }

  /** Resolves `openReplica` once `caughtUp` holds (unless the deadline came first). */
  private readyWhen(caughtUp: () => boolean): void {
    if (this.readied === undefined) return;
    void this.until(() => this.readied === undefined || caughtUp(), Infinity).then(() => this.ready());
  }

  /** Waits in line for the lock; when it comes, this tab takes the store over. */
  private waitForLeadership(): void {
    let letGo = (): void => {};
    const held = new Promise<void>((resolve) => (letGo = resolve));
    const request = this.locks.request(this.lockName, { signal: this.abort.signal }, async () => {
      if (this.down) return;
      try {
        await this.promote();
      } catch (e) {
        // The store cannot be opened here (quota, a replica id mismatch): let another tab try.
        this.env.logger.log('error', 'this tab could not take over the IndexedDB store', {
          store: this.name,
          error: (e as Error).message,
        });
        return;
      }
      await held;
    });
    request.catch(() => undefined); // aborted when the tab closes first
    this.releaseLeadership = async () => {
      this.abort.abort();
      letGo();
      await request.catch(() => undefined);
    };
  }

  /** Becomes the leader: opens the store and connects the app's memory replica to it. */
  private async promote(): Promise<void> {
    const hub = await this.openHub();
    if (this.down) {
      await hub.close();
      return;
    }
    this.hub = hub;
    this.role = 'leader';
    this.askTimer?.cancel();
    const app = this.app as TabDatabase;
    this.upstream?.driver.close('closed', 'this tab leads now');
    // Through this session the store receives what this tab wrote and the old leader never got.
    const [ours, theirs] = memoryConnectionPair();
    hub.connect(theirs, TAB_SESSION);
    const driver = app.connect(ours, TAB_SESSION);
    this.upstream = { leader: this.endpoint.self, driver };
    const head = hub.replica.seq;
    this.readyWhen(() => driver.info().checkpoint >= head);
    this.lead();
  }

  persisted(timeoutMs: number): Promise<boolean> {
    const app = this.app as TabDatabase;
    if (this.hub === app) return Promise.resolve(true);
    return this.until(() => {
      const link = this.upstream;
      return link !== undefined && link.driver.info().acked >= app.replica.seq;
    }, timeoutMs);
  }

  /** Polls `condition` until it holds (true) or `timeoutMs` passes (false). */
  private until(condition: () => boolean, timeoutMs: number): Promise<boolean> {
    const start = this.env.clock.nowMs();
    return new Promise((resolve) => {
      const check = (): void => {
        if (condition()) resolve(true);
        else if (this.down || this.env.clock.nowMs() - start >= timeoutMs) resolve(false);
        else this.env.timers.setTimeout(check, POLL_MS);
      };
      check();
    });
  }

  close(closeApp: () => Promise<void>): Promise<void> {
    this.closing ??= this.shutdown(closeApp);
    return this.closing;
  }

  private async shutdown(closeApp: () => Promise<void>): Promise<void> {
    // Give this tab's last writes a moment to reach the store before its sessions close.
    if (this.hub !== this.app) await this.persisted(1000);
    this.down = true;
    this.askTimer?.cancel();
    this.endpoint.onAccept(undefined);
    this.ready();
    await closeApp();
    if (this.hub !== undefined && this.hub !== this.app) await this.hub.close();
    this.endpoint.close();
    // Last: the next tab in line opens the store only once this one has closed it.
    await this.releaseLeadership?.();
  }
}

function unusedOpener(spec: string): Promise<Storage> {
  return Promise.reject(new DbError(ErrorCode.invalidInput, `unexpected storage spec ${JSON.stringify(spec)}`));
}

function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/**
 * Opens the IndexedDB replica `name` for `openReplica({ storage: 'indexeddb:NAME' })`: shared by
 * the tabs of this origin (one leads and holds the store) unless `tabs: 'exclusive'`. Without
 * Web Locks or BroadcastChannel the tab opens the store alone, as in 'exclusive'.
 * @example
 * const db = await openReplica({ storage: 'indexeddb:calendar' });
 * db.sync('https://db.example.com');
 */
export async function openIndexedDbReplica(
  name: string,
  options: OpenOptions & BrowserStorageOptions,
): Promise<Database> {
  const mode = options.tabs ?? 'shared';
  if (mode !== 'shared' && mode !== 'exclusive') {
    throw new DbError(ErrorCode.invalidInput, `tabs is 'shared' or 'exclusive', got ${JSON.stringify(mode)}`);
  }
  const readyMs = options.tabReadyMs;
  if (readyMs !== undefined && (typeof readyMs !== 'number' || !(readyMs >= 0))) {
    throw new DbError(ErrorCode.invalidInput, 'tabReadyMs must be a number of milliseconds >= 0');
  }
  const env = options.env ?? realEnv();
  const locks = options.locks ?? defaultLocks();
  const Channel =
    options.BroadcastChannel ?? (globalThis as { BroadcastChannel?: BroadcastChannelConstructor }).BroadcastChannel;
  if (mode === 'exclusive' || locks === undefined || Channel === undefined) {
    if (mode === 'shared') {
      env.logger.log('warn', 'no Web Locks or BroadcastChannel: this tab opens the IndexedDB store alone', {
        store: name,
      });
    }
    const idb: IndexedDbStorageOptions = { locks: locks ?? null };
    if (options.indexedDB !== undefined) idb.indexedDB = options.indexedDB;
    const storage = await openIndexedDbStorage(name, idb);
    try {
      return await openDatabase({ ...options, env, storage }, unusedOpener);
    } catch (e) {
      await storage.close();
      throw e;
    }
  }
  // Checked before any tab state exists, so a bad name fails like the exclusive path.
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
    throw new DbError(
      ErrorCode.invalidName,
      `an IndexedDB store name is 1-64 of A-Za-z0-9_.-, got ${JSON.stringify(name)}`,
    );
  }
  const endpoint = new BroadcastEndpoint(new Channel(`polyarch-tabs:${name}`), `tab-${toHex(env.random.bytes(8))}`);
  const group = new TabGroup(name, options, env, endpoint, locks);
  try {
    return await group.start();
  } catch (e) {
    endpoint.close();
    throw e;
  }
}
