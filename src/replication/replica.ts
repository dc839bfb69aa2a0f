/**
 * The replica state machine: a leader's documents, its feed and its bookkeeping, over an
 * injected Storage and Env. Every local write and every applied remote change is one storage
 * transaction holding the document rows, the feed position and the replica metadata, so an
 * acknowledged write is durable and a crash never leaves half a change.
 *
 * Feed: every change this replica records (local or remote) gets the next local `seq`; a
 * document's row carries the seq of the change that last changed it (CouchDB's by-seq
 * index). A remote change that joins to nothing new is not recorded, so it is not forwarded
 * again: that is the loop guard for any topology.
 */
import {
  CausalContext,
  DEFAULT_LIMITS,
  Decoder,
  Encoder,
  DEFAULT_MAX_SKEW_MS,
  EMPTY_RECORD,
  Policy,
  bytesEqual,
  TIME_ID_COUNTER_MAX,
  encodeTimeId,
  checkCollection,
  checkDocId,
  checkReplicaId,
  compareDots,
  compareHlc,
  compareLww,
  contextToken,
  decodeRecord,
  encodeRecord,
  everyDotIn,
  dotToken,
  encodeJsonValue,
  fromUtf8,
  hlcToIso,
  joinRecords,
  latestHlc,
  observe,
  parseToken,
  hash128Into,
  isDeletedState,
  isRootRegister,
  isTextBytes,
  isTextEntry,
  isTextState,
  tick,
  toHex,
  vvCovers,
  vvWith,
  winner,
  writeRecord,
} from '../core/index.js';
import type { Dot, Hlc, JsonValue, Limits, RecordState, Sibling, WriteBasis } from '../core/index.js';
import {
  Kind,
  applyPatch,
  checkCollectionConfig,
  diffToOps,
  distinctLosers,
  materialize,
  nodeAt,
  preparePatch,
  toJson,
} from '../crdt/index.js';
import type { CollectionConfig, DocumentView, PatchOp, PreparedOp } from '../crdt/index.js';
import type { Env } from '../env/env.js';
import type { Change, DocChange } from '../protocol/index.js';
import type { DocKey, DocRow, Storage, WriteTx } from '../storage/index.js';
import { ConflictError, DbError, ErrorCode } from '../shared/errors.js';
import { META_KEY, ReplicaMeta } from './replica-meta.js';
import { FLAG_CONFLICT, FLAG_IN_GROUP, unwrapStored, wrapEncoded, wrapStored } from './stored-doc.js';
import { CONFIG_COLLECTION, CollectionConfigs, SEQUENCES_COLLECTION, isSystemCollection } from './collection-config.js';
import { DEFAULT_WAIT_MS, Sequences } from './sequences.js';
import type { SequenceConfig, SequenceOptions, SequenceStatus } from './sequences.js';
import { TextDocuments, checkTextPayload, textOf, textPartFor } from './text-docs.js';
import { SeqIndex } from './seq-index.js';
import type { CommitHook, RecordedChange } from './commit-hooks.js';
import { Constraints } from './constraints.js';
import type { ConstraintViolation, ViolationEvent } from './constraints.js';
import { Triggers } from './triggers.js';
import type { Trigger, TriggerEvent, TriggerOptions, TriggerStatus } from './triggers.js';

const SEQ_INDEX_KEY = 'seq-index';
/** How many times this store has been opened (see newId). */
const INCARNATION_KEY = 'incarnation';
import type { TextCompaction, TextHandle } from './text-docs.js';
import type { CollectionOptions, MergeFunction } from './collection-config.js';

export type { CollectionOptions, MergeFunction };

export interface ReplicaOptions {
  storage: Storage;
  /** Stable replica id; generated once and persisted when absent. */
  id?: string;
  env: Env;
  limits?: Partial<Limits>;
  /** How far ahead of our clock a remote HLC may be before its change is refused. */
  maxSkewMs?: number;
  /** Local default settings per collection, until replicated ones (`configure`) arrive. */
  collections?: Record<string, CollectionOptions>;
  /** Merge functions by the names collection settings give them. */
  mergeFunctions?: Record<string, MergeFunction>;
  /**
   * When a text change holds the whole text instead of a delta (text-docs.ts). Tests and the
   * simulator lower these so snapshots, and their races, happen in short runs.
   */
  textCompaction?: TextCompaction;
}

export interface ConflictView {
  /** For a map document: the field, as a JSON pointer. Absent for a whole record. */
  path?: string;
  value: JsonValue | null;
  deleted: boolean;
  /** This sibling's own version: `If-Match` with it replaces exactly this sibling. */
  version: string;
  origin: string;
  time: string;
}

export interface DocView {
  id: string;
  value: JsonValue;
  /** The whole document's version: `If-Match` with it replaces every sibling seen here. */
  version: string;
  origin: string;
  time: string;
  conflicts: ConflictView[];
  /** Why the document breaks a unique field or a reference (see constraints.ts); only when it does. */
  violations?: ConstraintViolation[];
}

export interface WriteResult {
  collection: string;
  id: string;
  version: string;
}

export type WriteOp =
  | { type: 'put'; collection: string; id: string; value: unknown; version?: string; ifAbsent?: boolean }
  | { type: 'delete'; collection: string; id: string; version?: string }
  | { type: 'patch'; collection: string; id: string; ops: PatchOp[]; version?: string };

export interface ChangeEvent {
  collection: string;
  id: string;
  seq: number;
  origin: 'local' | 'remote';
  /** True when the document shows a conflict after this change. */
  conflict: boolean;
}

/** One document in conflict, as `conflicts()` lists it. */
export interface ConflictEntry {
  /** The feed position of the document's latest change. */
  seq: number;
  collection: string;
  id: string;
  /** 'siblings': concurrent writes kept; 'unique' or 'reference': a constraint broken after replication. */
  kind: 'siblings' | 'unique' | 'reference';
  /** For a constraint entry: the field, and the value and the document keeping it, or the missing target. */
  constraint?:
    | { field: string; value: JsonValue; winner: string }
    | { field: string; target: { collection: string; id: string } };
  /** The document as GET shows it: the winner, its version and the losing siblings. */
  value: JsonValue | null;
  version: string;
  conflicts: ConflictView[];
}

export interface FeedEntry {
  seq: number;
  collection: string;
  id: string;
  version: string;
  deleted: boolean;
  conflicts: number;
}

/** What one session sends in one frame: a range of the feed, grouped into atomic changes. */
export interface OutgoingBatch {
  fromSeq: number;
  toSeq: number;
  changes: Change[];
  /** The sender's causal context when the batch reaches its head, else null. */
  context: Uint8Array | null;
  /** Feed entries read to make this batch, including those skipped as held by the peer. */
  rowsRead: number;
}

export interface ApplyResult {
  /** Documents whose state changed here. */
  recorded: number;
  /** Dots the sender is now known to hold (for the session's view of the peer). */
  learned: CausalContext;
}

export interface ReplicaStatus {
  replica: string;
  seq: number;
  vector: ReturnType<CausalContext['toJSON']>;
  digest: string;
  docs: number;
  conflicts: number;
  /** Constraint entries `conflicts()` lists: unique values or references broken after replication. */
  violations: number;
}

interface PreparedWrite {
  collection: string;
  id: string;
  /** For records: the new value's JSON text, null to delete. */
  value: Uint8Array | null;
  basis: WriteBasis | undefined;
  ifAbsent: boolean;
  config: CollectionConfig;
  /** For other kinds: what to do (a PUT becomes a patch once the current state is read). */
  change?: { put: JsonValue } | { patch: PreparedOp[] } | { delete: true };
}

interface IncomingDoc {
  collection: string;
  id: string;
  bytes: Uint8Array;
  state: RecordState;
}

const decodeText = (bytes: Uint8Array): JsonValue => JSON.parse(fromUtf8(bytes)) as JsonValue;

export class Replica {
  private meta: ReplicaMeta;
  private closed = false;
  /** Context learned outside a transaction, joined into the metadata by the next commit. */
  private pendingContext = new CausalContext();
  private readonly listeners = new Set<(e: ChangeEvent) => void>();
  private readonly limits: Limits;
  private readonly maxSkewMs: number;
  private readonly configs: CollectionConfigs;
  private readonly conflictListeners = new Set<(e: ChangeEvent) => void>();
  /** Merge write-backs and register reductions run one at a time, after the commits that call for them. */
  private background: Promise<void> = Promise.resolve();
  private mergeWrites = 0;
  /** Settings documents changed by the commit in progress, applied when it succeeds. */
  private configChanges: { collection: string; state: RecordState }[] = [];
  private readonly texts: TextDocuments;
  private seqIndex = new SeqIndex();
  /**
   * Decoded states of the text documents written or read last, by key, with the bytes they
   * decode from: a text document's row holds a snapshot and many deltas, and each keystroke's
   * commit (and each live batch a peer is sent) would otherwise decode and check it whole.
   */
  private readonly textStates = new Map<string, { bytes: Uint8Array; state: RecordState }>();
  /** Features told of every commit (constraints, triggers, sequences): see commit-hooks.ts. */
  private readonly hooks: CommitHook[] = [];
  /** The documents the commit in progress recorded, for the hooks. */
  private recorded: RecordedChange[] = [];
  /** The last (ms, counter) newId used: in memory only, the incarnation makes it safe (see newId). */
  private idClock: Hlc = { ms: 0, c: 0 };
  private incarnation = 0;
  /** Sequences (sequences.ts): blocks of numbers granted by an allocator, told of commits by a hook. */
  private readonly sequences: Sequences;
  /** Unique fields and references (constraints.ts): local refusals and the violations replication brings. */
  private readonly constraints: Constraints;
  /** Durable triggers (triggers.ts): declarations, their outboxes (written by a commit hook) and delivery. */
  private readonly triggers: Triggers;

