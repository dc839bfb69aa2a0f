/**
 * The Storage contract every adapter implements (memory, SQLite, later IndexedDB and
 * PostgreSQL). Adapters hold no policy: the replica decides what to write, the adapter only
 * makes it atomic and durable. The shared suite in contract.test-suite.ts checks every
 * adapter against this contract.
 *
 * Contract:
 * - write(fn) is one serializable transaction: every change fn makes commits together when
 *   fn's promise resolves, and none does if fn throws (the error is rethrown). The promise
 *   of write() resolves only after the commit is durable to the adapter's standard (SQLite:
 *   survives SIGKILL of the process).
 * - read(fn) sees one consistent committed state, never a write in progress.
 * - Transactions run one at a time, in call order. A tx object must not be used after its
 *   callback's promise settles.
 * - feed(after, limit) lists documents with seq > after in ascending (seq, collection, id)
 *   order; a document appears once, at its latest seq.
 * - listMeta(prefix, afterKey, limit) lists meta keys in ascending order by UTF-16 code
 *   units (JS `<`), the order every adapter's key range agrees on for keys of ASCII; features
 *   beside the replica (trigger outboxes) keep small ordered queues in meta this way.
 */

export interface DocKey {
  readonly collection: string;
  readonly id: string;
}

export interface DocRow extends DocKey {
  /** The local sequence number of the change that last changed this document. */
  readonly seq: number;
  /** The document's encoded replicated state (see core/record.ts). */
  readonly state: Uint8Array;
}

export interface ReadTx {
  getMeta(key: string): Promise<Uint8Array | undefined>;
  /**
   * Meta entries whose key starts with `prefix` and is > `afterKey` (all when undefined),
   * ascending by key, at most `limit`. Callers keep keys ASCII, where every adapter orders alike.
   */
  listMeta(prefix: string, afterKey: string | undefined, limit: number): Promise<{ key: string; value: Uint8Array }[]>;
  getDocs(keys: readonly DocKey[]): Promise<(DocRow | undefined)[]>;
  /** Documents with seq > afterSeq, ascending by (seq, collection, id), at most `limit`. */
  feed(afterSeq: number, limit: number): Promise<DocRow[]>;
  /**
   * The seq of the n-th document after `afterSeq` in feed order, or of the last one when
   * fewer follow; 0 when none does. Lets a reader size a batch of whole groups without
   * reading the documents twice.
   */
  seqAfter(afterSeq: number, n: number): Promise<number>;
  /** Documents with afterSeq < seq <= throughSeq, ascending by (seq, collection, id). */
  feedRange(afterSeq: number, throughSeq: number): Promise<DocRow[]>;
  /** The largest `until` among links with afterSeq < seq <= throughSeq, or 0. */
  linkedThrough(afterSeq: number, throughSeq: number): Promise<number>;
  /** Documents of one collection with id > afterId (all when undefined), ascending by id. */
  listDocs(collection: string, afterId: string | undefined, limit: number): Promise<DocRow[]>;
  /** The stored checkpoint for `peer`, or 0. */
  getCheckpoint(peer: string): Promise<number>;
  listCheckpoints(): Promise<{ peer: string; seq: number }[]>;
}

export interface WriteTx extends ReadTx {
  putMeta(key: string, value: Uint8Array): void;
  /** Removes a meta entry; a key that is absent is no error. */
  deleteMeta(key: string): void;
  /** Inserts or replaces the document row (its seq and state). */
  putDoc(row: DocRow): void;
  /** Records that the change at `seq` must ship with every change through `until` (keeps the max). */
  putLink(seq: number, until: number): void;
  setCheckpoint(peer: string, seq: number): void;
}

export interface Storage {
  /** A short name for logs and status: 'memory', 'sqlite:/path/to/file'. */
  readonly name: string;
  read<T>(fn: (tx: ReadTx) => Promise<T> | T): Promise<T>;
  write<T>(fn: (tx: WriteTx) => Promise<T> | T): Promise<T>;
  close(): Promise<void>;
}
