/**
 * The SDK: an embedded leader you open in a process or a page. It wraps the replica state
 * machine with a small API (collections, batches, subscriptions, in-process sync) and
 * chooses the environment and storage. Browser-safe: no Node built-ins here.
 */
import { decodeBundle, encodeBundle } from '../replication/bundle.js';
import { CausalContext } from '../core/index.js';
import type { JsonValue, Limits, Policy } from '../core/index.js';
import type { Env } from '../env/env.js';
import { realEnv } from '../env/real.js';
import { Replica } from '../replication/replica.js';
import type { CollectionConfig, PatchOp } from '../crdt/index.js';
import type {
  ChangeEvent,
  CollectionOptions,
  ConflictEntry,
  ConflictView,
  DocView,
  FeedEntry,
  MergeFunction,
  ReplicaStatus,
  WriteOp,
  WriteResult,
} from '../replication/replica.js';
import { SessionDriver } from '../replication/session-driver.js';
import type { TextHandle } from '../replication/text-docs.js';
import type { Trigger, TriggerEvent, TriggerOptions, TriggerStatus } from '../replication/triggers.js';
export type { Trigger, TriggerEvent, TriggerOptions, TriggerStatus, TriggerWhere } from '../replication/triggers.js';
export type { TextChange, TextEvent, TextHandle } from '../replication/text-docs.js';
export type { ConstraintViolation, ViolationEvent } from '../replication/constraints.js';
import type { ViolationEvent } from '../replication/constraints.js';
import type { SessionOptions } from '../replication/session-driver.js';
export type { SessionDriver, SessionOptions } from '../replication/session-driver.js';
import type { SequenceConfig, SequenceOptions, SequenceStatus } from '../replication/sequences.js';
export type { SequenceConfig, SequenceOptions, SequenceStatus } from '../replication/sequences.js';
import { PresenceHub, publisherId } from '../replication/presence.js';
import type { PresenceRoom } from '../replication/presence.js';
export type { PresencePeer, PresenceRoom } from '../replication/presence.js';
import type { Storage } from '../storage/index.js';
import type { Connection } from '../transport/index.js';
import { SyncHandle } from './sync.js';
import type { SyncOptions } from './sync.js';
export type {
  NetworkEvents,
  SyncHandle,
  SyncOptions,
  SyncRefusal,
  SyncStatus,
  SyncStatusDetail,
  WebSocketConstructor,
} from './sync.js';
import { DbError, ErrorCode } from '../shared/errors.js';

export type {
  ChangeEvent,
  CollectionConfig,
  CollectionOptions,
  ConflictEntry,
  ConflictView,
  DocView,
  PatchOp,
  FeedEntry,
  JsonValue,
  MergeFunction,
  Policy,
  ReplicaStatus,
  WriteOp,
  WriteResult,
};

export interface OpenOptions {
  /** Stable replica id (1-64 of `A-Za-z0-9_.:-`). Generated once and persisted when absent. */
  id?: string;
  /** `'memory'`, a Storage instance, or (from the Node entry `polyarch`) a SQLite file path. */
  storage: 'memory' | string | Storage;
  /**
   * Local default settings per collection, used until replicated settings (set with
   * `collection(name).configure`) arrive: `{ carts: { policy: 'lww' } }`.
   */
  collections?: Record<string, CollectionOptions>;
  /** Merge functions, by the names collection settings use (policy 'merge'). */
  mergeFunctions?: Record<string, MergeFunction>;
  /** Size limits (document bytes, batch size, nesting depth). */
  limits?: Partial<Limits>;
  /** How far ahead of our clock a remote timestamp may be (default 60 s). */
  maxSkewMs?: number;
  /** Clock, timers, randomness and logger; defaults to the real ones. */
  env?: Env;
}

/** Opens storage from a spec; the Node entry adds SQLite file paths. */
export type StorageOpener = (spec: string) => Promise<Storage>;

/** A collection of documents in one replica. */
export class Collection {
  constructor(
    private readonly replica: Replica,
    /** The collection's name. */
    readonly name: string,
  ) {}

  /**
   * Writes a JSON value. Without `version` it replaces whatever this replica holds; with the
   * `version` from a `get`, it fails with a ConflictError (code `conflict`) when the document
   * changed since, so no update is lost. With `ifAbsent`, it fails with code
   * `precondition_failed` when the document exists (create-only).
   * @example
   * const { version } = await db.collection('todos').put('t1', { title: 'milk', done: false });
   */
  put(id: string, value: JsonValue, options: { version?: string; ifAbsent?: boolean } = {}): Promise<WriteResult> {
    return this.replica.put(this.name, id, value, options);
  }

