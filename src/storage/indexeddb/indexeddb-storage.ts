/**
 * The IndexedDB Storage adapter (through `idb`), for pages that keep their replica across reloads.
 * Invariant: a write(fn) reaches IndexedDB as ONE readwrite transaction over every store, opened
 * only after fn has settled: IndexedDB commits a transaction by itself as soon as the event loop
 * finds no request pending, so one held open across fn's awaits would commit half a change. fn's
 * writes are staged in memory and its reads merge the stage over committed rows. Browser-safe.
 */
import { wrap } from 'idb';
import type { DBSchema, IDBPDatabase } from 'idb';
import { AssertionError, DbError, ErrorCode, assert } from '../../shared/index.js';
import type { DocKey, DocRow, ReadTx, Storage, WriteTx } from '../storage.js';
import { overlayMetaRange, stagedInRange } from '../meta-range.js';
import type { MetaEntry } from '../meta-range.js';
import { SerialQueue } from '../serial-queue.js';

/**
 * Bump with an upgrade step in `upgrade` whenever the stores below change.
 * History: 1 = first.
 */
export const INDEXEDDB_SCHEMA_VERSION = 1;

/** Every store: a commit spans all of them, so it is all-or-nothing. */
const STORES = ['meta', 'docs', 'links', 'checkpoints'] as const;

/** A document row as stored: short field names, since IndexedDB keeps them in every record. */
interface StoredDoc {
  c: string;
  i: string;
  s: number;
  v: Uint8Array;
}

interface Schema extends DBSchema {
  meta: { key: string; value: Uint8Array };
  /** Keyed by [collection, id]; `bySeq` lists rows by seq, ties by that key: the feed order. */
  docs: { key: [string, string]; value: StoredDoc; indexes: { bySeq: number } };
  /**
   * Keyed by [seq, until], one record per putLink. The contract keeps the largest `until` per
   * seq; storing each pair as its own key makes putLink a blind put (no read inside the commit)
   * and linkedThrough the max over a key range.
   */
  links: { key: [number, number]; value: number };
  checkpoints: { key: string; value: number };
}

/**
 * The part of the Web Locks API (`navigator.locks`) the adapter uses. The callback's lock is
 * null when `ifAvailable` is set and another holder has it; the lock is held until the
 * promise the callback returns settles.
 */
export interface LockManagerLike {
  request(
    name: string,
    options: { ifAvailable?: boolean; signal?: AbortSignal },
    callback: (lock: object | null) => Promise<void>,
  ): Promise<void>;
}

export interface IndexedDbStorageOptions {
  /** The IDBFactory (default `globalThis.indexedDB`); Node tests pass fake-indexeddb's. */
  indexedDB?: IDBFactory;
  /**
   * Web Locks (default `navigator.locks` where present). The store is held under the exclusive
   * lock `polyarch-idb:NAME` for as long as it is open, so a second tab cannot open it too and
   * fork the replica; `null` opens without one (the caller guarantees a single opener).
   */
  locks?: LockManagerLike | null;
}

const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
/** IDB's `count` is an unsigned long; anything larger means "no limit". */
const COUNT_MAX = 0xffff_ffff;

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The feed order; IndexedDB compares strings by UTF-16 code units, as `<` does. */
function compareFeed(a: DocRow, b: DocRow): number {
  return a.seq - b.seq || compareStrings(a.collection, b.collection) || compareStrings(a.id, b.id);
}

/** Merges two ascending lists of distinct rows, up to `limit`. */
function merge(a: readonly DocRow[], b: readonly DocRow[], limit: number, compare: typeof compareFeed): DocRow[] {
  const out: DocRow[] = [];
  let i = 0;
  let j = 0;
  while (out.length < limit && (i < a.length || j < b.length)) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && compare(x, y) <= 0)) {
      out.push(x as DocRow);
      i++;
    } else {
      out.push(y);
      j++;
    }
  }
  return out;
}

function docKeyString(collection: string, id: string): string {
  return `${collection.length}:${collection}${id}`;
}

function toRow(d: StoredDoc): DocRow {
  return { collection: d.c, id: d.i, seq: d.s, state: d.v };
}

function checkLimit(limit: number): void {
  assert(Number.isInteger(limit) && limit >= 0, `limit must be a non-negative integer, got ${limit}`);
}

