/**
 * Text documents in a replica (ADR 4): their entries' payloads checked on arrival, their text
 * built from a state, the entries a peer lacks, and the open documents edited through handles.
 *
 * An open document is one TextDoc holding the stored state plus the edits not yet committed.
 * Edits apply to it at once (so `toString()` is always current) and are committed as one
 * change per event-loop turn: a keystroke costs no transaction of its own. Most changes hold
 * the operations made since the last one (a delta); when the deltas held add up to more than
 * the last snapshot, the change holds the whole text instead, which subsumes them, so a
 * stored document stays within about twice its snapshot whatever its history.
 */
import type { DocKey } from '../storage/index.js';
import type { Env, TimerHandle } from '../env/env.js';
import type { RecordState, Sibling } from '../core/index.js';
import {
  encodeTextDelta,
  encodeTextSnapshot,
  isTextState,
  textEntriesContext,
  textEntryInfo,
  vvWith,
} from '../core/index.js';
import type { Dot, Hlc } from '../core/index.js';
import { TextDoc } from '../crdt/text/index.js';
import type { TextChange } from '../crdt/text/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';

export type { TextChange };

/** What a text handle's listeners hear: the changes apply one after another. */
export interface TextEvent {
  readonly origin: 'local' | 'remote';
  readonly changes: readonly TextChange[];
}

function dotKey(d: Dot): string {
  return `${d.replica}\u0000${d.counter}`;
}

function corrupt(message: string): never {
  throw new DbError(ErrorCode.corrupt, message);
}

/**
 * Checks that a received text entry's payload is what its header says: a delta holds exactly
 * the operations [start, end) of its dot's replica; a snapshot decodes and holds exactly its
 * version. Throws DbError('corrupt').
 */
export function checkTextPayload(s: Sibling): void {
  const info = textEntryInfo(s);
  const held = TextDoc.describe(info.payload);
  if (info.kind === 'delta') {
    if (held.kind !== 'delta') corrupt('a text change holds a snapshot where a delta belongs');
    const spans = held.ops.map((op) => {
      if (op.agent !== s.dot.replica) corrupt("a text change holds another replica's operations");
      return [op.seq, op.seq + op.len] as const;
    });
    spans.sort((a, b) => a[0] - b[0]);
    let at = info.start;
    for (const [from, to] of spans) {
      if (from !== at) corrupt('a text change does not hold exactly the operations it names');
      at = to;
    }
    if (at !== info.end) corrupt('a text change does not hold exactly the operations it names');
    return;
  }
  if (held.kind !== 'snapshot') corrupt('a text snapshot holds a delta');
  if (held.version.size !== info.version.size) corrupt('a text snapshot does not hold the version it names');
  for (const [r, n] of held.version) {
    if (info.version.get(r) !== n) corrupt('a text snapshot does not hold the version it names');
  }
}

/** Entries in the order to apply them: the largest snapshot first (it loads without replay). */
function applyOrder(entries: readonly Sibling[]): Sibling[] {
  const size = (s: Sibling): number => {
    const info = textEntryInfo(s);
    if (info.kind === 'delta') return -1;
    let n = 0;
    for (const c of info.version.values()) n += c;
    return n;
  };
  return [...entries].sort((a, b) => size(b) - size(a));
}

function covered(version: ReadonlyMap<string, number>, s: Sibling): boolean {
  const info = textEntryInfo(s);
  if (info.kind === 'delta') return (version.get(s.dot.replica) ?? 0) >= info.end;
  for (const [r, n] of info.version) if ((version.get(r) ?? 0) < n) return false;
  return true;
}

/** Applies the entries of `state` not in `applied` to `doc`; returns the visible changes. */
export function applyEntries(doc: TextDoc, state: RecordState, applied: Set<string>): TextChange[] {
  const changes: TextChange[] = [];
  const fresh = state.siblings.filter((s) => !applied.has(dotKey(s.dot)));
  let version = fresh.length === 0 ? new Map<string, number>() : doc.version();
  for (const s of applyOrder(fresh)) {
    if (covered(version, s)) continue;
    for (const c of doc.applyChanges(textEntryInfo(s).payload)) changes.push(c);
    version = doc.version();
  }
  applied.clear();
  for (const s of state.siblings) applied.add(dotKey(s.dot));
  return changes;
}

/** The text a state shows. */
export function textOf(state: RecordState, replica: string): string {
  const doc = new TextDoc(replica);
  applyEntries(doc, state, new Set());
  return doc.toString();
}

/**
 * The part of a text state a peer lacks: its entries whose dots the peer has not seen, with
 * the context they account for. Undefined when the peer lacks every entry (ship it whole).
 */
export function textPartFor(state: RecordState, peerHas: (dot: Dot) => boolean): RecordState | undefined {
  const lacking = state.siblings.filter((s) => !peerHas(s.dot));
  if (lacking.length === state.siblings.length || lacking.length === 0) return undefined;
  return { siblings: lacking, context: textEntriesContext(lacking) };
}

