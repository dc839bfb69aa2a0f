/**
 * The in-memory Storage adapter, for tests, the simulator and browsers without persistence.
 * Invariant: committed state changes only when a write callback resolves, all at once, and
 * a per-seq index keeps feed() proportional to the rows it returns. Pure TypeScript: no Node
 * built-ins, because this file ships to browsers.
 */
import { AssertionError, DbError, ErrorCode, assert } from '../../shared/index.js';
import type { DocKey, DocRow, ReadTx, Storage, WriteTx } from '../storage.js';
import { SerialQueue } from '../serial-queue.js';
import { overlayMetaRange, stagedInRange } from '../meta-range.js';
import type { MetaEntry } from '../meta-range.js';

/** A map key for (collection, id) that no two distinct pairs share, whatever their characters. */
function docKeyString(collection: string, id: string): string {
  return `${collection.length}:${collection}${id}`;
}

function compareFeed(a: DocRow, b: DocRow): number {
  if (a.seq !== b.seq) return a.seq - b.seq;
  if (a.collection !== b.collection) return a.collection < b.collection ? -1 : 1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return 0;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Index of the first element of ascending `xs` that is > `x` (in `compare`'s order). */
function upperBound<T>(xs: readonly T[], x: T, compare: (a: T, b: T) => number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compare(xs[mid] as T, x) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const compareNumbers = (a: number, b: number): number => a - b;

/** Inserts `x` into ascending `xs` unless present; cheap when `x` is the largest, the usual case. */
function insertSorted(xs: number[], x: number): void {
  const last = xs[xs.length - 1];
  if (last === undefined || x > last) {
    xs.push(x);
    return;
  }
  const at = upperBound(xs, x, compareNumbers);
  if (xs[at - 1] !== x) xs.splice(at, 0, x);
}

/**
 * Rows by seq, for feed(). Removing a row leaves its seq in `seqs` as a dead entry (an empty
 * group) rather than splicing the array, since replaced rows usually sit near the front;
 * dead entries are compacted away once they outnumber the live ones.
 */
class SeqIndex {
  private readonly groups = new Map<number, Map<string, DocRow>>();
  private seqs: number[] = [];
  private dead = 0;

  add(key: string, row: DocRow): void {
    let group = this.groups.get(row.seq);
    if (group === undefined) {
      group = new Map();
      this.groups.set(row.seq, group);
      insertSorted(this.seqs, row.seq);
    } else if (group.size === 0) {
      this.dead--;
    }
    group.set(key, row);
  }

  remove(key: string, row: DocRow): void {
    const group = this.groups.get(row.seq);
    assert(group !== undefined && group.delete(key), 'seq index out of step with documents');
    if (group.size > 0) return;
    this.dead++;
    if (this.dead > 1024 && this.dead * 2 > this.seqs.length) this.compact();
  }

  /** Rows with after < seq <= through in (seq, collection, id) order. */
  *range(after: number, through: number): Generator<DocRow> {
    for (let i = upperBound(this.seqs, after, compareNumbers); i < this.seqs.length; i++) {
      const seq = this.seqs[i] as number;
      if (seq > through) return;
      const group = this.groups.get(seq);
      if (group === undefined || group.size === 0) continue;
      if (group.size === 1) yield* group.values();
      else yield* [...group.values()].sort(compareFeed);
    }
  }

  private compact(): void {
    this.seqs = this.seqs.filter((seq) => {
      const live = (this.groups.get(seq)?.size ?? 0) > 0;
      if (!live) this.groups.delete(seq);
      return live;
    });
    this.dead = 0;
  }
}

/** Index of the first element of ascending `xs` that is >= `x`. */
function lowerBound(xs: readonly string[], x: string): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((xs[mid] as string) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Changes a write transaction has made but not yet committed. */
class Overlay {
  /** A staged value, or null for a staged delete. */
  readonly meta = new Map<string, Uint8Array | null>();
  readonly docs = new Map<string, DocRow>();
  readonly links = new Map<number, number>();
  readonly checkpoints = new Map<string, number>();
}

/** The committed state. Only `apply` changes it. */
class Committed {
  readonly meta = new Map<string, Uint8Array>();
  /** The meta keys ascending, kept in step by `apply`, for listMeta's ranges. */
  readonly metaKeys: string[] = [];
  /** collection -> id -> row. */
  readonly docs = new Map<string, Map<string, DocRow>>();
  /** collection -> its ids ascending; dropped whenever the collection gains an id. */
  private readonly sortedIds = new Map<string, string[]>();
  readonly bySeq = new SeqIndex();
  readonly links = new Map<number, number>();
  private readonly linkSeqs: number[] = [];
  readonly checkpoints = new Map<string, number>();

  getDoc(collection: string, id: string): DocRow | undefined {
    return this.docs.get(collection)?.get(id);
  }

  idsOf(collection: string): readonly string[] {
    let ids = this.sortedIds.get(collection);
    if (ids === undefined) {
      ids = [...(this.docs.get(collection)?.keys() ?? [])].sort(compareStrings);
      this.sortedIds.set(collection, ids);
    }
    return ids;
  }

  linkedThrough(after: number, through: number): number {
    let max = 0;
    for (let i = upperBound(this.linkSeqs, after, compareNumbers); i < this.linkSeqs.length; i++) {
      const seq = this.linkSeqs[i] as number;
      if (seq > through) break;
      max = Math.max(max, this.links.get(seq) ?? 0);
    }
    return max;
  }

  apply(o: Overlay): void {
    for (const [key, value] of o.meta) {
      const had = this.meta.has(key);
      if (value === null) {
        if (!had) continue;
        this.meta.delete(key);
        this.metaKeys.splice(lowerBound(this.metaKeys, key), 1);
      } else {
        if (!had) this.metaKeys.splice(lowerBound(this.metaKeys, key), 0, key);
        this.meta.set(key, value);
      }
    }
    for (const [key, row] of o.docs) {
      let collection = this.docs.get(row.collection);
      if (collection === undefined) {
        collection = new Map();
        this.docs.set(row.collection, collection);
      }
      const old = collection.get(row.id);
      if (old === undefined) this.sortedIds.delete(row.collection);
      else this.bySeq.remove(key, old);
      collection.set(row.id, row);
      this.bySeq.add(key, row);
    }
    for (const [seq, until] of o.links) {
      const old = this.links.get(seq);
      if (old === undefined) insertSorted(this.linkSeqs, seq);
      this.links.set(seq, Math.max(old ?? 0, until));
    }
    for (const [peer, seq] of o.checkpoints) this.checkpoints.set(peer, seq);
  }
}

function checkLimit(limit: number): void {
  assert(Number.isInteger(limit) && limit >= 0, `limit must be a non-negative integer, got ${limit}`);
}

/** Merges two (seq, collection, id)-ascending streams of distinct keys, up to `limit` rows. */
function mergeFeed(a: Iterator<DocRow>, b: Iterator<DocRow>, limit: number): DocRow[] {
  const out: DocRow[] = [];
  let x = a.next();
  let y = b.next();
  while (out.length < limit && !(x.done && y.done)) {
    if (y.done || (!x.done && compareFeed(x.value, y.value) <= 0)) {
      out.push(x.value as DocRow);
      x = a.next();
    } else {
      out.push(y.value);
      y = b.next();
    }
  }
  return out;
}

/**
 * One transaction. A read transaction is a write transaction whose overlay stays empty, so
 * every read merges committed state with the overlay and a write tx sees its own changes.
 */
class MemoryTx implements WriteTx {
  private readonly overlay = new Overlay();
  private live = true;

  constructor(
    private readonly committed: Committed,
    private readonly writable: boolean,
  ) {}

  /** Ends the transaction; returns its changes. */
  finish(): Overlay {
    this.live = false;
    return this.overlay;
  }

  private check(write: boolean): void {
    if (!this.live) throw new AssertionError('a storage transaction was used after its callback settled');
    if (write) assert(this.writable, 'a read transaction cannot write');
  }

  async getMeta(key: string): Promise<Uint8Array | undefined> {
    this.check(false);
    const staged = this.overlay.meta.get(key);
    if (staged !== undefined) return staged ?? undefined;
    return this.committed.meta.get(key);
  }

  async listMeta(
    prefix: string,
    afterKey: string | undefined,
    limit: number,
  ): Promise<{ key: string; value: Uint8Array }[]> {
    this.check(false);
    checkLimit(limit);
    const inRange = (key: string): boolean => key.startsWith(prefix) && (afterKey === undefined || key > afterKey);
    const keys = this.committed.metaKeys;
    let i = afterKey !== undefined && afterKey >= prefix ? lowerBound(keys, afterKey) : lowerBound(keys, prefix);
    if (keys[i] === afterKey) i++;
    const committed: MetaEntry[] = [];
    const want = limit + stagedInRange(this.overlay.meta, inRange);
    for (; i < keys.length && committed.length < want && (keys[i] as string).startsWith(prefix); i++) {
      const key = keys[i] as string;
      committed.push({ key, value: this.committed.meta.get(key) as Uint8Array });
    }
    return overlayMetaRange(committed, this.overlay.meta, inRange, limit);
  }

  async getDocs(keys: readonly DocKey[]): Promise<(DocRow | undefined)[]> {
    this.check(false);
    return keys.map(
      ({ collection, id }) =>
        this.overlay.docs.get(docKeyString(collection, id)) ?? this.committed.getDoc(collection, id),
    );
  }

  async feed(afterSeq: number, limit: number): Promise<DocRow[]> {
    this.check(false);
    checkLimit(limit);
    return this.feedBetween(afterSeq, Infinity, limit);
  }

  async seqAfter(afterSeq: number, n: number): Promise<number> {
    this.check(false);
    checkLimit(n);
    const rows = this.feedBetween(afterSeq, Infinity, n);
    return rows[rows.length - 1]?.seq ?? 0;
  }

  async feedRange(afterSeq: number, throughSeq: number): Promise<DocRow[]> {
    this.check(false);
    return this.feedBetween(afterSeq, throughSeq, Infinity);
  }

  private feedBetween(after: number, through: number, limit: number): DocRow[] {
    const staged = this.overlay.docs;
    const committed = this.committed.bySeq.range(after, through);
    if (staged.size === 0) return mergeFeed(committed, nothing(), limit);
    // A staged row hides the committed row it replaces, wherever that row sits in the feed.
    const stillCommitted = filter(committed, (row) => !staged.has(docKeyString(row.collection, row.id)));
    const mine = [...staged.values()].filter((row) => row.seq > after && row.seq <= through).sort(compareFeed);
    return mergeFeed(stillCommitted, mine[Symbol.iterator](), limit);
  }

  async linkedThrough(afterSeq: number, throughSeq: number): Promise<number> {
    this.check(false);
    let max = this.committed.linkedThrough(afterSeq, throughSeq);
    for (const [seq, until] of this.overlay.links) {
      if (seq > afterSeq && seq <= throughSeq) max = Math.max(max, until);
    }
    return max;
  }

  async listDocs(collection: string, afterId: string | undefined, limit: number): Promise<DocRow[]> {
    this.check(false);
    checkLimit(limit);
    const ids = this.committed.idsOf(collection);
    let i = afterId === undefined ? 0 : upperBound(ids, afterId, compareStrings);
    const mine = [...this.overlay.docs.values()]
      .filter((row) => row.collection === collection && (afterId === undefined || row.id > afterId))
      .map((row) => row.id)
      .sort(compareStrings);
    let j = 0;
    const out: DocRow[] = [];
    while (out.length < limit && (i < ids.length || j < mine.length)) {
      const a = ids[i];
      const b = mine[j];
      let id: string;
      if (b === undefined || (a !== undefined && a < b)) {
        id = a as string;
        i++;
      } else {
        id = b;
        j++;
        if (a === b) i++; // staged and committed: one document
      }
      const row = this.overlay.docs.get(docKeyString(collection, id)) ?? this.committed.getDoc(collection, id);
      out.push(row as DocRow);
    }
    return out;
  }

  async getCheckpoint(peer: string): Promise<number> {
    this.check(false);
    return this.overlay.checkpoints.get(peer) ?? this.committed.checkpoints.get(peer) ?? 0;
  }

  async listCheckpoints(): Promise<{ peer: string; seq: number }[]> {
    this.check(false);
    const all = new Map([...this.committed.checkpoints, ...this.overlay.checkpoints]);
    return [...all].sort(([a], [b]) => compareStrings(a, b)).map(([peer, seq]) => ({ peer, seq }));
  }

  putMeta(key: string, value: Uint8Array): void {
    this.check(true);
    this.overlay.meta.set(key, value.slice());
  }

  deleteMeta(key: string): void {
    this.check(true);
    this.overlay.meta.set(key, null);
  }

  putDoc(row: DocRow): void {
    this.check(true);
    assert(Number.isSafeInteger(row.seq), `document seq must be an integer, got ${row.seq}`);
    const { collection, id, seq } = row;
    this.overlay.docs.set(docKeyString(collection, id), { collection, id, seq, state: row.state.slice() });
  }

  putLink(seq: number, until: number): void {
    this.check(true);
    this.overlay.links.set(seq, Math.max(this.overlay.links.get(seq) ?? 0, until));
  }

  setCheckpoint(peer: string, seq: number): void {
    this.check(true);
    this.overlay.checkpoints.set(peer, seq);
  }
}

function* nothing(): Generator<never> {}

function* filter<T>(xs: Iterator<T>, keep: (x: T) => boolean): Generator<T> {
  for (let x = xs.next(); !x.done; x = xs.next()) if (keep(x.value)) yield x.value;
}

export class MemoryStorage implements Storage {
  readonly name = 'memory';
  private readonly committed = new Committed();
  private readonly queue = new SerialQueue();
  private closing: Promise<void> | undefined;

  read<T>(fn: (tx: ReadTx) => Promise<T> | T): Promise<T> {
    return this.enqueue(async () => {
      const tx = new MemoryTx(this.committed, false);
      try {
        return await fn(tx);
      } finally {
        tx.finish();
      }
    });
  }

  write<T>(fn: (tx: WriteTx) => Promise<T> | T): Promise<T> {
    return this.enqueue(async () => {
      const tx = new MemoryTx(this.committed, true);
      let result: T;
      try {
        result = await fn(tx);
      } finally {
        // On a throw the overlay is simply dropped: nothing reached committed state.
        tx.finish();
      }
      this.committed.apply(tx.finish());
      return result;
    });
  }

  close(): Promise<void> {
    this.closing ??= this.queue.drained();
    return this.closing;
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    if (this.closing !== undefined) {
      return Promise.reject(new DbError(ErrorCode.closed, `storage ${this.name} is closed`));
    }
    return this.queue.run(task);
  }
}

export function openMemoryStorage(): Storage {
  return new MemoryStorage();
}