/** A `count` argument for getAll: IDB reads 0 as "all", so callers handle limit 0 themselves. */
function countFor(n: number): number | undefined {
  return Number.isFinite(n) && n <= COUNT_MAX ? n : undefined;
}

/** What a write transaction has staged and not yet committed. */
class Stage {
  /** A staged value, or null for a staged delete. */
  readonly meta = new Map<string, Uint8Array | null>();
  readonly docs = new Map<string, DocRow>();
  readonly links = new Map<number, number>();
  readonly checkpoints = new Map<string, number>();

  get empty(): boolean {
    return this.meta.size + this.docs.size + this.links.size + this.checkpoints.size === 0;
  }
}

type Db = IDBPDatabase<Schema>;

/**
 * One transaction. Each read is its own short readonly IndexedDB transaction: the adapter runs
 * one of its transactions at a time and the store lock keeps other writers out, so successive
 * reads of one callback see one committed state, with the stage laid over it.
 */
class IndexedDbTx implements WriteTx {
  readonly stage = new Stage();
  private live = true;

  constructor(
    private readonly db: Db,
    private readonly storeName: string,
    private readonly writable: boolean,
  ) {}

  finish(): void {
    this.live = false;
  }

  private check(write: boolean): void {
    if (!this.live) throw new AssertionError('a storage transaction was used after its callback settled');
    if (write) assert(this.writable, 'a read transaction cannot write');
  }

  /** Runs IndexedDB requests in one readonly transaction; its failures become DbErrors. */
  private async query<R>(fn: (t: ReturnType<Db['transaction']>) => Promise<R>): Promise<R> {
    try {
      return await fn(this.db.transaction([...STORES], 'readonly'));
    } catch (e) {
      throw idbError(this.storeName, 'read', e);
    }
  }

  async getMeta(key: string): Promise<Uint8Array | undefined> {
    this.check(false);
    const staged = this.stage.meta.get(key);
    if (staged !== undefined) return staged ?? undefined;
    return this.query((t) => t.objectStore('meta').get(key));
  }

  async listMeta(
    prefix: string,
    afterKey: string | undefined,
    limit: number,
  ): Promise<{ key: string; value: Uint8Array }[]> {
    this.check(false);
    checkLimit(limit);
    if (limit === 0) return [];
    const inRange = (key: string): boolean => key.startsWith(prefix) && (afterKey === undefined || key > afterKey);
    // The keys holding the prefix are one contiguous run from the prefix on: read from the
    // later of the prefix and afterKey, enough that `limit` remain once staged keys are laid over.
    const range =
      afterKey !== undefined && afterKey >= prefix
        ? IDBKeyRange.lowerBound(afterKey, true)
        : IDBKeyRange.lowerBound(prefix);
    const [keys, values] = await this.query((t) => {
      const meta = t.objectStore('meta');
      const count = countFor(limit + stagedInRange(this.stage.meta, inRange));
      return Promise.all([meta.getAllKeys(range, count), meta.getAll(range, count)]);
    });
    const committed: MetaEntry[] = [];
    for (let n = 0; n < keys.length && (keys[n] as string).startsWith(prefix); n++) {
      committed.push({ key: keys[n] as string, value: values[n] as Uint8Array });
    }
    return overlayMetaRange(committed, this.stage.meta, inRange, limit);
  }

  async getDocs(keys: readonly DocKey[]): Promise<(DocRow | undefined)[]> {
    this.check(false);
    const staged = keys.map(({ collection, id }) => this.stage.docs.get(docKeyString(collection, id)));
    const missing = keys.filter((_, n) => staged[n] === undefined);
    if (missing.length === 0) return staged;
    const found = await this.query((t) => {
      const docs = t.objectStore('docs');
      return Promise.all(missing.map(({ collection, id }) => docs.get([collection, id])));
    });
    let next = 0;
    return staged.map((row) => {
      if (row !== undefined) return row;
      const d = found[next++];
      return d === undefined ? undefined : toRow(d);
    });
  }

  async feed(afterSeq: number, limit: number): Promise<DocRow[]> {
    this.check(false);
    checkLimit(limit);
    return this.feedBetween(afterSeq, Infinity, limit);
  }