/** What the replica offers its text documents (implemented by Replica). */
export interface TextHost {
  readonly id: string;
  readonly env: Env;
  readState(key: DocKey): Promise<RecordState | undefined>;
  /** Commits one local change of a text document, built inside the transaction. */
  writeText(key: DocKey, build: (old: RecordState | undefined, dot: Dot, hlc: Hlc) => Sibling): Promise<void>;
}

interface OpenDoc {
  readonly key: DocKey;
  doc: TextDoc;
  /** Entries of the stored state already in `doc`. */
  readonly applied: Set<string>;
  /** This replica's operations already committed. */
  committed: number;
  readonly listeners: Set<(e: TextEvent) => void>;
  handles: number;
  timer: TimerHandle | undefined;
  flushing: Promise<void> | undefined;
  failure: Error | undefined;
  readonly ready: Promise<void>;
}

export interface TextCompaction {
  /** When the deltas held outweigh the last snapshot and this many bytes, the next change is a snapshot (2048). */
  minBytes?: number;
  /** Joins look at every entry: at this many deltas the next change is a snapshot whatever their size (256). */
  maxDeltas?: number;
}

/**
 * A replicated text document: edit by UTF-16 index, read, and hear every change. Edits made
 * in one event-loop turn are committed as one change; `flush()` waits for that.
 */
export class TextHandle {
  private closed = false;

  constructor(
    private readonly texts: TextDocuments,
    private readonly open: OpenDoc,
  ) {}

  get collection(): string {
    return this.open.key.collection;
  }

  get id(): string {
    return this.open.key.id;
  }

  /** Resolves when the stored text is loaded; edits before that throw. */
  get ready(): Promise<void> {
    return this.open.ready;
  }

  /** The text, with every edit made so far (committed or not). */
  toString(): string {
    return this.open.doc.toString();
  }

  /** Length in UTF-16 code units. */
  get length(): number {
    return this.open.doc.length;
  }

  /** Inserts `text` at `pos` (UTF-16 code units). Throws DbError invalid_input on a bad position. */
  insert(pos: number, text: string): void {
    this.check();
    if (typeof text !== 'string') throw new DbError(ErrorCode.invalidInput, 'insert takes a string');
    if (text.length === 0) return;
    this.open.doc.insert(pos, text);
    this.texts.edited(this.open, { pos, deleted: 0, inserted: text });
  }

  /** Deletes `len` code units at `pos`. Throws DbError invalid_input on a bad range. */
  delete(pos: number, len: number): void {
    this.check();
    if (len === 0) return;
    this.open.doc.delete(pos, len);
    this.texts.edited(this.open, { pos, deleted: len, inserted: '' });
  }

  /**
   * Calls `listener` after every change: local edits at once, remote ones when committed
   * here. Returns the function that unsubscribes.
   */
  subscribe(listener: (e: TextEvent) => void): () => void {
    this.open.listeners.add(listener);
    return () => this.open.listeners.delete(listener);
  }

  /** Resolves when every edit made so far is committed (and rejects if committing failed). */
  flush(): Promise<void> {
    return this.texts.flush(this.open);
  }

  /** Commits what is pending and lets the document go when no other handle holds it. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.texts.release(this.open);
  }

  private check(): void {
    if (this.closed) throw new DbError(ErrorCode.closed, `text ${this.collection}/${this.id} is closed`);
    if (this.open.failure !== undefined) {
      throw new DbError(ErrorCode.unavailable, `text ${this.collection}/${this.id} failed to load or commit`, {
        cause: this.open.failure,
      });
    }
    if (!this.texts.isLoaded(this.open)) {
      throw new DbError(ErrorCode.unavailable, `text ${this.collection}/${this.id} is loading: await its ready`);
    }
  }
}

/** The open text documents of one replica. */
export class TextDocuments {
  private readonly docs = new Map<string, OpenDoc>();
  private readonly loaded = new WeakSet<OpenDoc>();

  private readonly minBytes: number;
  private readonly maxDeltas: number;

  constructor(
    private readonly host: TextHost,
    compaction: TextCompaction = {},
  ) {
    this.minBytes = compaction.minBytes ?? 2048;
    this.maxDeltas = compaction.maxDeltas ?? 256;
  }

  /** A handle on a text document (loaded in the background: see `ready`). */
  handle(key: DocKey): TextHandle {
    const k = `${key.collection}\u0000${key.id}`;
    let open = this.docs.get(k);
    if (open === undefined) {
      const made: OpenDoc = {
        key,
        doc: new TextDoc(this.host.id),
        applied: new Set(),
        committed: 0,
        listeners: new Set(),
        handles: 0,
        timer: undefined,
        flushing: undefined,
        failure: undefined,
        ready: Promise.resolve(),
      };
      (made as { ready: Promise<void> }).ready = this.load(made);
      // A failed load is reported through `ready` and every edit; it must not go unhandled.
      made.ready.catch(() => undefined);
      open = made;
      this.docs.set(k, open);
    }
    open.handles++;
    return new TextHandle(this, open);
  }