  private constructor(
    private readonly storage: Storage,
    private readonly env: Env,
    meta: ReplicaMeta,
    options: ReplicaOptions,
  ) {
    this.meta = meta;
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.maxSkewMs = options.maxSkewMs ?? DEFAULT_MAX_SKEW_MS;
    this.configs = new CollectionConfigs(options.collections ?? {}, options.mergeFunctions ?? {}, env.logger);
    this.texts = new TextDocuments(
      {
        id: meta.id,
        env,
        readState: (key) => this.getState(key.collection, key.id),
        writeText: (key, build) => this.writeText(key, build),
      },
      options.textCompaction,
    );
    // Before the triggers: a refused write should not make them do work first.
    this.constraints = new Constraints({
      constrained: () => this.configs.constrained(),
      config: (collection) => this.configs.get(collection),
      valueOf: (collection, id, state) => {
        const value = this.valueOf(collection, id, state);
        return value === undefined ? undefined : { value };
      },
      read: (fn) => this.storage.read(fn),
      schedule: (job) => this.afterCommit(job),
    });
    this.addCommitHook(this.constraints);
    this.triggers = new Triggers({
      storage,
      env,
      replicaId: meta.id,
      view: (collection, id, state) => this.valueOf(collection, id, state) ?? null,
    });
    this.addCommitHook(this.triggers.hook);
    this.sequences = new Sequences({
      id: meta.id,
      env,
      isClosed: () => this.closed,
      listDocs: () => this.listSystemDocs(SEQUENCES_COLLECTION),
      put: async (docs) => {
        await this.write(
          docs.map((d) => ({ type: 'put', collection: SEQUENCES_COLLECTION, id: d.id, value: d.value })),
          true,
        );
      },
      readLocal: (key) => this.storage.read((tx) => tx.getMeta(key)),
      updateLocal: async (key, update) => {
        this.checkOpen();
        await this.storage.write(async (tx) => tx.putMeta(key, update(await tx.getMeta(key))));
      },
      afterCommit: (job) => this.afterCommit(job),
    });
    this.addCommitHook(this.sequences);
  }

  static async open(options: ReplicaOptions): Promise<Replica> {
    const { storage, env } = options;
    if (options.id !== undefined) checkReplicaId(options.id);
    for (const name of Object.keys(options.collections ?? {})) checkCollection(name);
    // Validates the defaults before the store is touched.
    new CollectionConfigs(options.collections ?? {}, options.mergeFunctions ?? {});
    let incarnation = 0;
    const meta = await storage.write(async (tx) => {
      // Raised at every open, in the transaction open runs anyway: see newId.
      const inc = await tx.getMeta(INCARNATION_KEY);
      incarnation = (inc === undefined ? 0 : new Decoder(inc).uint()) + 1;
      tx.putMeta(INCARNATION_KEY, new Encoder(8).uint(incarnation).finish());
      const bytes = await tx.getMeta(META_KEY);
      if (bytes !== undefined) {
        const m = ReplicaMeta.decode(bytes);
        if (options.id !== undefined && options.id !== m.id) {
          throw new DbError(
            ErrorCode.invalidInput,
            `this store belongs to replica ${m.id}, not ${options.id}: one store, one replica id`,
          );
        }
        return m;
      }
      const id = options.id ?? `r-${toHex(env.random.bytes(6))}`;
      const m = ReplicaMeta.fresh(id);
      tx.putMeta(META_KEY, m.encode());
      return m;
    });
    // The persisted high-water mark keeps our HLC monotonic across restarts, even when the
    // wall clock went backwards meanwhile.
    const replica = new Replica(storage, env, meta, options);
    replica.incarnation = incarnation;
    replica.seqIndex = SeqIndex.decode(await storage.read((tx) => tx.getMeta(SEQ_INDEX_KEY)));
    await replica.loadConfigs();
    await replica.constraints.ensureBuilt();
    await replica.triggers.load();
    await replica.sequences.load();
    return replica;
  }

  private async loadConfigs(): Promise<void> {
    for (const doc of await this.listSystemDocs(CONFIG_COLLECTION)) this.configs.update(doc.id, doc.state);
  }

  get id(): string {
    return this.meta.id;
  }

  /** Every document of a system collection, for the features that keep their state there. */
  private async listSystemDocs(collection: string): Promise<{ id: string; state: RecordState }[]> {
    const out: { id: string; state: RecordState }[] = [];
    let after: string | undefined;
    for (;;) {
      const rows = await this.storage.read((tx) => tx.listDocs(collection, after, 500));
      for (const row of rows) out.push({ id: row.id, state: unwrapStored(row.state).state });
      if (rows.length < 500) return out;
      after = rows[rows.length - 1]?.id;
    }
  }

  // ---------------------------------------------------------------- ids and sequences

  /**
   * A new document id, unique in the cluster and sortable by time, made without asking
   * anyone: the time and a per-millisecond counter (from max(last id, this replica's HLC) and
   * the wall clock, so never twice the same in one process, and later ids sort after earlier
   * ones), this replica's id, and its incarnation (how many times its store has been opened).
   * No id is persisted: after a crash, a clock that went backwards could make this replica
   * reach a (time, counter) it used before the crash, and only the incarnation, raised at
   * every open, keeps that id different. See src/core/time-id.ts for the format.
   */
  newId(): string {
    this.checkOpen();
    const now = Math.floor(this.env.clock.nowMs());
    const base = compareHlc(this.idClock, this.meta.hlc) >= 0 ? this.idClock : this.meta.hlc;
    let next: Hlc = now > base.ms ? { ms: now, c: 0 } : { ms: base.ms, c: base.c + 1 };
    // A full millisecond: borrow the next one (the HLC does the same when the clock stalls).
    if (next.c > TIME_ID_COUNTER_MAX) next = { ms: next.ms + 1, c: 0 };
    this.idClock = next;
    return encodeTimeId({ ms: next.ms, counter: next.c, replica: this.meta.id, incarnation: this.incarnation });
  }

  /**
   * Sets up (or changes) sequence `name` at every replica: `allocator` is the replica that
   * grants blocks of `blockSize` numbers (default 100) from `start` (default 1). Changing the
   * allocator hands over, at the current allocator only (its last grants travel with the
   * change), or forced elsewhere with a `start` above what it granted (see sequences.ts).
   */
  async configureSequence(name: string, options: SequenceOptions): Promise<SequenceConfig> {
    this.checkOpen();
    return this.sequences.configure(name, options);
  }

  /**
   * The next number of sequence `name` at this leader: never one any leader handed out
   * before, even across partitions and crashes; numbers may be skipped. Served from the blocks
   * granted to this leader; when they are used up it asks the allocator and waits up to
   * `waitMs` (default 2000) for a grant, then fails with `sequence_exhausted` (no number was
   * used: retry later). An unknown sequence is `not_found`.
   */
  async nextval(name: string, options: { waitMs?: number } = {}): Promise<number> {
    this.checkOpen();
    const waitMs = options.waitMs ?? DEFAULT_WAIT_MS;
    if (!Number.isSafeInteger(waitMs) || waitMs < 0) {
      throw new DbError(ErrorCode.invalidInput, 'waitMs must be an integer >= 0');
    }
    return this.sequences.next(name, waitMs);
  }

  /** What this leader holds of sequence `name`: its settings, blocks, remaining numbers, requests and grants. */
  async sequenceStatus(name: string): Promise<SequenceStatus> {
    this.checkOpen();
    return this.sequences.status(name);
  }

  /** The committed feed head. */
  get seq(): number {
    return this.meta.seq;
  }

  /**
   * How many siblings a document shows as conflicts, exactly as its view does: none where
   * last-writer-wins or a merge function (that did not fail) resolves them, and one per
   * distinct value otherwise.
   */
  private conflictCount(collection: string, id: string, state: RecordState): number {
    if (state.siblings.length <= 1 || isSystemCollection(collection) || isTextState(state)) return 0;
    if (state.siblings.every(isRootRegister)) {
      const win = winner(state);
      if (win === undefined || this.configs.get(collection).policy === Policy.lww) return 0;
      const losers = distinctLosers(state.siblings, win).length;
      if (losers === 0) return 0;
      const merge = this.configs.mergeAt(collection, id, '');
      const live = state.siblings.filter((s) => s.value !== null);
      if (
        merge !== undefined &&
        live.length > 0 &&
        merge(live.map((s) => decodeText(s.value as Uint8Array))) !== undefined
      ) {
        return 0;
      }
      return losers;
    }
    const v = materialize(state, (path) => this.configs.mergeAt(collection, id, path), this.policyOf(collection));
    return v.conflicts.reduce((n, c) => n + c.siblings.length, 0);
  }