  async seqAfter(afterSeq: number, n: number): Promise<number> {
    this.check(false);
    checkLimit(n);
    if (n === 0) return 0;
    if (this.stage.docs.size > 0) {
      const rows = await this.feedBetween(afterSeq, Infinity, n);
      return rows[rows.length - 1]?.seq ?? 0;
    }
    // Walk index keys only: sizing a batch must not read the documents' states.
    return this.query(async (t) => {
      const bySeq = t.objectStore('docs').index('bySeq');
      const range = IDBKeyRange.lowerBound(afterSeq, true);
      let cursor = await bySeq.openKeyCursor(range);
      if (cursor === null) return 0;
      if (n > 1) cursor = await cursor.advance(n - 1);
      if (cursor !== null) return cursor.key;
      const last = await bySeq.openKeyCursor(range, 'prev');
      return last?.key ?? 0;
    });
  }

  async feedRange(afterSeq: number, throughSeq: number): Promise<DocRow[]> {
    this.check(false);
    return this.feedBetween(afterSeq, throughSeq, Infinity);
  }

  /** Rows with after < seq <= through in feed order, the stage laid over committed rows. */
  private async feedBetween(after: number, through: number, limit: number): Promise<DocRow[]> {
    if (limit === 0 || through <= after) return [];
    const staged = this.stage.docs;
    const range = through === Infinity ? IDBKeyRange.lowerBound(after, true) : IDBKeyRange.bound(after, through, true);
    // A staged row hides the committed row it replaces, wherever that sits: read enough
    // committed rows that `limit` remain after hiding.
    const stored = await this.query((t) =>
      t
        .objectStore('docs')
        .index('bySeq')
        .getAll(range, countFor(limit + staged.size)),
    );
    const committed = stored.filter((d) => !staged.has(docKeyString(d.c, d.i))).map(toRow);
    if (staged.size === 0) return committed.slice(0, limit);
    const mine = [...staged.values()].filter((r) => r.seq > after && r.seq <= through).sort(compareFeed);
    return merge(committed, mine, limit, compareFeed);
  }

  async linkedThrough(afterSeq: number, throughSeq: number): Promise<number> {
    this.check(false);
    let max = 0;
    for (const [seq, until] of this.stage.links) {
      if (seq > afterSeq && seq <= throughSeq) max = Math.max(max, until);
    }
    if (throughSeq <= afterSeq) return max;
    // [after, Infinity] sorts after every [after, until]; [through, Infinity] after every [through, until].
    const range = IDBKeyRange.bound([afterSeq, Infinity], [throughSeq, Infinity], true, false);
    const keys = await this.query((t) => t.objectStore('links').getAllKeys(range));
    for (const [, until] of keys) max = Math.max(max, until);
    return max;
  }

  async listDocs(collection: string, afterId: string | undefined, limit: number): Promise<DocRow[]> {
    this.check(false);
    checkLimit(limit);
    if (limit === 0) return [];
    const mine = [...this.stage.docs.values()]
      .filter((r) => r.collection === collection && (afterId === undefined || r.id > afterId))
      .sort((a, b) => compareStrings(a.id, b.id));
    // An array key sorts after every string, so [collection, []] bounds the collection's ids.
    const range =
      afterId === undefined
        ? IDBKeyRange.bound([collection], [collection, []])
        : IDBKeyRange.bound([collection, afterId], [collection, []], true);
    const stored = await this.query((t) => t.objectStore('docs').getAll(range, countFor(limit + mine.length)));
    const hidden = new Set(mine.map((r) => r.id));
    const committed = stored.filter((d) => !hidden.has(d.i)).map(toRow);
    return merge(committed, mine, limit, (a, b) => compareStrings(a.id, b.id));
  }

  async getCheckpoint(peer: string): Promise<number> {
    this.check(false);
    return this.stage.checkpoints.get(peer) ?? (await this.query((t) => t.objectStore('checkpoints').get(peer))) ?? 0;
  }

  async listCheckpoints(): Promise<{ peer: string; seq: number }[]> {
    this.check(false);
    const [peers, seqs] = await this.query((t) => {
      const store = t.objectStore('checkpoints');
      return Promise.all([store.getAllKeys(), store.getAll()]);
    });
    const all = new Map(peers.map((peer, n) => [peer, seqs[n] as number]));
    for (const [peer, seq] of this.stage.checkpoints) all.set(peer, seq);
    return [...all].sort(([a], [b]) => compareStrings(a, b)).map(([peer, seq]) => ({ peer, seq }));
  }