  /**
   * Reads a document: its winning value, its version, and the concurrent `conflicts` kept
   * beside it. Returns null when the document is absent or deleted.
   * @example
   * const doc = await db.collection('todos').get('t1');
   * if (doc && doc.conflicts.length > 0) console.log('concurrent edits', doc.conflicts);
   */
  get(id: string): Promise<DocView | null> {
    return this.replica.get(this.name, id);
  }

  /**
   * Deletes a document (a tombstone that replicates). With `version`, fails with a
   * ConflictError when the document changed since that version.
   * @example
   * await db.collection('todos').delete('t1', { version: doc.version });
   */
  delete(id: string, options: { version?: string } = {}): Promise<WriteResult> {
    return this.replica.delete(this.name, id, options);
  }

  /**
   * One page of live documents ordered by id; pass `next` back as `after` for the next page.
   * @example
   * const { results, next } = await db.collection('todos').list({ limit: 50 });
   */
  list(options: { after?: string; limit?: number } = {}): Promise<{ results: DocView[]; next: string | null }> {
    return this.replica.list(this.name, options);
  }

  /**
   * Calls `listener` after each committed change to this collection, local or replicated.
   * Returns a function that unsubscribes.
   * @example
   * const stop = db.collection('todos').subscribe((e) => console.log(e.id, e.origin));
   */
  subscribe(listener: (event: ChangeEvent) => void): () => void {
    return this.replica.subscribe((e) => {
      if (e.collection === this.name) listener(e);
    });
  }

  /**
   * Applies operations to a map, counter or set document, atomically (all or none). Paths
   * are JSON pointers (`''` for a document that is itself a counter or set). Bad operations
   * fail with code `invalid_input` and change nothing.
   * @example
   * await db.collection('events').patch('standup', [
   *   { op: 'set', path: '/title', value: 'Standup' },
   *   { op: 'increment', path: '/attendees', by: 1 },
   *   { op: 'add-to-set', path: '/tags', value: 'daily' },
   * ]);
   */
  patch(id: string, ops: PatchOp[], options: { version?: string } = {}): Promise<WriteResult> {
    return this.replica.patch(this.name, id, ops, options);
  }

  /**
   * Adds `by` (negative to subtract) to a counter: the document itself in a `counter`
   * collection, or the field at `path` of a map. Increments from every leader add up.
   * @example
   * await db.collection('likes').increment('post-1');
   * await db.collection('pages').increment('home', 1, { path: '/visits' });
   */
  increment(id: string, by = 1, options: { path?: string } = {}): Promise<WriteResult> {
    return this.replica.patch(this.name, id, [{ op: 'increment', path: options.path ?? '', by }]);
  }

  /**
   * Adds `value` to a set (add-wins: an add concurrent with a remove keeps the element): the
   * document itself in a `set` collection, or the field at `path` of a map.
   * @example
   * await db.collection('tags').addToSet('post-1', 'red');
   */
  addToSet(id: string, value: JsonValue, options: { path?: string } = {}): Promise<WriteResult> {
    return this.replica.patch(this.name, id, [{ op: 'add-to-set', path: options.path ?? '', value }]);
  }

  /**
   * Removes `value` from a set, as far as this replica has seen it added.
   * @example
   * await db.collection('tags').removeFromSet('post-1', 'red');
   */
  removeFromSet(id: string, value: JsonValue, options: { path?: string } = {}): Promise<WriteResult> {
    return this.replica.patch(this.name, id, [{ op: 'remove-from-set', path: options.path ?? '', value }]);
  }

  /**
   * Changes this collection's settings at every replica (they replicate like data): the
   * document kind (`record`, `map`, `counter`, `set`), the policy for concurrent writes
   * (`keep`, `lww`, `merge` with the name of a registered function), and per-field
   * settings of a map, unique fields and references. The whole settings object is replaced:
   * `kind` defaults to `record` and `policy` to `keep`.
   * @example
   * await db.collection('events').configure({ kind: 'map', policy: 'keep', fields: { '/title': { policy: 'lww' } } });
   * await db.collection('users').configure({ unique: ['email'] });
   */
  configure(settings: Partial<CollectionConfig>): Promise<CollectionConfig> {
    return this.replica.configure(this.name, settings);
  }