  /** The policy of `collection`'s registers (per path, for a map with per-field policies). */
  policyOf(collection: string): ReturnType<CollectionConfigs['policyAt']> {
    return this.configs.policyAt(collection);
  }

  // ---------------------------------------------------------------- collection settings

  /** The settings `collection` is using now: replicated ones, else local defaults, else record/keep. */
  collectionConfig(collection: string): CollectionConfig & { replicated: boolean } {
    checkCollection(collection);
    return { ...this.configs.get(collection), replicated: this.configs.isReplicated(collection) };
  }

  /**
   * Changes `collection`'s settings at every replica: they are written here and replicate
   * like data (last writer wins when two leaders change them concurrently).
   */
  async configure(collection: string, settings: unknown): Promise<CollectionConfig> {
    this.checkOpen();
    checkCollection(collection);
    const config = checkCollectionConfig(settings, this.limits.valueDepthMax);
    await this.write([{ type: 'put', collection: CONFIG_COLLECTION, id: collection, value: config }], true);
    return config;
  }

  /**
   * Registers a merge function under the name collection settings use for it. Documents of
   * collections naming it are recounted (their conflicts now merge) in the background.
   */
  registerMerge(name: string, fn: MergeFunction): void {
    this.configs.register(name, fn);
    for (const collection of this.configs.collectionsNaming(name)) this.afterCommit(() => this.reconcile(collection));
  }

  /** Merge function names that settings use but this replica has not registered. */
  missingMerges(): string[] {
    return this.configs.missingMerges();
  }

  /** How many merge resolutions this replica has written back since it opened. */
  get mergeWriteBacks(): number {
    return this.mergeWrites;
  }

  // ---------------------------------------------------------------- local writes

  async put(
    collection: string,
    id: string,
    value: unknown,
    options: { version?: string; ifAbsent?: boolean } = {},
  ): Promise<WriteResult> {
    const op: WriteOp = { type: 'put', collection, id, value };
    if (options.version !== undefined) op.version = options.version;
    if (options.ifAbsent === true) op.ifAbsent = true;
    return (await this.write([op]))[0] as WriteResult;
  }

  async delete(collection: string, id: string, options: { version?: string } = {}): Promise<WriteResult> {
    const op: WriteOp = { type: 'delete', collection, id };
    if (options.version !== undefined) op.version = options.version;
    return (await this.write([op]))[0] as WriteResult;
  }

  /** Applies operations to a map, counter or set document, all or none. */
  async patch(
    collection: string,
    id: string,
    ops: PatchOp[],
    options: { version?: string } = {},
  ): Promise<WriteResult> {
    const op: WriteOp = { type: 'patch', collection, id, ops };
    if (options.version !== undefined) op.version = options.version;
    return (await this.write([op]))[0] as WriteResult;
  }

  /**
   * Writes several documents atomically: all commit together, or, when any op is invalid or
   * conflicts, none does. Readers here and at every other replica never see part of it.
   */
  async write(ops: readonly WriteOp[], system = false): Promise<WriteResult[]> {
    this.checkOpen();
    if (!Array.isArray(ops) || ops.length === 0) {
      throw new DbError(ErrorCode.invalidInput, 'a batch needs at least one operation');
    }
    if (ops.length > this.limits.batchDocsMax) {
      throw new DbError(ErrorCode.tooLarge, `a batch holds at most ${this.limits.batchDocsMax} documents`);
    }
    const prepared = ops.map((op) => this.prepare(op, system));
    const bytes = prepared.reduce((n, p) => n + (p.value?.length ?? 0), 0);
    if (bytes > this.limits.batchBytesMax) {
      throw new DbError(
        ErrorCode.tooLarge,
        `a batch holds at most ${this.limits.batchBytesMax} bytes of values; this one has ${bytes}`,
      );
    }
    const seen = new Set<string>();
    for (const p of prepared) {
      const k = `${p.collection}\u0000${p.id}`;
      if (seen.has(k)) throw new DbError(ErrorCode.invalidInput, `${p.collection}/${p.id} appears twice in one batch`);
      seen.add(k);
    }
    return this.commit(async (tx, next, events) => {
      const rows = await tx.getDocs(prepared);
      const seq = next.seq + 1;
      const flags = prepared.length > 1 ? FLAG_IN_GROUP : 0;
      const results: WriteResult[] = [];
      for (let i = 0; i < prepared.length; i++) {
        const p = prepared[i] as PreparedWrite;
        const row = rows[i];
        const old = row === undefined ? undefined : unwrapStored(row.state);
        const state = old?.state ?? EMPTY_RECORD;
        if (isTextState(state)) {
          throw new DbError(
            ErrorCode.conflict,
            `${p.collection}/${p.id} is a text document: edit it with replica.text(), not ${p.change === undefined && p.value !== null ? 'put' : 'this write'}`,
          );
        }
        const basis = this.checkBasis(p, state, next);
        const now = this.env.clock.nowMs();
        // Stamp the write after everything its version saw, even what this leader has not received.
        if (basis.hlc !== undefined) next.hlc = observe(next.hlc, basis.hlc, now, this.maxSkewMs);
        let written: RecordState;
        if (p.change === undefined) {
          const dot: Dot = { replica: next.id, counter: ++next.counter };
          next.hlc = tick(next.hlc, now);
          written = writeRecord(state, { dot, hlc: next.hlc, value: p.value, basis }, this.policyOf(p.collection));
          next.context.add(dot);
        } else {
          written = this.applyChange(p, state, next, now);
          this.checkDocumentSize(p, written);
        }
        const conflict = this.record(tx, next, p, row, old, written, seq, flags);
        this.noteRecorded(p, seq, 'local', old?.state, written);
        if (this.listeners.size > 0 || this.conflictListeners.size > 0) {
          events.push({ collection: p.collection, id: p.id, seq, origin: 'local', conflict });
        }
        // The version a GET of this state shows (a remove leaves no entry with its timestamp).
        const hlc = p.change === undefined ? next.hlc : latestHlc(written);
        results.push(writeResult(p.collection, p.id, written.context, hlc));
      }
      next.seq = seq;
      return results;
    });
  }

  private prepare(op: WriteOp, system: boolean): PreparedWrite {
    if (op === null || typeof op !== 'object')
      throw new DbError(ErrorCode.invalidInput, 'an operation must be an object');
    if (op.type !== 'put' && op.type !== 'delete' && op.type !== 'patch') {
      throw new DbError(
        ErrorCode.invalidInput,
        `unknown operation type ${JSON.stringify((op as { type?: unknown }).type)}`,
      );
    }
    const collection = system && isSystemCollection(op.collection) ? op.collection : checkCollection(op.collection);
    const id = system ? op.id : checkDocId(op.id);
    const config = this.configs.get(collection);
    const value = op.type === 'put' ? encodeJsonValue(op.value, this.limits) : null;
    const basis = op.version === undefined ? undefined : parseToken(collection, id, op.version);
    const ifAbsent = op.type === 'put' && op.ifAbsent === true;
    if (ifAbsent && basis !== undefined) {
      throw new DbError(ErrorCode.invalidInput, 'a create-only write cannot also carry a version');
    }
    const p: PreparedWrite = { collection, id, value, basis, ifAbsent, config };
    if (config.kind === Kind.record) {
      if (op.type === 'patch') preparePatch(op.ops, config.kind, this.limits); // throws the reason
      return p;
    }
    if (basis?.kind === 'dot') {
      throw new DbError(
        ErrorCode.badVersion,
        `a sibling's version applies to records only; ${collection} holds ${config.kind}s`,
      );
    }
    if (op.type === 'patch') p.change = { patch: preparePatch(op.ops, config.kind, this.limits) };
    else if (op.type === 'delete') p.change = { delete: true };
    else if (config.kind === Kind.map) p.change = { put: op.value as JsonValue };
    else {
      throw new DbError(
        ErrorCode.invalidInput,
        config.kind === Kind.counter
          ? `${collection} holds counters: change one with PATCH {"ops": [{"op": "increment", "path": "", "by": 1}]}`
          : `${collection} holds sets: change one with PATCH add-to-set and remove-from-set operations`,
      );
    }
    return p;
  }

  /** A map or set grows by operations: the whole document is held to the one-value limit too. */
  private checkDocumentSize(p: PreparedWrite, state: RecordState): void {
    let bytes = 0;
    for (const s of state.siblings) bytes += (s.value?.length ?? 0) + (s.path?.length ?? 0);
    if (bytes > this.limits.docBytesMax) {
      throw new DbError(
        ErrorCode.tooLarge,
        `${p.collection}/${p.id} would hold ${bytes} bytes of values; the limit is ${this.limits.docBytesMax}`,
        { details: { bytes, limit: this.limits.docBytesMax } },
      );
    }
  }