  putMeta(key: string, value: Uint8Array): void {
    this.check(true);
    this.stage.meta.set(key, value.slice());
  }

  deleteMeta(key: string): void {
    this.check(true);
    this.stage.meta.set(key, null);
  }

  putDoc(row: DocRow): void {
    this.check(true);
    assert(Number.isSafeInteger(row.seq), `document seq must be an integer, got ${row.seq}`);
    const { collection, id, seq } = row;
    this.stage.docs.set(docKeyString(collection, id), { collection, id, seq, state: row.state.slice() });
  }

  putLink(seq: number, until: number): void {
    this.check(true);
    assert(Number.isSafeInteger(seq) && Number.isSafeInteger(until), 'link seqs must be integers');
    this.stage.links.set(seq, Math.max(this.stage.links.get(seq) ?? 0, until));
  }

  setCheckpoint(peer: string, seq: number): void {
    this.check(true);
    this.stage.checkpoints.set(peer, seq);
  }
}

/** An IndexedDB failure (quota, a closed connection, storage cleared) as an operating error. */
function idbError(store: string, what: string, e: unknown): unknown {
  if (e instanceof DbError || e instanceof AssertionError) return e;
  const name = (e as { name?: unknown } | null)?.name;
  const message = (e as { message?: unknown } | null)?.message;
  return new DbError(
    ErrorCode.unavailable,
    `${store}: IndexedDB ${what} failed: ${typeof name === 'string' ? name : 'error'}${typeof message === 'string' && message !== '' ? ` (${message})` : ''}`,
    { cause: e },
  );
}

export class IndexedDbStorage implements Storage {
  private readonly queue = new SerialQueue();
  private closing: Promise<void> | undefined;
  /** Set when the browser closed the connection under us (storage cleared, database deleted). */
  private lost: DbError | undefined;

  constructor(
    readonly name: string,
    private readonly db: Db,
    private readonly releaseLock: () => Promise<void>,
  ) {
    const onGone = (why: string): void => {
      this.lost ??= new DbError(ErrorCode.unavailable, `${this.name}: ${why}`);
    };
    // Another connection wants to delete or upgrade the database: step aside rather than block it.
    db.addEventListener('versionchange', () => {
      onGone('the database is being deleted or upgraded elsewhere');
      db.close();
    });
    db.addEventListener('close', () => onGone('the browser closed the database'));
  }

  read<T>(fn: (tx: ReadTx) => Promise<T> | T): Promise<T> {
    return this.enqueue(async () => {
      const tx = new IndexedDbTx(this.db, this.name, false);
      try {
        return await fn(tx);
      } finally {
        tx.finish();
      }
    });
  }

  write<T>(fn: (tx: WriteTx) => Promise<T> | T): Promise<T> {
    return this.enqueue(async () => {
      const tx = new IndexedDbTx(this.db, this.name, true);
      let result: T;
      try {
        result = await fn(tx);
      } finally {
        tx.finish(); // on a throw the stage is simply dropped: nothing reached IndexedDB
      }
      if (!tx.stage.empty) await this.commit(tx.stage);
      return result;
    });
  }

  /** Applies a stage as one readwrite transaction; resolves once it is durable ('complete'). */
  private async commit(stage: Stage): Promise<void> {
    try {
      // 'strict': 'complete' fires only once the data is flushed to disk (Chromium defaults to
      // relaxed); engines that do not know the option ignore it.
      const t = this.db.transaction([...STORES], 'readwrite', { durability: 'strict' });
      const requests: Promise<unknown>[] = [];
      const meta = t.objectStore('meta');
      for (const [key, value] of stage.meta) requests.push(value === null ? meta.delete(key) : meta.put(value, key));
      const docs = t.objectStore('docs');
      for (const r of stage.docs.values()) requests.push(docs.put({ c: r.collection, i: r.id, s: r.seq, v: r.state }));
      const links = t.objectStore('links');
      for (const [seq, until] of stage.links) requests.push(links.put(until, [seq, until]));
      const checkpoints = t.objectStore('checkpoints');
      for (const [peer, seq] of stage.checkpoints) requests.push(checkpoints.put(seq, peer));
      // Every request promise is awaited (so none rejects unhandled), then the commit itself.
      await Promise.all([...requests, t.done]);
    } catch (e) {
      throw idbError(this.name, 'commit', e);
    }
  }