  /**
   * The settings this collection uses now, and whether they are the replicated ones.
   * @example
   * const { kind, policy } = db.collection('events').config();
   */
  config(): CollectionConfig & { replicated: boolean } {
    return this.replica.collectionConfig(this.name);
  }

  /**
   * One page of this collection's documents in conflict. Follow `next` until it is null.
   * @example
   * const { results } = await db.collection('todos').conflicts();
   */
  conflicts(
    options: { after?: string; limit?: number } = {},
  ): Promise<{ results: ConflictEntry[]; next: string | null; last_seq: number }> {
    return this.replica.conflicts({ ...options, collection: this.name });
  }

  /**
   * Calls `listener` after each change that leaves a document of this collection in
   * conflict, local or replicated: resolve by reading the document and writing the
   * resolution with its version. Returns a function that unsubscribes.
   * @example
   * db.collection('todos').onConflict(async ({ id }) => {
   *   const doc = await db.collection('todos').get(id);
   *   if (doc) await db.collection('todos').put(id, pick(doc), { version: doc.version });
   * });
   */
  onConflict(listener: (event: ChangeEvent) => void): () => void {
    return this.replica.onConflict((e) => {
      if (e.collection === this.name) listener(e);
    });
  }
}

/** A named sequence at one replica (`db.sequence(name)`). */
export class Sequence {
  constructor(
    private readonly replica: Replica,
    /** The sequence's name. */
    readonly name: string,
  ) {}

  /**
   * The next number at this leader. When the blocks granted to it are used up and the
   * allocator grants no new one within `waitMs` (default 2000), fails with code
   * `sequence_exhausted`, having used no number: retry once connected.
   * @example
   * const n = await db.sequence('invoice').next();
   */
  next(options: { waitMs?: number } = {}): Promise<number> {
    return this.replica.nextval(this.name, options);
  }

  /**
   * Creates or changes the sequence at every replica (last writer wins): `allocator` is the
   * replica granting blocks of `blockSize` (default 100) numbers from `start` (default 1).
   * Changing the allocator hands over, at the current allocator (its last grants go with the
   * change); elsewhere it fails with `conflict` unless `force: true` with a `start` above
   * anything the old allocator may have granted (see docs/sdk.md).
   * @example
   * await db.sequence('invoice').configure({ allocator: 'eu-1', blockSize: 100, start: 1000 });
   */
  configure(options: SequenceOptions): Promise<SequenceConfig> {
    return this.replica.configureSequence(this.name, options);
  }

  /**
   * What this leader holds: settings, the ranges it may still hand out, how many numbers
   * remain, the blocks it asked for and was granted, and the last number it handed out.
   * @example
   * const { remaining } = await db.sequence('invoice').status();
   */
  status(): Promise<SequenceStatus> {
    return this.replica.sequenceStatus(this.name);
  }
}

/** An embedded leader: accepts reads and writes locally and syncs with any peer. */
export class Database {
  private readonly collectionsByName = new Map<string, Collection>();
  private readonly sessions = new Set<SessionDriver>();
  private readonly syncs = new Set<SyncHandle>();

  constructor(
    /** The underlying replica state machine (for tools and tests). */
    readonly replica: Replica,
    private readonly env: Env,
  ) {}

  /** This replica's id. */
  get id(): string {
    return this.replica.id;
  }

  /**
   * A collection by name (1-64 of `A-Za-z0-9_.-`, starting with a letter).
   * @example
   * const todos = db.collection('todos');
   */
  collection(name: string): Collection {
    let c = this.collectionsByName.get(name);
    if (c === undefined) {
      c = new Collection(this.replica, name);
      this.collectionsByName.set(name, c);
    }
    return c;
  }

  /**
   * Writes several documents atomically, here and at every replica it reaches: all or none.
   * @example
   * await db.batch([
   *   { type: 'put', collection: 'accounts', id: 'a', value: { balance: 50 } },
   *   { type: 'put', collection: 'accounts', id: 'b', value: { balance: 150 } },
   * ]);
   */
  batch(ops: readonly WriteOp[]): Promise<WriteResult[]> {
    return this.replica.write(ops);
  }

  /**
   * A new document id, unique across the cluster without asking anyone, and sortable by the
   * time it was made: ids made later at this replica sort after earlier ones as strings.
   * Format (src/core/time-id.ts): time and counter in base32, this replica's id, and how many
   * times its store has been opened (so a crash with a clock set back never repeats an id).
   * @example
   * const id = db.newId(); // '01hf7yat00001.eu-1.3'
   * await db.collection('orders').put(id, { total: 12 });
   */
  newId(): string {
    return this.replica.newId();
  }