  /** A map, counter or set write: its operations, each with a fresh dot, on the current state. */
  private applyChange(p: PreparedWrite, state: RecordState, next: ReplicaMeta, now: number): RecordState {
    const change = p.change as NonNullable<PreparedWrite['change']>;
    const mint = (): { dot: Dot; hlc: Hlc } => {
      const dot: Dot = { replica: next.id, counter: ++next.counter };
      next.hlc = tick(next.hlc, now);
      next.context.add(dot);
      return { dot, hlc: next.hlc };
    };
    if ('delete' in change) {
      // No tombstone: edits made concurrently elsewhere survive the delete, as in a map CRDT.
      return { siblings: [], context: vvWith(state.context, mint().dot) };
    }
    const view = materialize(state, undefined, this.policyOf(p.collection));
    const ops = 'put' in change ? diffToOps(view, change.put, p.config) : change.patch;
    if (ops.length === 0) return { siblings: state.siblings, context: vvWith(state.context, mint().dot) };
    // A version read at another leader is a precondition only: what it saw and this leader
    // has not received is not superseded (taking its context in would let replicas that hold
    // every dot of this state skip it, and diverge: found by the simulator, seed 972729086).
    return applyPatch(state, view, ops, next.id, mint);
  }

  /** The write's basis, refusing (409) a version that does not cover the current siblings. */
  private checkBasis(p: PreparedWrite, state: RecordState, next: ReplicaMeta): WriteBasis {
    const { basis } = p;
    if (p.ifAbsent && !isDeletedState(state)) {
      throw new DbError(ErrorCode.preconditionFailed, `${p.collection}/${p.id} already exists`);
    }
    if (basis === undefined) {
      const deleting = p.change === undefined ? p.value === null : 'delete' in p.change;
      if (deleting && isDeletedState(state)) {
        throw new DbError(ErrorCode.notFound, `${p.collection}/${p.id} does not exist`);
      }
      return { kind: 'context', context: state.context };
    }
    if (basis.kind === 'dot') {
      if (!state.siblings.some((s) => compareDots(s.dot, basis.dot) === 0)) {
        throw new ConflictError(`${p.collection}/${p.id}: the version given is no longer current`, {
          collection: p.collection,
          id: p.id,
        });
      }
      return basis;
    }
    // A context naming writes of ours we never made is forged or from a wiped store.
    if ((basis.context.get(next.id) ?? 0) > next.counter) {
      throw new DbError(ErrorCode.badVersion, 'version token names writes this replica never made');
    }
    const unseen = state.siblings.filter((s) => !vvCovers(basis.context, s.dot));
    // A map, counter or set remove leaves no entry, only its dot: the version must have seen
    // every dot the document's context holds, or a stale version would undo the remove.
    const removedSince =
      p.config.kind !== Kind.record && [...state.context].some(([r, n]) => n > (basis.context.get(r) ?? 0));
    if (unseen.length > 0 || removedSince) {
      throw new ConflictError(
        `${p.collection}/${p.id} changed since the version given: read it again and retry with its new version`,
        { collection: p.collection, id: p.id },
      );
    }
    return basis;
  }

  /**
   * Writes one document's new state at `seq`, keeping digest, counts and links right.
   * Returns whether the document shows a conflict now.
   */
  private record(
    tx: WriteTx,
    next: ReplicaMeta,
    key: DocKey,
    row: DocRow | undefined,
    old: ReturnType<typeof unwrapStored> | undefined,
    state: RecordState,
    seq: number,
    flags: number,
    encoded?: Uint8Array,
  ): boolean {
    // System documents are in the digest (they replicate) but not in the user's counts.
    const counted = isSystemCollection(key.collection) ? 0 : 1;
    const conflict = counted === 1 && this.conflictCount(key.collection, key.id, state) > 0;
    // A row that left an atomic group keeps the mark: wherever it moves next, the group's
    // seq must still ship with it, so each move extends the chain of links.
    let carried = old === undefined ? flags : flags | (old.flags & FLAG_IN_GROUP);
    if (conflict) carried |= FLAG_CONFLICT;
    const { row: bytes, bytes: stateBytes } =
      encoded === undefined ? wrapStored(carried, state) : wrapEncoded(carried, encoded);
    if (row !== undefined && old !== undefined) {
      // A row leaving (a chain from) an atomic group: the old seq must now ship with this one.
      if ((old.flags & FLAG_IN_GROUP) !== 0 && row.seq !== seq) tx.putLink(row.seq, seq);
      xorDocHash(next.digest, key, old.bytes);
      next.docs -= isDeletedState(old.state) ? 0 : counted;
      next.conflicts -= (old.flags & FLAG_CONFLICT) !== 0 ? 1 : 0;
    }
    tx.putDoc({ collection: key.collection, id: key.id, seq, state: bytes });
    if (isTextState(state)) this.cacheText(key, stateBytes, state);
    xorDocHash(next.digest, key, stateBytes);
    next.docs += isDeletedState(state) ? 0 : counted;
    next.conflicts += conflict ? 1 : 0;
    if (key.collection === CONFIG_COLLECTION) this.configChanges.push({ collection: key.id, state });
    return conflict;
  }

  // ---------------------------------------------------------------- reads

  async get(collection: string, id: string): Promise<DocView | null> {
    this.checkOpen();
    checkCollection(collection);
    checkDocId(id);
    const involved = this.constraints.involves(collection);
    // The violations are read with the row, so both show the same commit.
    const [row, violations] = await this.storage.read(async (tx) => {
      if (involved) await this.constraints.ensureBuiltIn(tx);
      const got = (await tx.getDocs([{ collection, id }]))[0];
      return [got, involved ? this.constraints.violationsOf(collection, id) : []] as const;
    });
    if (row === undefined) return null;
    const v = this.view(collection, id, unwrapStored(row.state).state);
    if (v !== null && violations.length > 0) v.violations = violations;
    return v;
  }

  /** The replicated state of one document (for tests, tools and checkers). */
  async getState(collection: string, id: string): Promise<RecordState | undefined> {
    const row = await this.storage.read(async (tx) => (await tx.getDocs([{ collection, id }]))[0]);
    return row === undefined ? undefined : unwrapStored(row.state).state;
  }

  private view(collection: string, id: string, state: RecordState): DocView | null {
    if (isTextState(state)) return this.textView(collection, id, state);
    if (!state.siblings.every(isRootRegister)) return this.documentView(collection, id, state);
    const shown = this.recordValue(collection, id, state);
    if (shown === null) return null;
    const { win } = shown;
    const conflicts =
      shown.lww || shown.merged
        ? []
        : distinctLosers(state.siblings, win).map((s) => this.conflictView(collection, id, s));
    return {
      id,
      value: shown.value,
      version: contextToken(collection, id, state.context, latestHlc(state)),
      origin: win.dot.replica,
      time: hlcToIso(win.hlc),
      conflicts,
    };
  }

  /**
   * The value a view of this state shows, without the version, time and conflicts a view also
   * renders: what constraints and triggers judge, on every commit. Undefined when deleted.
   */
  private valueOf(collection: string, id: string, state: RecordState): JsonValue | undefined {
    if (isTextState(state) || !state.siblings.every(isRootRegister)) return this.view(collection, id, state)?.value;
    return this.recordValue(collection, id, state)?.value;
  }

  /** What a record (root registers only) shows: its winner's value, or what a merge function makes of its siblings. */
  private recordValue(
    collection: string,
    id: string,
    state: RecordState,
  ): { win: Sibling; value: JsonValue; lww: boolean; merged: boolean } | null {
    // Under lww the latest write shows, even before the siblings that lost are dropped.
    const lww = this.configs.get(collection).policy === Policy.lww;
    const win = lww ? latestWrite(state.siblings) : winner(state);
    if (win === undefined || win.value === null) return null;
    // Every live sibling is an input, equal values included (a merge may add them up).
    const merge = !lww && state.siblings.length > 1 ? this.configs.mergeAt(collection, id, '') : undefined;
    const merged =
      merge === undefined
        ? undefined
        : merge(state.siblings.filter((s) => s.value !== null).map((s) => decodeText(s.value as Uint8Array)));
    return { win, value: merged ?? decodeText(win.value), lww, merged: merged !== undefined };
  }

  /** A map, counter or set document (or a record whose collection changed kind). */
  private documentView(collection: string, id: string, state: RecordState, view?: DocumentView): DocView | null {
    const v =
      view ?? materialize(state, (path) => this.configs.mergeAt(collection, id, path), this.policyOf(collection));
    if (v.root === undefined) return null;
    let latest: Sibling | undefined;
    for (const s of state.siblings) if (latest === undefined || compareHlc(s.hlc, latest.hlc) > 0) latest = s;
    const conflicts: ConflictView[] = [];
    for (const c of v.conflicts) {
      for (const s of c.siblings) {
        const cv = this.conflictView(collection, id, s);
        if (c.path !== '') cv.path = c.path;
        conflicts.push(cv);
      }
    }
    return {
      id,
      value: toJson(v.root),
      version: contextToken(collection, id, state.context, latestHlc(state)),
      origin: latest?.dot.replica ?? this.id,
      time: hlcToIso(latest?.hlc ?? { ms: 0, c: 0 }),
      conflicts,
    };
  }