  isLoaded(open: OpenDoc): boolean {
    return this.loaded.has(open);
  }

  private async load(open: OpenDoc): Promise<void> {
    try {
      const state = await this.host.readState(open.key);
      if (state !== undefined && !isTextState(state) && state.siblings.some((s) => s.value !== null)) {
        throw new DbError(
          ErrorCode.conflict,
          `${open.key.collection}/${open.key.id} holds a JSON document, not text: use another id`,
        );
      }
      if (state !== undefined && isTextState(state)) {
        const changes = applyEntries(open.doc, state, open.applied);
        open.committed = open.doc.version().get(this.host.id) ?? 0;
        this.loaded.add(open);
        if (changes.length > 0) this.emit(open, { origin: 'remote', changes });
        return;
      }
      this.loaded.add(open);
    } catch (e) {
      open.failure = e as Error;
      throw e;
    }
  }

  /** A local edit was made: tell listeners, and commit at the end of this turn. */
  edited(open: OpenDoc, change: TextChange): void {
    this.emit(open, { origin: 'local', changes: [change] });
    if (open.timer === undefined && open.flushing === undefined) {
      open.timer = this.host.env.timers.setTimeout(() => {
        open.timer = undefined;
        void this.flush(open).catch(() => undefined);
      }, 0);
    }
  }

  /** Commits every uncommitted edit of `open`; resolves when all are durable. */
  async flush(open: OpenDoc): Promise<void> {
    open.timer?.cancel();
    open.timer = undefined;
    while (open.flushing !== undefined) await open.flushing;
    if ((open.doc.version().get(this.host.id) ?? 0) <= open.committed) return;
    open.flushing = this.commitOnce(open);
    try {
      await open.flushing;
    } finally {
      open.flushing = undefined;
    }
    // Edits made while that commit ran go in the next one.
    if ((open.doc.version().get(this.host.id) ?? 0) > open.committed) await this.flush(open);
  }

  /** Commits every open document's pending edits (before reading changes for someone else). */
  async flushAll(): Promise<void> {
    await Promise.all([...this.docs.values()].map((o) => (this.loaded.has(o) ? this.flush(o) : o.ready)));
  }

  private async commitOnce(open: OpenDoc): Promise<void> {
    const me = this.host.id;
    let end = 0;
    try {
      await this.host.writeText(open.key, (old, dot, hlc) => {
        const doc = open.doc;
        const version = doc.version();
        end = version.get(me) ?? 0;
        const start = open.committed;
        if (this.shouldCompact(old)) {
          const cover = vvWith(old?.context ?? new Map(), dot);
          return {
            dot,
            hlc,
            value: encodeTextSnapshot(version, cover, doc.encode()),
            type: 'text-snapshot',
          };
        }
        const since = new Map(version);
        since.set(me, start);
        const payload = doc.encodeSince(since);
        return { dot, hlc, value: encodeTextDelta(start, end, payload), type: 'text' };
      });
    } catch (e) {
      open.failure = e as Error;
      throw e;
    }
    open.committed = end;
  }

  private shouldCompact(old: RecordState | undefined): boolean {
    if (old === undefined || !isTextState(old)) return true;
    let deltas = 0;
    let deltaBytes = 0;
    let snapshotBytes = 0;
    for (const s of old.siblings) {
      const info = textEntryInfo(s);
      if (info.kind === 'delta') {
        deltas++;
        deltaBytes += info.payload.length;
      } else snapshotBytes = Math.max(snapshotBytes, info.payload.length);
    }
    return deltas >= this.maxDeltas || deltaBytes > Math.max(snapshotBytes, this.minBytes);
  }

  /** A committed state of a text document (local or remote): bring the open doc up to it. */
  stored(key: DocKey, state: RecordState): void {
    const open = this.docs.get(`${key.collection}\u0000${key.id}`);
    if (open === undefined || !this.loaded.has(open) || !isTextState(state)) return;
    const changes = applyEntries(open.doc, state, open.applied);
    if (changes.length > 0) this.emit(open, { origin: 'remote', changes });
  }

  async release(open: OpenDoc): Promise<void> {
    open.handles--;
    if (open.handles > 0) return;
    try {
      if (this.loaded.has(open)) await this.flush(open);
    } finally {
      if (open.handles === 0) this.docs.delete(`${open.key.collection}\u0000${open.key.id}`);
    }
  }

  private emit(open: OpenDoc, e: TextEvent): void {
    for (const l of [...open.listeners]) {
      try {
        l(e);
      } catch {
        // A listener's failure is its own; the edit stands.
      }
    }
  }
}