  /**
   * A named sequence of numbers for humans (invoice numbers): every leader hands them out
   * from blocks an allocator replica grants it, so no number is ever given twice, even
   * across partitions and crashes (numbers may be skipped). Configure it once, anywhere.
   * @example
   * const invoices = db.sequence('invoice');
   * await invoices.configure({ allocator: 'eu-1', blockSize: 100 });
   * const n = await invoices.next(); // 1, then 2, ...; the next leader to ask gets 101-200
   */
  sequence(name: string): Sequence {
    return new Sequence(this.replica, name);
  }

  /**
   * What this replica holds, per replica id: the highest write counter up to which it has
   * every write. Pass it to another replica's `changesSince`.
   * @example
   * const bytes = await eu.changesSince(us.vector());
   */
  vector(): Record<string, number> {
    return this.replica.vector();
  }

  /**
   * A collaborative text document: `insert(pos, text)`, `delete(pos, len)` (UTF-16 code
   * units, as JavaScript editors count), `toString()`, and `subscribe` to hear every change with
   * the ranges it touched. Edits show at once and are committed as one change per event-loop
   * turn; other replicas' edits merge without conflicts (see docs/text.md). Await `ready`
   * before the first edit.
   * @example
   * const notes = db.text('notes', 'welcome');
   * await notes.ready;
   * notes.insert(0, 'Hello');
   * notes.subscribe(({ origin, changes }) => console.log(origin, changes));
   */
  text(collection: string, id: string): TextHandle {
    return this.replica.text(collection, id);
  }

  /**
   * Every change this replica holds that a replica with `vector` lacks, as bytes for any
   * channel (a file, a message queue, a custom transport). Without `vector`, everything.
   * @example
   * await us.applyChanges(await eu.changesSince(us.vector()));
   */
  async changesSince(vector: Record<string, number> = {}): Promise<Uint8Array> {
    const basis = CausalContext.from(checkVector(vector));
    await this.replica.flushTexts();
    const from = this.replica.feedStartFor(basis.base());
    const batch = await this.replica.readBatch(from, Number.MAX_SAFE_INTEGER, basis, Number.MAX_SAFE_INTEGER);
    return encodeBundle({
      basis,
      batch: {
        type: 'batch',
        id: 0,
        fromSeq: from,
        toSeq: batch.toSeq,
        changes: batch.changes,
        context: batch.context,
      },
    });
  }

  /**
   * Applies bytes from another replica's `changesSince`: idempotent and order-free, so the
   * same bytes may arrive twice, late, or after newer ones. Returns how many documents changed.
   * @example
   * const { recorded } = await us.applyChanges(bytes);
   */
  async applyChanges(bytes: Uint8Array): Promise<{ recorded: number }> {
    if (!(bytes instanceof Uint8Array)) throw new DbError(ErrorCode.invalidInput, 'applyChanges takes a Uint8Array');
    const { basis, batch } = decodeBundle(bytes);
    const { recorded } = await this.replica.applyRemote(batch.changes, { context: batch.context, basis });
    return { recorded };
  }

  /**
   * Replicates with a peer over a Connection (in memory, WebSocket, ...), both ways, live
   * until either side closes. Returns the running session.
   * @example
   * const [a, b] = memoryConnectionPair();
   * eu.connect(a); us.connect(b);
   */
  connect(connection: Connection, options: Omit<SessionOptions, 'env'> = {}): SessionDriver {
    if (this.replica.isClosed) throw new DbError(ErrorCode.closed, `replica ${this.id} is closed`);
    const driver = new SessionDriver(this.replica, connection, {
      presence: this.presenceHub,
      ...options,
      env: this.env,
    });
    this.sessions.add(driver);
    driver.onClose(() => this.sessions.delete(driver));
    driver.start();
    return driver;
  }