  /** Like unwrapStored, reusing the decoded state of a text document whose row is unchanged. */
  private unwrapText(key: DocKey, row: DocRow): ReturnType<typeof unwrapStored> {
    const bytes = row.state.subarray(1);
    const cached = this.textStates.get(`${key.collection}\u0000${key.id}`);
    if (cached !== undefined && bytesEqual(cached.bytes, bytes)) {
      return { flags: row.state[0] ?? 0, bytes, state: cached.state };
    }
    const stored = unwrapStored(row.state);
    if (isTextState(stored.state)) this.cacheText(key, bytes, stored.state);
    return stored;
  }

  private cacheText(key: DocKey, bytes: Uint8Array, state: RecordState): void {
    const k = `${key.collection}\u0000${key.id}`;
    this.textStates.delete(k);
    this.textStates.set(k, { bytes, state });
    // The most recently used few: open documents are edited and shipped again and again.
    if (this.textStates.size > 32) this.textStates.delete(this.textStates.keys().next().value as string);
  }

  /** A text document shows its text as a string; it never has conflicts. */
  private textView(collection: string, id: string, state: RecordState): DocView {
    let latest = state.siblings[0] as Sibling;
    for (const s of state.siblings) if (compareHlc(s.hlc, latest.hlc) > 0) latest = s;
    return {
      id,
      value: textOf(state, this.id),
      version: contextToken(collection, id, state.context, latestHlc(state)),
      origin: latest.dot.replica,
      time: hlcToIso(latest.hlc),
      conflicts: [],
    };
  }

  /**
   * A handle on the text document `collection/id` (created by its first edit). Edits apply at
   * once and are committed one change per event-loop turn; other replicas' edits arrive through
   * the feed like every change.
   */
  text(collection: string, id: string): TextHandle {
    this.checkOpen();
    checkCollection(collection);
    checkDocId(id);
    return this.texts.handle({ collection, id });
  }

  /** Commits every text edit made so far (changes read after this include them). */
  flushTexts(): Promise<void> {
    return this.texts.flushAll();
  }

  /** One local change of a text document, built by `build` from the stored state. */
  private async writeText(
    key: DocKey,
    build: (old: RecordState | undefined, dot: Dot, hlc: Hlc) => Sibling,
  ): Promise<void> {
    this.checkOpen();
    let written: RecordState | undefined;
    await this.commit(async (tx, next, events) => {
      const row = (await tx.getDocs([key]))[0];
      const old = row === undefined ? undefined : this.unwrapText(key, row);
      if (old !== undefined && !isTextState(old.state) && !isDeletedState(old.state)) {
        throw new DbError(ErrorCode.conflict, `${key.collection}/${key.id} holds a JSON document, not text`);
      }
      const dot: Dot = { replica: next.id, counter: ++next.counter };
      next.hlc = tick(next.hlc, this.env.clock.nowMs());
      next.context.add(dot);
      const entry = build(old?.state, dot, next.hlc);
      if ((entry.value?.length ?? 0) > this.limits.docBytesMax) {
        throw new DbError(
          ErrorCode.tooLarge,
          `${key.collection}/${key.id}: a change of ${entry.value?.length ?? 0} bytes exceeds the document limit of ${this.limits.docBytesMax}`,
        );
      }
      const base = old?.state ?? EMPTY_RECORD;
      const state = joinRecords(base, { siblings: [entry], context: vvWith(base.context, dot) });
      const seq = ++next.seq;
      this.record(tx, next, key, row, old, state, seq, 0);
      this.noteRecorded(key, seq, 'local', old?.state, state);
      events.push({ collection: key.collection, id: key.id, seq, origin: 'local', conflict: false });
      written = state;
    });
    if (written !== undefined) this.texts.stored(key, written);
  }

  private conflictView(collection: string, id: string, s: Sibling): ConflictView {
    return {
      value: s.value === null ? null : decodeText(s.value),
      deleted: s.value === null,
      version: dotToken(collection, id, s.dot, s.hlc),
      origin: s.dot.replica,
      time: hlcToIso(s.hlc),
    };
  }

  /** One page of a collection's live documents, ordered by id. */
  async list(
    collection: string,
    options: { after?: string; limit?: number } = {},
  ): Promise<{ results: DocView[]; next: string | null }> {
    this.checkOpen();
    checkCollection(collection);
    const limit = clampLimit(options.limit, 100, 1000);
    const results: DocView[] = [];
    let after = options.after;
    let next: string | null = null;
    for (;;) {
      const rows = await this.storage.read((tx) => tx.listDocs(collection, after, limit + 1));
      for (const row of rows) {
        if (results.length === limit) {
          next = results[results.length - 1]?.id ?? null;
          return { results, next };
        }
        const v = this.view(collection, row.id, unwrapStored(row.state).state);
        if (v !== null) results.push(v);
        after = row.id;
      }
      if (rows.length <= limit) return { results, next };
    }
  }

  /** The local feed after `since`, one entry per document at its latest change. */
  async changes(options: { since?: number; limit?: number } = {}): Promise<{ results: FeedEntry[]; last_seq: number }> {
    this.checkOpen();
    const since = options.since ?? 0;
    if (!Number.isSafeInteger(since) || since < 0)
      throw new DbError(ErrorCode.invalidInput, 'since must be a seq >= 0');
    const limit = clampLimit(options.limit, 1000, 10_000);
    const rows = await this.storage.read(async (tx) => {
      const page = await tx.feed(since, limit);
      const last = page[page.length - 1];
      if (page.length < limit || last === undefined) return page;
      // Never end a page inside an atomic change: paging by last_seq would skip its rest.
      const whole = page.filter((r) => r.seq !== last.seq);
      return whole.length > 0 ? whole : tx.feedRange(since, last.seq);
    });
    const results = rows.map((row) => {
      const { state } = unwrapStored(row.state);
      return {
        seq: row.seq,
        collection: row.collection,
        id: row.id,
        version: contextToken(row.collection, row.id, state.context, latestHlc(state)),
        deleted: isDeletedState(state),
        conflicts: this.conflictCount(row.collection, row.id, state),
      };
    });
    const last = rows[rows.length - 1];
    return { results, last_seq: last === undefined ? since : last.seq };
  }

  /**
   * One page of the documents in conflict, in feed order (optionally of one collection).
   * A page scans a bounded part of the feed, so it may hold fewer than `limit` results
   * while `next` is not null: follow `next` (an opaque cursor) until it is. A page never ends
   * inside an atomic change (its documents share one feed position), so it may hold a few more
   * than `limit` when one change brought several conflicts.
   */
  async conflicts(
    options: { collection?: string; after?: string; limit?: number } = {},
  ): Promise<{ results: ConflictEntry[]; next: string | null; last_seq: number }> {
    this.checkOpen();
    if (options.collection !== undefined) checkCollection(options.collection);
    const limit = clampLimit(options.limit, 100, 1000);
    let since = 0;
    if (options.after !== undefined) {
      since = Number(options.after);
      if (!/^(0|[1-9][0-9]{0,15})$/.test(options.after) || !Number.isSafeInteger(since)) {
        throw new DbError(ErrorCode.invalidInput, 'after must be the cursor a previous page returned as next');
      }
    }
    const results: ConflictEntry[] = [];
    // Nothing to find: skip the scan (the count is kept exact by every commit).
    await this.constraints.ensureBuilt();
    const violations = this.constraints.count() > 0;
    if (this.meta.conflicts === 0 && !violations) {
      return { results, next: null, last_seq: Math.max(since, this.meta.seq) };
    }
    const budget = 10_000;
    let scanned = 0;
    for (;;) {
      // Whole atomic changes only: rows of one seq share a cursor, so a page must not end
      // inside one (the next page, read after that seq, would skip the rest of it).
      const { rows, more, flags } = await this.storage.read(async (tx) => {
        const page = await tx.feed(since, 1000);
        const last = page[page.length - 1];
        const whole = page.filter((r) => r.seq !== last?.seq);
        const read =
          page.length < 1000 || last === undefined
            ? { rows: page, more: false }
            : { rows: whole.length > 0 ? whole : await tx.feedRange(since, last.seq), more: true };
        // Constraint flags are read with the rows, so both show the same commit.
        const flagsOf = (r: DocRow): ConstraintViolation[] => this.constraints.violationsOf(r.collection, r.id);
        return { ...read, flags: this.constraints.count() > 0 ? read.rows.map(flagsOf) : undefined };
      });
      // Once the page is full, the rest of the change it ends in still goes on it.
      let fullAt: number | undefined;
      for (const [i, row] of rows.entries()) {
        if (fullAt !== undefined && row.seq !== fullAt) break;
        since = row.seq;
        scanned++;
        if (options.collection !== undefined && row.collection !== options.collection) continue;
        if (isSystemCollection(row.collection)) continue;
        const { state } = unwrapStored(row.state);
        const siblings = this.conflictCount(row.collection, row.id, state) > 0;
        const flagged = flags?.[i] ?? [];
        if (!siblings && flagged.length === 0) continue;
        const v = this.view(row.collection, row.id, state);
        const entry = (kind: ConflictEntry['kind']): ConflictEntry => ({
          seq: row.seq,
          collection: row.collection,
          id: row.id,
          kind,
          value: v?.value ?? null,
          version: v?.version ?? contextToken(row.collection, row.id, state.context, latestHlc(state)),
          conflicts: v === null ? state.siblings.map((x) => this.conflictView(row.collection, row.id, x)) : v.conflicts,
        });
        if (siblings) results.push(entry('siblings'));
        for (const f of flagged) {
          const { kind, ...constraint } = f;
          results.push({ ...entry(kind), constraint });
        }
        if (results.length >= limit && fullAt === undefined) fullAt = row.seq;
      }
      if (fullAt !== undefined) return { results, next: String(fullAt), last_seq: fullAt };
      if (!more) return { results, next: null, last_seq: since };
      if (scanned >= budget) return { results, next: String(since), last_seq: since };
    }
  }