  close(): Promise<void> {
    this.closing ??= this.queue.drained().then(() => {
      this.db.close();
      return this.releaseLock();
    });
    return this.closing;
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    if (this.closing !== undefined) {
      return Promise.reject(new DbError(ErrorCode.closed, `storage ${this.name} is closed`));
    }
    return this.queue.run(() => (this.lost === undefined ? task() : Promise.reject(this.lost)));
  }
}

/**
 * Takes the exclusive lock `name` if nobody holds it. Resolves with a function that releases it
 * (resolving once the lock manager has let go, so a successor can take it at once), or with
 * null when it is held elsewhere.
 */
export function tryLock(locks: LockManagerLike, name: string): Promise<(() => Promise<void>) | null> {
  return new Promise((resolve, reject) => {
    let letGo = (): void => {};
    const held = new Promise<void>((r) => (letGo = r));
    let granted = false;
    const request = locks.request(name, { ifAvailable: true }, async (lock) => {
      if (lock === null) return;
      granted = true;
      resolve(async () => {
        letGo();
        await request.catch(() => undefined);
      });
      await held;
    });
    request.then(
      () => {
        if (!granted) resolve(null);
      },
      (e: unknown) => reject(e),
    );
  });
}

/** `navigator.locks` where the runtime has Web Locks. */
export function defaultLocks(): LockManagerLike | undefined {
  const nav = (globalThis as { navigator?: { locks?: LockManagerLike } }).navigator;
  return nav?.locks;
}

function openRequest(factory: IDBFactory, name: string): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    let request: IDBOpenDBRequest;
    try {
      request = factory.open(name, INDEXEDDB_SCHEMA_VERSION);
    } catch (e) {
      reject(e);
      return;
    }
    request.onupgradeneeded = (event) => upgrade(request.result, event.oldVersion);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

/** Creates the stores; each schema version adds its step here. */
function upgrade(db: IDBDatabase, oldVersion: number): void {
  if (oldVersion < 1) {
    db.createObjectStore('meta');
    const docs = db.createObjectStore('docs', { keyPath: ['c', 'i'] });
    docs.createIndex('bySeq', 's');
    db.createObjectStore('links');
    db.createObjectStore('checkpoints');
  }
}

/**
 * Opens (creating if needed) the IndexedDB database `polyarch:NAME` as a Storage. Holds the Web
 * Lock `polyarch-idb:NAME` while open where the runtime has Web Locks; fails with DbError
 * `unavailable` when another tab holds it or IndexedDB is missing or refuses (private modes),
 * and `invalid_name` for a name that is not 1-64 of `A-Za-z0-9_.-`. The IndexedDB classes must
 * be globals, as in browsers (Node tests import `fake-indexeddb/auto`).
 * @example
 * const storage = await openIndexedDbStorage('calendar');
 * const db = await openReplica({ storage });
 */
export async function openIndexedDbStorage(name: string, options: IndexedDbStorageOptions = {}): Promise<Storage> {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new DbError(
      ErrorCode.invalidName,
      `an IndexedDB store name is 1-64 of A-Za-z0-9_.-, got ${JSON.stringify(name)}`,
    );
  }
  const label = `indexeddb:${name}`;
  const factory = options.indexedDB ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (factory === undefined) throw new DbError(ErrorCode.unavailable, `${label}: this runtime has no IndexedDB`);
  const locks = options.locks === undefined ? defaultLocks() : options.locks;
  let release = (): Promise<void> => Promise.resolve();
  if (locks !== null && locks !== undefined) {
    const got = await tryLock(locks, `polyarch-idb:${name}`);
    if (got === null) {
      throw new DbError(ErrorCode.unavailable, `${label} is open in another tab or window: one store, one replica`);
    }
    release = got;
  }
  let raw: IDBDatabase;
  try {
    raw = await openRequest(factory, `polyarch:${name}`);
  } catch (e) {
    await release();
    throw idbError(label, 'open', e);
  }
  return new IndexedDbStorage(label, wrap(raw) as unknown as Db, release);
}
