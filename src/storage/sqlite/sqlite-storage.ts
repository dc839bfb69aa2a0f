/**
 * The SQLite Storage adapter (better-sqlite3, WAL). One connection holds the file with an
 * exclusive lock for its whole life, so no second process can open the store and fork the
 * replica; every transaction, read or write, runs through one queue on that connection.
 */
import Database from 'better-sqlite3';
import { AssertionError, DbError, ErrorCode, assert } from '../../shared/index.js';
import type { DocKey, DocRow, ReadTx, Storage, WriteTx } from '../storage.js';
import { SerialQueue } from '../serial-queue.js';

/** Bump with a migration in `migrate` whenever the schema below changes. History: 1 = first. */
export const SQLITE_SCHEMA_VERSION = 1;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
  CREATE TABLE IF NOT EXISTS docs (
    collection TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, state BLOB NOT NULL,
    PRIMARY KEY (collection, id)
  ) WITHOUT ROWID;
  CREATE INDEX IF NOT EXISTS docs_by_seq ON docs (seq);
  CREATE TABLE IF NOT EXISTS links (seq INTEGER PRIMARY KEY, until INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS checkpoints (peer TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
`;

export interface SqliteStorageOptions {
  /**
   * 'normal' (default): a resolved write survives SIGKILL of the process but not always a
   * power loss. 'full': fsync on every commit, so it survives power loss too.
   */
  synchronous?: 'normal' | 'full';
}

interface DocRecord {
  collection: string;
  id: string;
  seq: number;
  state: Buffer;
}

/** Rows per bulk statement. */
const CHUNK = 64;

function prepareAll(db: Database.Database) {
  return {
    begin: db.prepare('BEGIN IMMEDIATE'),
    commit: db.prepare('COMMIT'),
    rollback: db.prepare('ROLLBACK'),
    getMeta: db.prepare<[string], Buffer>('SELECT value FROM meta WHERE key = ?').pluck(),
    putMeta: db.prepare<[string, Uint8Array]>(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value',
    ),
    deleteMeta: db.prepare<[string]>('DELETE FROM meta WHERE key = ?'),
    // Range scans of the primary key; the caller stops at the first key outside the prefix.
    listMetaFrom: db.prepare<[string, number], { key: string; value: Buffer }>(
      'SELECT key, value FROM meta WHERE key >= ? ORDER BY key LIMIT ?',
    ),
    listMetaAfter: db.prepare<[string, number], { key: string; value: Buffer }>(
      'SELECT key, value FROM meta WHERE key > ? ORDER BY key LIMIT ?',
    ),
    getDoc: db.prepare<[string, string], { seq: number; state: Buffer }>(
      'SELECT seq, state FROM docs WHERE collection = ? AND id = ?',
    ),
    putDoc: db.prepare<[string, string, number, Uint8Array]>(
      `INSERT INTO docs (collection, id, seq, state) VALUES (?, ?, ?, ?)
       ON CONFLICT(collection, id) DO UPDATE SET seq = excluded.seq, state = excluded.state`,
    ),
    // Bulk forms: one statement per CHUNK rows costs less than CHUNK statements.
    putDocs: db.prepare<unknown[]>(
      `INSERT INTO docs (collection, id, seq, state) VALUES ${Array(CHUNK).fill('(?, ?, ?, ?)').join(', ')}
       ON CONFLICT(collection, id) DO UPDATE SET seq = excluded.seq, state = excluded.state`,
    ),
    getDocsChunk: db
      .prepare<
        unknown[],
        [string, string, number, Buffer]
      >(`SELECT collection, id, seq, state FROM docs WHERE (collection, id) IN (VALUES ${Array(CHUNK).fill('(?, ?)').join(', ')})`)
      .raw(),
    // docs_by_seq carries the primary key, so these walk the index with no sort step.
    feed: db.prepare<[number, number], DocRecord>(
      'SELECT collection, id, seq, state FROM docs WHERE seq > ? ORDER BY seq, collection, id LIMIT ?',
    ),
    // Both walk only the docs_by_seq index: no document is read.
    seqAt: db
      .prepare<[number, number], number>('SELECT seq FROM docs WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?')
      .pluck(),
    maxSeqAfter: db.prepare<[number], number>('SELECT coalesce(max(seq), 0) FROM docs WHERE seq > ?').pluck(),
    feedRange: db.prepare<[number, number], DocRecord>(
      'SELECT collection, id, seq, state FROM docs WHERE seq > ? AND seq <= ? ORDER BY seq, collection, id',
    ),
    linkedThrough: db
      .prepare<[number, number], number>('SELECT coalesce(max(until), 0) FROM links WHERE seq > ? AND seq <= ?')
      .pluck(),
    putLink: db.prepare<[number, number]>(
      'INSERT INTO links (seq, until) VALUES (?, ?) ON CONFLICT(seq) DO UPDATE SET until = max(until, excluded.until)',
    ),
    listDocs: db.prepare<[string, number], DocRecord>(
      'SELECT collection, id, seq, state FROM docs WHERE collection = ? ORDER BY id LIMIT ?',
    ),
    listDocsAfter: db.prepare<[string, string, number], DocRecord>(
      'SELECT collection, id, seq, state FROM docs WHERE collection = ? AND id > ? ORDER BY id LIMIT ?',
    ),
    getCheckpoint: db.prepare<[string], number>('SELECT seq FROM checkpoints WHERE peer = ?').pluck(),
    setCheckpoint: db.prepare<[string, number]>(
      'INSERT INTO checkpoints (peer, seq) VALUES (?, ?) ON CONFLICT(peer) DO UPDATE SET seq = excluded.seq',
    ),
    listCheckpoints: db.prepare<[], { peer: string; seq: number }>('SELECT peer, seq FROM checkpoints ORDER BY peer'),
  };
}
type Statements = ReturnType<typeof prepareAll>;

/** A plain Uint8Array view of a Buffer (no copy), so results deep-equal plain byte arrays. */
function bytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function toRow(r: DocRecord): DocRow {
  return { collection: r.collection, id: r.id, seq: r.seq, state: bytes(r.state) };
}

function checkLimit(limit: number): void {
  assert(Number.isInteger(limit) && limit >= 0, `limit must be a non-negative integer, got ${limit}`);
}

/** One transaction's view of the connection; SQLite itself holds the uncommitted changes. */
class SqliteTx implements WriteTx {
  private live = true;
  /** putDoc arguments not yet written, four per row. */
  private readonly pending: unknown[] = [];

  constructor(
    private readonly s: Statements,
    private readonly writable: boolean,
  ) {}

  finish(): void {
    this.live = false;
  }

  private check(write: boolean): void {
    // A stale tx would run its statement outside any transaction, or inside the next one.
    if (!this.live) throw new AssertionError('a storage transaction was used after its callback settled');
    if (write) assert(this.writable, 'a read transaction cannot write');
  }

  async getMeta(key: string): Promise<Uint8Array | undefined> {
    this.check(false);
    const value = this.s.getMeta.get(key);
    return value === undefined ? undefined : bytes(value);
  }

  async listMeta(
    prefix: string,
    afterKey: string | undefined,
    limit: number,
  ): Promise<{ key: string; value: Uint8Array }[]> {
    this.check(false);
    checkLimit(limit);
    // Keys compare by UTF-8 bytes here, so the start is chosen in that order too; the keys
    // holding the prefix are one contiguous run from the prefix on.
    const rows =
      afterKey !== undefined && Buffer.compare(Buffer.from(afterKey), Buffer.from(prefix)) >= 0
        ? this.s.listMetaAfter.all(afterKey, limit)
        : this.s.listMetaFrom.all(prefix, limit);
    const out: { key: string; value: Uint8Array }[] = [];
    for (const r of rows) {
      if (!r.key.startsWith(prefix)) break;
      out.push({ key: r.key, value: bytes(r.value) });
    }
    return out;
  }

  async getDocs(keys: readonly DocKey[]): Promise<(DocRow | undefined)[]> {
    this.check(false);
    this.flush();
    const out: (DocRow | undefined)[] = new Array<DocRow | undefined>(keys.length);
    let i = 0;
    if (keys.length >= CHUNK) {
      // Bulk lookups, CHUNK keys per statement; results come back in any order.
      const at = new Map<string, number>();
      const args: unknown[] = [];
      for (; i + CHUNK <= keys.length; i += CHUNK) {
        at.clear();
        args.length = 0;
        for (let j = i; j < i + CHUNK; j++) {
          const k = keys[j] as DocKey;
          at.set(`${k.collection.length}:${k.collection}${k.id}`, j);
          args.push(k.collection, k.id);
        }
        for (const [collection, id, seq, state] of this.s.getDocsChunk.all(...args)) {
          const j = at.get(`${collection.length}:${collection}${id}`);
          if (j !== undefined) out[j] = { collection, id, seq, state: bytes(state) };
        }
      }
    }
    for (; i < keys.length; i++) {
      const { collection, id } = keys[i] as DocKey;
      const r = this.s.getDoc.get(collection, id);
      out[i] = r === undefined ? undefined : { collection, id, seq: r.seq, state: bytes(r.state) };
    }
    return out;
  }

  async feed(afterSeq: number, limit: number): Promise<DocRow[]> {
    this.check(false);
    this.flush();
    checkLimit(limit);
    return this.s.feed.all(afterSeq, limit).map(toRow);
  }

  async seqAfter(afterSeq: number, n: number): Promise<number> {
    this.check(false);
    this.flush();
    checkLimit(n);
    if (n === 0) return 0;
    return this.s.seqAt.get(afterSeq, n - 1) ?? this.s.maxSeqAfter.get(afterSeq) ?? 0;
  }

  async feedRange(afterSeq: number, throughSeq: number): Promise<DocRow[]> {
    this.check(false);
    this.flush();
    return this.s.feedRange.all(afterSeq, throughSeq).map(toRow);
  }

  async linkedThrough(afterSeq: number, throughSeq: number): Promise<number> {
    this.check(false);
    return this.s.linkedThrough.get(afterSeq, throughSeq) ?? 0;
  }

  async listDocs(collection: string, afterId: string | undefined, limit: number): Promise<DocRow[]> {
    this.check(false);
    this.flush();
    checkLimit(limit);
    // Ids compare by UTF-8 bytes (code points) here, which differs from JS `<` only between
    // astral characters and U+E000..U+FFFF; paging with afterId stays consistent either way.
    const rows =
      afterId === undefined
        ? this.s.listDocs.all(collection, limit)
        : this.s.listDocsAfter.all(collection, afterId, limit);
    return rows.map(toRow);
  }

  async getCheckpoint(peer: string): Promise<number> {
    this.check(false);
    return this.s.getCheckpoint.get(peer) ?? 0;
  }

  async listCheckpoints(): Promise<{ peer: string; seq: number }[]> {
    this.check(false);
    return this.s.listCheckpoints.all();
  }

  putMeta(key: string, value: Uint8Array): void {
    this.check(true);
    this.s.putMeta.run(key, value);
  }

  deleteMeta(key: string): void {
    this.check(true);
    this.s.deleteMeta.run(key);
  }

  putDoc(row: DocRow): void {
    this.check(true);
    assert(Number.isSafeInteger(row.seq), `document seq must be an integer, got ${row.seq}`);
    this.pending.push(row.collection, row.id, row.seq, row.state);
    if (this.pending.length === CHUNK * 4) {
      this.s.putDocs.run(...this.pending);
      this.pending.length = 0;
    }
  }

  /** Writes buffered rows; runs before every read and before commit, so reads see them. */
  flush(): void {
    const p = this.pending;
    for (let i = 0; i < p.length; i += 4) {
      this.s.putDoc.run(p[i] as string, p[i + 1] as string, p[i + 2] as number, p[i + 3] as Uint8Array);
    }
    p.length = 0;
  }

  putLink(seq: number, until: number): void {
    this.check(true);
    this.s.putLink.run(seq, until);
  }

  setCheckpoint(peer: string, seq: number): void {
    this.check(true);
    this.s.setCheckpoint.run(peer, seq);
  }
}

function sqliteCode(e: unknown): string | undefined {
  return e instanceof Database.SqliteError ? e.code : undefined;
}

/** Maps what SQLite throws while opening to an operating error a person can act on. */
function openError(e: unknown, path: string): unknown {
  if (e instanceof DbError) return e;
  const code = sqliteCode(e);
  if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') {
    return new DbError(
      ErrorCode.invalidInput,
      `the store ${path} is in use by another process (or another open in this one); ` +
        'only one replica may open a store at a time',
      { cause: e, details: { path } },
    );
  }
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
    return new DbError(ErrorCode.corrupt, `the store ${path} is not a valid polyarch SQLite database`, {
      cause: e,
      details: { path },
    });
  }
  // Anything else at open (a missing directory, no permission, a disk error) is still an
  // operating error with a clear message, never a bare TypeError.
  const message = e instanceof Error ? e.message : String(e);
  return new DbError(ErrorCode.invalidInput, `cannot open the store ${path}: ${message}`, {
    cause: e,
    details: { path },
  });
}

/** Creates or checks the schema, taking the exclusive lock (BEGIN IMMEDIATE) on the way. */
function migrate(db: Database.Database, path: string): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    const version = db.pragma('user_version', { simple: true });
    if (typeof version !== 'number' || version > SQLITE_SCHEMA_VERSION) {
      throw new DbError(
        ErrorCode.invalidInput,
        `the store ${path} has schema version ${String(version)}, newer than this polyarch ` +
          `supports (${SQLITE_SCHEMA_VERSION}); upgrade polyarch to open it`,
        { details: { path, version, supported: SQLITE_SCHEMA_VERSION } },
      );
    }
    if (version < SQLITE_SCHEMA_VERSION) {
      db.exec(SCHEMA);
      db.pragma(`user_version = ${SQLITE_SCHEMA_VERSION}`);
    }
    db.exec('COMMIT');
  } catch (e) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw e;
  }
}

export class SqliteStorage implements Storage {
  readonly name: string;
  readonly path: string;
  private readonly db: Database.Database;
  private readonly s: Statements;
  private readonly queue = new SerialQueue();
  private closing: Promise<void> | undefined;

  /** Opens (creating if needed) the store at `path`, or ':memory:'. Throws DbError if it is in use. */
  constructor(path: string, options: SqliteStorageOptions = {}) {
    this.path = path;
    this.name = `sqlite:${path}`;
    // timeout 0: a store held by another process must fail the open now, not after 5 s.
    let db: Database.Database;
    try {
      db = new Database(path, { timeout: 0 });
    } catch (e) {
      throw openError(e, path);
    }
    try {
      // Exclusive before WAL: the WAL index then lives in heap memory (no -shm file) and
      // the lock taken by migrate()'s BEGIN IMMEDIATE is held until close().
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      migrate(db, path);
      this.s = prepareAll(db);
    } catch (e) {
      db.close();
      throw openError(e, path);
    }
    this.db = db;
  }

  read<T>(fn: (tx: ReadTx) => Promise<T> | T): Promise<T> {
    // No BEGIN: the queue already keeps writes out, and this connection alone holds the file.
    return this.enqueue(async () => {
      const tx = new SqliteTx(this.s, false);
      try {
        return await fn(tx);
      } finally {
        tx.finish();
      }
    });
  }

  write<T>(fn: (tx: WriteTx) => Promise<T> | T): Promise<T> {
    // db.transaction() cannot span awaits, hence explicit BEGIN/COMMIT under the queue.
    return this.enqueue(async () => {
      const tx = new SqliteTx(this.s, true);
      this.s.begin.run();
      try {
        const result = await fn(tx);
        tx.flush();
        tx.finish();
        this.s.commit.run();
        return result;
      } catch (e) {
        tx.finish();
        // SQLite may already have rolled back by itself (e.g. SQLITE_FULL).
        if (this.db.inTransaction) this.s.rollback.run();
        throw e;
      }
    });
  }

  close(): Promise<void> {
    this.closing ??= this.queue.drained().then(() => {
      this.db.close();
    });
    return this.closing;
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    if (this.closing !== undefined) {
      return Promise.reject(new DbError(ErrorCode.closed, `storage ${this.name} is closed`));
    }
    return this.queue.run(task);
  }
}

export function openSqliteStorage(path: string, options: SqliteStorageOptions = {}): Storage {
  return new SqliteStorage(path, options);
}