  // ---------------------------------------------------------------- replication

  /** A copy of the causal context: every dot this replica has accounted for. */
  context(): CausalContext {
    const cc = this.meta.context.clone();
    cc.join(this.pendingContext);
    return cc;
  }

  /**
   * The feed position after which every document holding a write that `vector` lacks lies
   * (see seq-index.ts): reading from there costs what the answer costs, not the whole feed.
   */
  feedStartFor(vector: ReadonlyMap<string, number>): number {
    return this.seqIndex.startFor(vector, this.context(), this.meta.seq);
  }

  /** A safe summary of what this replica has: per replica, the highest contiguous counter. */
  vector(): Record<string, number> {
    return Object.fromEntries(this.context().base());
  }

  /**
   * Reads the next batch of the feed after `afterSeq` for a peer whose context is
   * `peerContext`, skipping documents the peer already holds. A batch never splits an
   * atomic change: a group is read whole, and groups tied by a link ship as one change.
   */
  async readBatch(
    afterSeq: number,
    maxDocs: number,
    peerContext: CausalContext,
    maxBytes = 4 * 1024 * 1024,
  ): Promise<OutgoingBatch> {
    this.checkOpen();
    return this.storage.read(async (tx) => {
      const head = this.meta.seq;
      const contextBytes = encodeContext(this.meta.context);
      // Whole groups through the one holding the maxDocs-th document.
      const end = await tx.seqAfter(afterSeq, Math.min(maxDocs, Number.MAX_SAFE_INTEGER));
      if (end === 0) {
        return { fromSeq: afterSeq, toSeq: Math.max(afterSeq, head), changes: [], context: contextBytes, rowsRead: 0 };
      }
      let rows = trimToBytes(await tx.feedRange(afterSeq, end), maxBytes);
      let through = (rows[rows.length - 1] as DocRow).seq;
      let until = await tx.linkedThrough(afterSeq, through);
      const linked = until > 0;
      while (until > through) {
        rows = rows.concat(await tx.feedRange(through, until));
        through = until;
        until = await tx.linkedThrough(afterSeq, through);
      }
      const changes: Change[] = [];
      // The peer holds a document when it has seen every sibling and the context's latest
      // writes (see ADR 1). A peer that holds nothing (a fresh replica) needs every row.
      const peerEmpty = peerContext.replicas().length === 0;
      const peerHas = (replica: string, counter: number): boolean => peerContext.has({ replica, counter });
      // An atomic change ships whole or not at all: when the peer lacks any of its documents,
      // it gets all of them, so that it records the change as one group with its own versions
      // of the documents it held (which may have superseded the change's, with a version read
      // elsewhere). Skipping those would leave the peer's group without them, and a replica
      // downstream of the peer could see the change half applied (simulator seed 1875484184).
      let current: DocChange[] = [];
      let lacking = false;
      let currentSeq = -1;
      const flush = (): void => {
        // Copies: a state must not pin the storage page it was read from.
        if (current.length > 0 && lacking)
          changes.push({ docs: current.map((d) => ({ ...d, state: d.state.slice() })) });
        current = [];
        lacking = false;
      };
      for (const row of rows) {
        if (!linked && row.seq !== currentSeq) {
          flush();
          currentSeq = row.seq;
        }
        let stored = row.state.subarray(1);
        if (peerEmpty || !everyDotIn(stored, peerHas)) {
          lacking = true;
          // A text document ships only the changes the peer lacks (ADR 4).
          if (!peerEmpty && isTextBytes(stored)) {
            const part = textPartFor(this.unwrapText(row, row).state, (d) => peerContext.has(d));
            if (part !== undefined) stored = encodeRecord(part);
          }
        }
        current.push({ collection: row.collection, id: row.id, state: stored });
      }
      flush();
      return {
        fromSeq: afterSeq,
        toSeq: through,
        changes,
        context: through >= head ? contextBytes : null,
        rowsRead: rows.length,
      };
    });
  }

  /**
   * Joins changes received from a peer. All of them apply in one transaction with the
   * checkpoint (when `peer` is given), or, when any is invalid, none does.
   */
  async applyRemote(
    changes: readonly Change[],
    options: {
      peer?: string;
      toSeq?: number;
      /** The sender's causal context, sent when the changes reach its head. */
      context?: Uint8Array | null;
      /**
       * What the sender assumed this replica holds when it skipped documents. The sender's
       * context is only joined when this replica holds at least that much; otherwise the
       * skipped documents may be missing here. A live session's basis is always met.
       */
      basis?: CausalContext;
      /**
       * Told each seq at which everything recorded is exactly what the sender sent: the
       * sender holds those changes, so a session need not read them back to offer them.
       * Called before the commit's change events.
       */
      echo?: (seq: number) => void;
    } = {},
  ): Promise<ApplyResult> {
    this.checkOpen();
    const incoming = changes.map((c) => this.validateChange(c));
    const senderContext =
      options.context === undefined || options.context === null ? undefined : decodeContext(options.context);
    // Refuse the whole batch, before touching storage, if a clock is too far ahead.
    const now = this.env.clock.nowMs();
    let hlc = this.meta.hlc;
    for (const change of incoming)
      for (const d of change)
        for (const s of d.state.siblings) {
          hlc = observe(hlc, s.hlc, now, this.maxSkewMs);
        }
    const learned = new CausalContext();
    const texts: { key: DocKey; state: RecordState }[] = [];
    const recorded = await this.commit(async (tx, next, events) => {
      let count = 0;
      texts.length = 0;
      next.hlc = observe(next.hlc, hlc, now, this.maxSkewMs);
      for (const change of incoming) {
        const rows = await tx.getDocs(change);
        const updates: {
          doc: IncomingDoc;
          row: DocRow | undefined;
          old: ReturnType<typeof unwrapStored> | undefined;
          state: RecordState;
          /** The state's canonical encoding when already at hand. */
          bytes: Uint8Array | undefined;
        }[] = [];
        const unchanged: { doc: IncomingDoc; row: DocRow; old: ReturnType<typeof unwrapStored> }[] = [];
        for (let i = 0; i < change.length; i++) {
          const doc = change[i] as IncomingDoc;
          const row = rows[i];
          for (const s of doc.state.siblings) {
            learned.add(s.dot);
            next.context.add(s.dot);
            if (s.dot.replica === next.id && s.dot.counter > next.counter) {
              // Our own writes we do not remember: the store was wiped and the id reused.
              this.env.logger.log('error', 'received writes of this replica that its store does not know', {
                replica: next.id,
                counter: s.dot.counter,
                known: next.counter,
              });
              next.counter = s.dot.counter;
            }
          }
          for (const [r, n] of doc.state.context) {
            learned.add({ replica: r, counter: n });
            next.context.add({ replica: r, counter: n });
          }
          if (row === undefined) {
            // New here: the join with nothing is the state itself (reduced, under lww).
            const policy = this.policyOf(doc.collection);
            const fresh = policy !== Policy.keep && policy !== Policy.merge && doc.state.siblings.length > 1;
            const state = fresh ? joinRecords(EMPTY_RECORD, doc.state, policy) : doc.state;
            updates.push({ doc, row, old: undefined, state, bytes: fresh ? undefined : doc.bytes });
            continue;
          }
          const old = this.unwrapText(doc, row);
          if (bytesEqual(old.bytes, doc.bytes)) {
            unchanged.push({ doc, row, old });
            continue;
          }
          const joined = joinRecords(old.state, doc.state, this.policyOf(doc.collection));
          const joinedBytes = encodeRecord(joined);
          if (bytesEqual(old.bytes, joinedBytes)) {
            unchanged.push({ doc, row, old });
            continue;
          }
          updates.push({ doc, row, old, state: joined, bytes: joinedBytes });
        }
        if (updates.length === 0) continue;
        // Part of an atomic change is new here and part is already held (maybe superseded by
        // a write made with a version read elsewhere). The held documents move to the new
        // seq too, unchanged, so the change stays whole in this feed for the next replica.
        const moved = updates.length;
        for (const u of unchanged) updates.push({ ...u, state: u.old.state, bytes: u.old.bytes });
        const seq = ++next.seq;
        const flags = updates.length > 1 ? FLAG_IN_GROUP : 0;
        for (const [i, u] of updates.entries()) {
          const conflict = this.record(tx, next, u.doc, u.row, u.old, u.state, seq, flags, u.bytes);
          if (i >= moved) continue;
          this.noteRecorded(u.doc, seq, 'remote', u.old?.state, u.state);
          if (isTextState(u.state)) texts.push({ key: u.doc, state: u.state });
          events.push({ collection: u.doc.collection, id: u.doc.id, seq, origin: 'remote', conflict });
          count++;
        }
        if (
          options.echo !== undefined &&
          updates.every((u) => u.bytes !== undefined && bytesEqual(u.bytes, u.doc.bytes))
        ) {
          options.echo(seq);
        }
      }
      if (senderContext !== undefined && (options.basis === undefined || next.context.covers(options.basis))) {
        next.context.join(senderContext);
      }
      if (options.peer !== undefined && options.toSeq !== undefined) tx.setCheckpoint(options.peer, options.toSeq);
      return count;
    });
    if (senderContext !== undefined && options.basis === undefined) learned.join(senderContext);
    for (const t of texts) this.texts.stored(t.key, t.state);
    return { recorded, learned };
  }