  /**
   * Keeps this replica in sync with a server (`polyarch serve`) over a WebSocket, both ways,
   * live, redialling with backoff whenever the link drops; local reads and writes go on
   * meanwhile. `url` is `http(s)://host:port` (or `ws(s)://...`); `token`, if any, travels as
   * the `token` query parameter of the upgrade request (use https). Options: `WebSocket` (the
   * class; Node 20 needs ws's, which the `polyarch` entry supplies), `heartbeatMs`,
   * `deadAfterMs`, `minBackoffMs`, `maxBackoffMs`, `connectTimeoutMs`, `cluster`. Throws
   * DbError `invalid_input` for a bad url or options. Closing the database closes it.
   * @example
   * const handle = db.sync('https://db.example.com', { token });
   * handle.subscribe((status) => console.log('sync', status));
   * await handle.close();
   */
  sync(url: string, options: SyncOptions = {}): SyncHandle {
    if (this.replica.isClosed) throw new DbError(ErrorCode.closed, `replica ${this.id} is closed`);
    const handle = new SyncHandle(url, options, {
      env: this.env,
      connect: (conn, o) => this.connect(conn, o),
      forget: (h) => this.syncs.delete(h),
      head: () => this.replica.seq,
      watch: (listener) => this.replica.subscribe(listener),
    });
    this.syncs.add(handle);
    return handle;
  }

  private presenceHubValue: PresenceHub | undefined;

  /** The presence hub every session of this database relays through (servers read its size). */
  get presenceHub(): PresenceHub {
    this.presenceHubValue ??= new PresenceHub({ env: this.env, self: publisherId(this.replica.id, this.env) });
    return this.presenceHubValue;
  }

  /**
   * Ephemeral presence in `room` (for the editor, `collection/id` of the document): this
   * client's small JSON state (name, colour, cursor) and the states of every other client in
   * the room, relayed by the leaders and never stored. A state disappears when its client
   * leaves, disconnects, or (after a leader crash) stops refreshing for `ttlMs` (default 30 s).
   * Returns the same room until it is closed. Throws `invalid_name` for a room that is not 1-256 characters.
   * @example
   * const room = db.presence('notes/n1');
   * room.set({ name: 'Ana', color: '#e33', cursor: { anchor: 4, head: 4 } });
   * const stop = room.subscribe((others) => renderCursors(others));
   */
  presence(room: string, options: { ttlMs?: number } = {}): PresenceRoom {
    if (this.replica.isClosed) throw new DbError(ErrorCode.closed, `replica ${this.id} is closed`);
    return this.presenceHub.room(room, options);
  }

  /**
   * The replica's id, feed head, causal context, state digest and counts.
   * Two replicas that hold the same writes show the same `digest`.
   */
  status(): ReplicaStatus {
    return this.replica.status();
  }

  /**
   * The local feed after `since`: one entry per document, at its latest change.
   * @example
   * const { results, last_seq } = await db.changes({ since: 0 });
   */
  changes(options: { since?: number; limit?: number } = {}): Promise<{ results: FeedEntry[]; last_seq: number }> {
    return this.replica.changes(options);
  }

  /** Calls `listener` after each committed change in any collection; returns an unsubscribe function. */
  subscribe(listener: (event: ChangeEvent) => void): () => void {
    return this.replica.subscribe(listener);
  }

  /**
   * One page of the documents in conflict, in feed order, optionally of one collection.
   * A page may hold fewer than `limit` results while `next` is not null: follow `next`.
   * Besides concurrent writes (`kind: 'siblings'`), it lists documents breaking a unique
   * field or a reference after replication (`kind: 'unique' | 'reference'`, see `constraint`).
   * @example
   * for (let page = await db.conflicts(); ; page = await db.conflicts({ after: page.next })) {
   *   for (const c of page.results) console.log(c.collection, c.id, c.conflicts.length);
   *   if (page.next === null) break;
   * }
   */
  conflicts(
    options: { collection?: string; after?: string | null; limit?: number } = {},
  ): Promise<{ results: ConflictEntry[]; next: string | null; last_seq: number }> {
    const { after, ...rest } = options;
    return this.replica.conflicts(after === null || after === undefined ? rest : { ...rest, after });
  }

  /**
   * Calls `listener` after each commit that flags a document for a unique field or a reference
   * broken by writes leaders accepted apart, or clears its flags (`violations` empty), local
   * or replicated; including a document flagged by another one's change. Returns a function
   * that unsubscribes.
   * @example
   * db.onViolation(({ collection, id, violations }) => {
   *   if (violations.length > 0) console.log(`${collection}/${id} breaks`, violations);
   * });
   */
  onViolation(listener: (event: ViolationEvent) => void): () => void {
    return this.replica.onViolation(listener);
  }

