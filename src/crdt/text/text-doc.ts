/**
 * TextDoc: a collaborative plain-text document (a sequence CRDT over UTF-16 code units).
 * Local edits by index; remote changes by id, in any order and any number of times.
 * Invariant: two docs that hold the same operations show the same text. It never reads clocks or
 * randomness: the only identity is the replica name given to the constructor.
 */
import { DbError, ErrorCode } from '../../shared/errors.js';
import { textContent } from './content.js';
import { DELTA_TAG, readDelta, writeDelta } from './delta.js';
import { LV_MAX, decodeSnapshot, encodeSnapshot, scanSnapshot, SNAPSHOT_TAG } from './snapshot.js';
import type { SnapshotSummary } from './snapshot.js';
import { TextState, type TextChange } from './text-state.js';

export type { TextChange } from './text-state.js';

function invalid(message: string): never {
  throw new DbError(ErrorCode.invalidInput, message);
}

/**
 * A replicated text. Each inserted character and each deleted character is one operation with
 * an id (replica, sequence number); `version()` counts them per replica.
 *
 * @example
 * const a = new TextDoc('alice');
 * const b = new TextDoc('bob');
 * a.insert(0, 'hello');
 * b.applyChanges(a.encodeSince(b.version()));
 * b.insert(5, ' world');
 * a.applyChanges(b.encodeSince(a.version())); // [{ pos: 5, deleted: 0, inserted: ' world' }]
 * a.toString(); // 'hello world'
 */
export class TextDoc {
  private s: TextState;
  /**
   * A snapshot loaded but not built yet (set instead of `s` holding anything): its bytes (a
   * copy, checked whole), its text and its version. The tree, the op tables and the content are
   * built on the first call that needs them (an edit, a merge, an encoding); until then the text
   * and the version are read from here, the way Loro keeps the text beside a lazily decoded history.
   */
  private lazy: (SnapshotSummary<string> & { bytes: Uint8Array }) | null = null;

  /** An empty document edited as `replica` (any string, unique among the replicas that edit it). */
  constructor(replica: string) {
    if (typeof replica !== 'string') invalid('replica must be a string');
    this.s = new TextState(replica);
  }

  /** This replica's id. */
  get replica(): string {
    return this.s.replica;
  }

  /** Length of the visible text in UTF-16 code units. */
  get length(): number {
    return this.lazy !== null ? this.lazy.content.length : this.s.length;
  }

  /** The visible text. */
  toString(): string {
    return this.lazy !== null ? this.lazy.content : this.s.toString();
  }

  /** The state, built first if a snapshot was loaded lazily. */
  private state(): TextState {
    const lazy = this.lazy;
    if (lazy !== null) {
      this.s = decodeSnapshot(lazy.bytes, this.s.replica, textContent).state;
      this.lazy = null;
    }
    return this.s;
  }

  /** Inserts `text` before code unit `pos` (0 <= pos <= length). Throws DbError('invalid_input'). */
  insert(pos: number, text: string): void {
    if (typeof text !== 'string') invalid('text must be a string');
    if (!Number.isInteger(pos) || pos < 0 || pos > this.length) invalid(`insert position ${pos} out of range`);
    if (text.length === 0) return;
    const s = this.state();
    if (s.nextLv + text.length > LV_MAX)
      throw new DbError(ErrorCode.tooLarge, 'text document holds too many operations');
    s.localInsert(pos, text);
  }

  /** Deletes `len` code units from `pos`. Throws DbError('invalid_input') when out of range. */
  delete(pos: number, len: number): void {
    if (!Number.isInteger(pos) || !Number.isInteger(len) || pos < 0 || len < 0 || pos + len > this.length) {
      invalid(`delete range ${pos}+${len} out of range`);
    }
    if (len === 0) return;
    const s = this.state();
    if (s.nextLv + len > LV_MAX) throw new DbError(ErrorCode.tooLarge, 'text document holds too many operations');
    s.localDelete(pos, len);
  }

  /**
   * Per replica id, how many of its operations this doc holds: one per character inserted and
   * one per character deleted. Replicas with none are left out. Always a prefix per replica.
   */
  version(): Map<string, number> {
    const v = new Map<string, number>();
    const lazy = this.lazy;
    if (lazy !== null) {
      // In the order a built state lists them: this replica first.
      const me = lazy.agents.indexOf(this.s.replica);
      if (me >= 0) v.set(lazy.agents[me] as string, lazy.counts[me] as number);
      for (let a = 0; a < lazy.agents.length; a++)
        if (a !== me) v.set(lazy.agents[a] as string, lazy.counts[a] as number);
      return v;
    }
    const s = this.s;
    for (let a = 0; a < s.agents.length; a++) {
      const n = s.seqCount[a] as number;
      if (n > 0) v.set(s.agents[a] as string, n);
    }
    return v;
  }