  private validateChange(change: Change): IncomingDoc[] {
    if (change === null || typeof change !== 'object' || !Array.isArray(change.docs) || change.docs.length === 0) {
      throw new DbError(ErrorCode.protocol, 'a change must hold at least one document');
    }
    const seen = new Set<string>();
    return change.docs.map((d) => {
      let collection: string;
      let id: string;
      try {
        collection = isSystemCollection(d.collection) ? d.collection : checkCollection(d.collection);
        id = collection === CONFIG_COLLECTION ? checkCollection(d.id) : checkDocId(d.id);
      } catch (cause) {
        throw new DbError(ErrorCode.protocol, `change names an invalid document: ${(cause as Error).message}`, {
          cause,
        });
      }
      const k = `${collection}\u0000${id}`;
      if (seen.has(k)) throw new DbError(ErrorCode.protocol, `change holds ${collection}/${id} twice`);
      seen.add(k);
      let state: RecordState;
      try {
        state = decodeRecord(d.state, { checkJson: true });
      } catch (cause) {
        throw new DbError(ErrorCode.protocol, `invalid state for ${collection}/${id}: ${(cause as Error).message}`, {
          cause,
        });
      }
      for (const s of state.siblings) {
        if (s.value !== null && s.value.length > this.limits.docBytesMax) {
          throw new DbError(ErrorCode.protocol, `${collection}/${id} is larger than this replica's document limit`);
        }
        if (isTextEntry(s)) {
          try {
            checkTextPayload(s);
          } catch (cause) {
            throw new DbError(
              ErrorCode.protocol,
              `invalid text change for ${collection}/${id}: ${(cause as Error).message}`,
              {
                cause,
              },
            );
          }
        }
      }
      return { collection, id, bytes: d.state, state };
    });
  }

  /**
   * Joins a sender's causal context received with an empty batch that reached its head (see
   * applyRemote's `context`), in memory: it is persisted with the next commit. Losing it in a
   * crash costs only some re-sending, since it only lets senders skip more.
   */
  noteSenderContext(bytes: Uint8Array): void {
    this.checkOpen();
    this.pendingContext.join(decodeContext(bytes));
  }

  /** The durable checkpoint of `peer`: how far into its feed we have applied. */
  async checkpoint(peer: string): Promise<number> {
    return this.storage.read((tx) => tx.getCheckpoint(peer));
  }

  async checkpoints(): Promise<{ peer: string; seq: number }[]> {
    return this.storage.read((tx) => tx.listCheckpoints());
  }

  // ---------------------------------------------------------------- status, events, lifecycle

  status(): ReplicaStatus {
    const m = this.meta;
    return {
      replica: m.id,
      seq: m.seq,
      vector: m.context.toJSON(),
      digest: toHex(m.digest),
      docs: m.docs,
      conflicts: m.conflicts,
      violations: this.violations,
    };
  }

  /** How many unique fields and references are broken: status().violations, without building a whole status. */
  get violations(): number {
    return this.constraints.count();
  }

  /**
   * Calls `listener` after each committed change that leaves a document in conflict, local
   * or remote, so an application can resolve conflicts as they arise (read the document,
   * then write the resolution with its version). Returns an unsubscribe function.
   */
  onConflict(listener: (e: ChangeEvent) => void): () => void {
    this.conflictListeners.add(listener);
    return () => this.conflictListeners.delete(listener);
  }

  /**
   * Calls `listener` after each commit that flags a document for a broken unique field or
   * reference, or clears its flags (`violations` empty), local or remote; including a document
   * flagged by another one's change, which no change event names. Returns an unsubscribe function.
   */
  onViolation(listener: (e: ViolationEvent) => void): () => void {
    return this.constraints.onViolation(listener);
  }