  /**
   * Calls `listener` after each change that leaves a document in conflict, in any
   * collection. Returns a function that unsubscribes.
   * @example
   * db.onConflict((e) => console.log('conflict in', e.collection, e.id));
   */
  onConflict(listener: (event: ChangeEvent) => void): () => void {
    return this.replica.onConflict(listener);
  }

  /**
   * Registers a merge function under the name collection settings give it (policy
   * `merge`). It must be pure: the same sibling values give the same result on every replica.
   * @example
   * db.registerMerge('union', (values) => [...new Set(values.flat())].sort());
   * await db.collection('carts').configure({ kind: 'record', policy: 'merge', merge: 'union' });
   */
  registerMerge(name: string, fn: MergeFunction): void {
    this.replica.registerMerge(name, fn);
  }

  /**
   * Runs `handler` for every change, durably: never skipped, even across crashes and restarts.
   * `where: 'origin'` (default) runs once in the whole cluster, at the replica that accepted
   * the write; `'every-replica'` runs at each replica for each change it records. The first
   * `on` naming a trigger (`name`, default `where`) declares it, and events accumulate from then
   * on even while no handler is attached (say between a restart and this call). Events come one
   * at a time, in order; a handler that throws is retried with backoff (see `triggerStatus`).
   * Delivery is at least once: after a crash an event may come again, with the same `key`, so
   * a handler whose effect must happen once records the keys it handled.
   * @example
   * db.on('change', async (e) => {
   *   if (await alreadySent(e.key)) return;
   *   await sendWelcomeMail(e.value);
   *   await markSent(e.key);
   * }, { where: 'origin', name: 'welcome-mail', collection: 'users' });
   */
  on(event: 'change', handler: (event: TriggerEvent) => unknown, options?: TriggerOptions): Trigger {
    return this.replica.on(event, handler, options);
  }

  /**
   * Every trigger declared at this replica: whether a handler is attached, events pending,
   * delivered and failed here, the last error and the next retry.
   */
  triggerStatus(): TriggerStatus[] {
    return this.replica.triggerStatus();
  }

  /**
   * Forgets a trigger: its declaration and the events it had not delivered. A later `on` with
   * the name declares it afresh (with other settings if wanted), from that moment on.
   */
  dropTrigger(name: string): Promise<void> {
    return this.replica.dropTrigger(name);
  }

  /** Resolves when background work (merge write-backs, settings taking effect) is done. */
  settled(): Promise<void> {
    return this.replica.settled();
  }

  /**
   * Closes the replica's sessions (their peers see code `closed`), then the replica and its
   * storage. Later calls fail with code `closed`.
   */
  close(): Promise<void> {
    this.presenceHubValue?.close();
    for (const h of [...this.syncs]) void h.close();
    for (const s of [...this.sessions]) s.close('closed', `replica ${this.id} is closing`);
    return this.replica.close();
  }
}

function checkVector(vector: unknown): [string, number][] {
  if (vector === null || typeof vector !== 'object' || Array.isArray(vector)) {
    throw new DbError(ErrorCode.invalidInput, 'a vector is an object of replica id to counter');
  }
  const entries = Object.entries(vector as Record<string, unknown>);
  for (const [, n] of entries) {
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw new DbError(ErrorCode.invalidInput, 'vector counters must be integers >= 0');
    }
  }
  return entries as [string, number][];
}

/** Opens a Database; `openStorage` resolves string storage specs other than 'memory'. */
export async function openDatabase(options: OpenOptions, openStorage: StorageOpener): Promise<Database> {
  if (options === null || typeof options !== 'object')
    throw new DbError(ErrorCode.invalidInput, 'openReplica needs options');
  const env = options.env ?? realEnv();
  const storage = typeof options.storage === 'string' ? await openStorage(options.storage) : options.storage;
  if (storage === undefined || storage === null || typeof storage !== 'object') {
    throw new DbError(ErrorCode.invalidInput, "storage must be 'memory', a file path or a Storage");
  }
  try {
    const replica = await Replica.open({
      storage,
      env,
      ...(options.id === undefined ? {} : { id: options.id }),
      ...(options.collections === undefined ? {} : { collections: options.collections }),
      ...(options.mergeFunctions === undefined ? {} : { mergeFunctions: options.mergeFunctions }),
      ...(options.limits === undefined ? {} : { limits: options.limits }),
      ...(options.maxSkewMs === undefined ? {} : { maxSkewMs: options.maxSkewMs }),
    });
    return new Database(replica, env);
  } catch (e) {
    if (typeof options.storage === 'string') await storage.close();
    throw e;
  }
}