  /**
   * Everything this doc holds that a doc at version `since` lacks, as bytes for applyChanges.
   * Without `since` (or with an empty one) this is encode(). Time proportional to the output.
   * Deleted characters travel without their content (the delete travels too, or is already there).
   */
  encodeSince(since?: ReadonlyMap<string, number>): Uint8Array {
    const s = this.state();
    if (since === undefined) return encodeSnapshot(s, textContent);
    let any = false;
    for (const n of since.values()) if (n > 0) any = true;
    if (!any) return encodeSnapshot(s, textContent);
    return writeDelta(s.collectOps(since), textContent);
  }

  /**
   * Applies bytes from another doc's encodeSince or encode: idempotent and commutative.
   * Operations whose dependencies are missing wait inside the doc until those arrive.
   * Returns the visible changes as patches to apply in order: each `{ pos, deleted, inserted }`
   * applies to the text left by the previous one, turning the old text into the new one.
   * Throws DbError('corrupt') on malformed bytes, and then changes nothing.
   */
  applyChanges(bytes: Uint8Array): TextChange[] {
    if (!(bytes instanceof Uint8Array)) invalid('changes must be bytes');
    const changes: TextChange[] = [];
    if (bytes[0] === SNAPSHOT_TAG) {
      if (this.lazy === null && this.s.nextLv === 0 && this.s.pending.length === 0) {
        // Nothing here yet: keep the snapshot, checked, and build the state when needed.
        const summary = scanSnapshot(bytes, textContent);
        this.lazy = { ...summary, bytes: bytes.slice() };
        if (summary.content.length > 0) changes.push({ pos: 0, deleted: 0, inserted: summary.content });
        return changes;
      }
      const { state, content: text } = decodeSnapshot(bytes, this.s.replica, textContent);
      if (this.state().nextLv === 0) {
        // Nothing here yet: take the loaded state as it is, no integration needed.
        state.pending = this.s.pending;
        this.s = state;
        if (text.length > 0) changes.push({ pos: 0, deleted: 0, inserted: text });
        if (state.pending.length > 0) state.retryPending(changes);
        return changes;
      }
      this.s.applyOps(state.collectOps(this.version()), changes);
      return changes;
    }
    if (bytes[0] === DELTA_TAG) {
      const ops = readDelta(bytes, textContent);
      this.state().applyOps(ops, changes);
      return changes;
    }
    throw new DbError(ErrorCode.corrupt, 'corrupt text changes: unknown format');
  }

  /** Operations received whose dependencies have not arrived yet. */
  get pendingCount(): number {
    return this.lazy !== null ? 0 : this.s.pending.length;
  }

  /** The whole document, with the history needed to merge (deleted content is dropped). */
  encode(): Uint8Array {
    return encodeSnapshot(this.state(), textContent);
  }

  /**
   * What bytes from encode() or encodeSince() hold, checked whole without building a doc: a
   * snapshot's version, or a delta's operations as id ranges (replica, first seq, count).
   * Replication uses it to check that a change holds what its header says. Throws DbError('corrupt').
   */
  static describe(
    bytes: Uint8Array,
  ):
    | { kind: 'snapshot'; version: Map<string, number> }
    | { kind: 'delta'; ops: { agent: string; seq: number; len: number }[] } {
    if (!(bytes instanceof Uint8Array)) invalid('changes must be bytes');
    if (bytes[0] === SNAPSHOT_TAG) {
      const summary = scanSnapshot(bytes, textContent);
      const version = new Map<string, number>();
      summary.agents.forEach((a, i) => version.set(a, summary.counts[i] as number));
      return { kind: 'snapshot', version };
    }
    if (bytes[0] === DELTA_TAG) {
      const ops = readDelta(bytes, textContent).map((op) => ({ agent: op.agent, seq: op.seq, len: op.len }));
      return { kind: 'delta', ops };
    }
    throw new DbError(ErrorCode.corrupt, 'corrupt text changes: unknown format');
  }

  /** Loads bytes from encode() (or any encodeSince) as a doc edited by `replica`. Throws DbError('corrupt'). */
  static decode(bytes: Uint8Array, replica: string): TextDoc {
    const doc = new TextDoc(replica);
    doc.applyChanges(bytes);
    return doc;
  }
}