  /** Calls `listener` after each committed change, local or remote. Returns an unsubscribe function. */
  subscribe(listener: (e: ChangeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Runs `handler` for every change this replica records from the trigger's declaration on,
   * never skipping one across crashes and restarts (see triggers.ts). `where: 'origin'`
   * (default) runs once in the cluster, at the replica that accepted the write;
   * `'every-replica'` once at each replica, for each change it records. The first `on` naming
   * a trigger declares it durably (`ready`); events then accumulate even while no handler is
   * attached. Delivery is at least once, in order, one at a time: a handler that throws is
   * retried with backoff, and one that acted just before a crash sees the event again with the
   * same `key`, by which handlers whose effect must happen once dedupe.
   */
  on(event: 'change', handler: (e: TriggerEvent) => unknown, options?: TriggerOptions): Trigger {
    return this.triggers.on(event, handler, options);
  }

  /** Every declared trigger: attached here or not, events pending, failures, next retry. */
  triggerStatus(): TriggerStatus[] {
    return this.triggers.status();
  }

  /** Forgets trigger `name`: its declaration and the events it had not delivered. */
  dropTrigger(name: string): Promise<void> {
    return this.triggers.drop(name);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // No trigger handler runs from now on; commits still capture their events until the store closes.
    this.triggers.close();
    // Text edits made so far are committed, not lost with the process's memory.
    await this.texts.flushAll().catch(() => undefined);
    this.closed = true;
    this.sequences.closed();
    this.listeners.clear();
    this.conflictListeners.clear();
    await this.background;
    await this.storage.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private checkOpen(): void {
    if (this.closed) throw new DbError(ErrorCode.closed, `replica ${this.meta.id} is closed`);
  }

  /**
   * Runs `fn` in one write transaction on a copy of the metadata, persists the copy with the
   * change, and makes it current. If the commit fails, the old metadata stays current.
   */
  private async commit<T>(fn: (tx: WriteTx, next: ReplicaMeta, events: ChangeEvent[]) => Promise<T>): Promise<T> {
    const events: ChangeEvent[] = [];
    let prev: ReplicaMeta | undefined;
    let next: ReplicaMeta | undefined;
    let result: T;
    let recorded: RecordedChange[] = [];
    let hooked = false;
    this.configChanges = [];
    try {
      result = await this.storage.write(async (tx) => {
        prev = this.meta;
        next = prev.clone();
        const learned = this.pendingContext;
        this.pendingContext = new CausalContext();
        next.context.join(learned);
        this.recorded = recorded = [];
        const r = await fn(tx, next, events);
        if (recorded.length > 0 && this.hooks.length > 0) {
          hooked = true;
          for (const h of this.hooks) await h.beforeCommit?.(tx, recorded);
        }
        if (this.seqIndex.note(prev.context, prev.seq, next.context)) tx.putMeta(SEQ_INDEX_KEY, this.seqIndex.encode());
        tx.putMeta(META_KEY, next.encode());
        this.meta = next;
        return r;
      });
    } catch (e) {
      if (prev !== undefined && this.meta === next) this.meta = prev;
      this.configChanges = [];
      if (hooked) for (const h of this.hooks) h.aborted?.();
      throw e;
    }
    if (hooked) for (const h of this.hooks) h.committed?.(recorded);
    const changed = this.configChanges;
    this.configChanges = [];
    for (const c of changed)
      if (this.configs.update(c.collection, c.state)) this.afterCommit(() => this.reconcile(c.collection));
    for (const e of events) {
      for (const l of [...this.listeners]) l(e);
      if (e.conflict) for (const l of [...this.conflictListeners]) l(e);
      // Merged documents show no conflict, but the merge is written back all the same.
      if (e.origin === 'remote' && this.usesMerge(e.collection)) {
        this.afterCommit(() => this.resolveByMerge(e.collection, e.id));
      }
    }
    return result;
  }

  /** Tells the hooks of the commit in progress about one document it recorded. */
  private noteRecorded(
    key: DocKey,
    seq: number,
    origin: RecordedChange['origin'],
    before: RecordState | undefined,
    after: RecordState,
  ): void {
    if (this.hooks.length > 0)
      this.recorded.push({ collection: key.collection, id: key.id, seq, origin, before, after });
  }

  /**
   * Tells `hook` of every commit from now on (see commit-hooks.ts). For the features built
   * beside the replica and for tests; returns a function that removes it.
   */
  addCommitHook(hook: CommitHook): () => void {
    this.hooks.push(hook);
    return () => {
      const i = this.hooks.indexOf(hook);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  /** Runs `job` after the current commits, one job at a time; a failing job is logged, never thrown. */
  private afterCommit(job: () => Promise<void>): void {
    this.background = this.background.then(async () => {
      if (this.closed) return;
      try {
        await job();
      } catch (e) {
        if (this.closed) return;
        this.env.logger.log('warn', 'background resolution failed', { error: (e as Error).message });
      }
    });
  }

  /** Resolves when the background work queued so far (merge write-backs, reductions) is done. */
  async settled(): Promise<void> {
    let b: Promise<void>;
    do {
      b = this.background;
      await b;
    } while (b !== this.background);
  }

  /**
   * Writes a merge function's resolution back, so the siblings stop costing storage and
   * every reader. Only one replica writes it: the origin of the winning sibling, a choice
   * every replica holding the same siblings makes alike, so two leaders never write
   * competing resolutions of the same conflict (which would be a new conflict). Other
   * replicas show the merged value meanwhile; if that replica never comes back, the
   * conflict just stays merged on read.
   */
  private usesMerge(collection: string): boolean {
    const config = this.configs.get(collection);
    return config.policy === Policy.merge || Object.values(config.fields ?? {}).some((f) => f.policy === Policy.merge);
  }

  private async resolveByMerge(collection: string, id: string): Promise<void> {
    const state = await this.getState(collection, id);
    if (state === undefined || isTextState(state)) return;
    const version = contextToken(collection, id, state.context, latestHlc(state));
    if (state.siblings.every(isRootRegister)) {
      const merge = this.configs.mergeAt(collection, id, '');
      if (merge === undefined || state.siblings.length < 2 || resolverOf(state.siblings) !== this.id) return;
      const live = state.siblings.filter((s) => s.value !== null).map((s) => decodeText(s.value as Uint8Array));
      const merged = live.length === 0 ? undefined : merge(live);
      if (merged === undefined) return;
      await this.write([{ type: 'put', collection, id, value: merged, version }]);
      this.mergeWrites++;
      return;
    }
    const ops: PatchOp[] = [];
    const view = materialize(state, undefined, this.policyOf(collection));
    for (const c of view.conflicts) {
      const merge = this.configs.mergeAt(collection, id, c.path);
      if (merge === undefined || c.path === '') continue;
      // A value that met an object written concurrently is not the merge's to settle: setting
      // the path would delete the fields written below it.
      if (nodeAt(view.root, c.path)?.type === 'object') continue;
      const registers = state.siblings.filter((s) => s.type === undefined && (s.path ?? '') === c.path);
      if (resolverOf(registers) !== this.id) continue;
      const live = registers.filter((s) => s.value !== null).map((s) => decodeText(s.value as Uint8Array));
      const merged = live.length > 1 ? merge(live) : undefined;
      if (merged !== undefined) ops.push({ op: 'set', path: c.path, value: merged });
    }
    if (ops.length === 0) return;
    await this.write([{ type: 'patch', collection, id, ops, version }]);
    this.mergeWrites++;
  }

  /**
   * After a collection's policies changed: a record collection that became last-writer-wins
   * drops the siblings that lost, as a join under the new settings would (one replica doing
   * it is enough, as the drop replicates; more change nothing more); and every document's
   * conflict mark and count follow what its view now shows (a map field that became `lww`
   * no longer shows a conflict), in place, without a new feed entry.
   */
  private async reconcile(collection: string): Promise<void> {
    let after: string | undefined;
    for (;;) {
      if (this.closed) return;
      const rows = await this.storage.read((tx) => tx.listDocs(collection, after, 200));
      const merged: string[] = [];
      await this.commit(async (tx, next) => {
        const policy = this.policyOf(collection);
        let seq = 0;
        for (const listed of rows) {
          // Read again inside the transaction: a write may have come in between.
          const row = (await tx.getDocs([listed]))[0];
          if (row === undefined) continue;
          const old = unwrapStored(row.state);
          const reduced = old.state.siblings.length < 2 ? old.state : joinRecords(EMPTY_RECORD, old.state, policy);
          const bytes = reduced === old.state ? old.bytes : encodeRecord(reduced);
          if (!bytesEqual(bytes, old.bytes)) {
            // The reduction is written as a new write of the latest value, with a fresh dot:
            // a replica that still holds the losers (and every dot here) would otherwise never
            // be sent the reduced state, and stay different if the setting changes back.
            const latest = reduced.siblings[0] as Sibling;
            const dot: Dot = { replica: next.id, counter: ++next.counter };
            next.hlc = tick(next.hlc, this.env.clock.nowMs());
            next.context.add(dot);
            const written = writeRecord(
              old.state,
              { dot, hlc: next.hlc, value: latest.value, basis: { kind: 'context', context: old.state.context } },
              policy,
            );
            if (seq === 0) seq = ++next.seq;
            this.record(tx, next, row, row, old, written, seq, 0);
            this.noteRecorded(row, seq, 'local', old.state, written);
            continue;
          }
          const was = (old.flags & FLAG_CONFLICT) !== 0;
          const now = this.conflictCount(collection, row.id, old.state) > 0;
          if (was === now) continue;
          const { row: state } = wrapEncoded(now ? old.flags | FLAG_CONFLICT : old.flags & ~FLAG_CONFLICT, old.bytes);
          tx.putDoc({ collection: row.collection, id: row.id, seq: row.seq, state });
          next.conflicts += now ? 1 : -1;
          if (!now) merged.push(row.id);
        }
      });
      // Conflicts a merge function now settles are written back, as when they arrive.
      if (this.usesMerge(collection))
        for (const id of merged) this.afterCommit(() => this.resolveByMerge(collection, id));
      if (rows.length < 200) return;
      after = rows[rows.length - 1]?.id;
    }
  }
}

/** A write's result; its version token is rendered on first use, as bulk writers rarely read it. */
class LazyWriteResult implements WriteResult {
  private token: string | undefined;

  constructor(
    readonly collection: string,
    readonly id: string,
    private readonly context: RecordState['context'],
    private readonly hlc: Hlc,
  ) {}

  get version(): string {
    this.token ??= contextToken(this.collection, this.id, this.context, this.hlc);
    return this.token;
  }

  toJSON(): WriteResult {
    return { collection: this.collection, id: this.id, version: this.version };
  }
}

function writeResult(collection: string, id: string, context: RecordState['context'], hlc: Hlc): WriteResult {
  return new LazyWriteResult(collection, id, context, hlc);
}

/** The sibling last-writer-wins order puts last. */
function latestWrite(siblings: readonly Sibling[]): Sibling | undefined {
  let best: Sibling | undefined;
  for (const s of siblings) if (best === undefined || compareLww(s, best) > 0) best = s;
  return best;
}

/**
 * The one replica that writes a merge back: the least replica id among the siblings'
 * origins. Every replica holding the same siblings picks the same one, and it stays the
 * same as more siblings from other replicas arrive, unless one from a lesser id does, so
 * its resolutions replace each other instead of two leaders' resolutions meeting as a new
 * conflict (which happens only when leaders see disjoint sets of siblings).
 */
function resolverOf(siblings: readonly Sibling[]): string | undefined {
  let least: string | undefined;
  for (const s of siblings)
    if (s.value !== null && (least === undefined || s.dot.replica < least)) least = s.dot.replica;
  return least;
}

const digestScratch = new Encoder(4096);
const termScratch = new Uint8Array(16);

/** XORs one document's digest term, a hash of its key and replicated state, into `acc`. */
function xorDocHash(acc: Uint8Array, key: DocKey, stateBytes: Uint8Array): void {
  const buf = digestScratch.reset().string(key.collection).string(key.id).raw(stateBytes).view();
  hash128Into(buf, 0, termScratch, 0);
  for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] as number) ^ (termScratch[i] as number);
}

/** Keeps whole groups (rows of one seq) until about `maxBytes`; always at least one group. */
function trimToBytes(rows: DocRow[], maxBytes: number): DocRow[] {
  let bytes = 0;
  for (let i = 0; i < rows.length; i++) {
    bytes += (rows[i] as DocRow).state.length;
    const next = rows[i + 1];
    if (bytes > maxBytes && next !== undefined && next.seq !== (rows[i] as DocRow).seq) return rows.slice(0, i + 1);
  }
  return rows;
}

function clampLimit(limit: number | undefined, dflt: number, max: number): number {
  if (limit === undefined) return dflt;
  if (!Number.isSafeInteger(limit) || limit < 1)
    throw new DbError(ErrorCode.invalidInput, 'limit must be a positive integer');
  return Math.min(limit, max);
}

export function encodeContext(cc: CausalContext): Uint8Array {
  const enc = new Encoder(64);
  cc.encode(enc);
  return enc.finish();
}

export function decodeContext(bytes: Uint8Array): CausalContext {
  try {
    const dec = new Decoder(bytes);
    const cc = CausalContext.decode(dec);
    dec.end();
    return cc;
  } catch (cause) {
    throw new DbError(ErrorCode.protocol, 'invalid causal context', { cause });
  }
}

export type { Hlc };
