/**
 * ListDoc: a replicated list of JSON items (a sequence CRDT, the text CRDT's machinery with items
 * instead of characters). Local edits by index; remote changes by id, in any order and any
 * number of times. Invariant: two docs that hold the same operations show the same items.
 * It never reads clocks or randomness: the only identity is the replica name given to the constructor.
 */
import type { JsonValue } from '../../core/index.js';
import { DbError, ErrorCode } from '../../shared/errors.js';
import { readDelta, writeDelta } from '../text/delta.js';
import { LV_MAX, decodeSnapshot, encodeSnapshot } from '../text/snapshot.js';
import type { SeqChange } from '../text/text-state.js';
import { toItem } from './items.js';
import { LIST_DELTA_TAG, LIST_SNAPSHOT_TAG, ListState, listContent } from './list-state.js';

/**
 * One visible change, as a patch: at `pos`, `deleted` items were removed and `inserted` put in.
 * A list of them applies in order, each to the list left by the previous one.
 */
export type ListChange = SeqChange<readonly JsonValue[]>;

function invalid(message: string): never {
  throw new DbError(ErrorCode.invalidInput, message);
}

/**
 * A replicated list of JSON values. Each inserted item and each deleted item is one operation
 * with an id (replica, sequence number); `version()` counts them per replica. Items typed
 * concurrently at one place by different replicas never interleave (FugueMax).
 *
 * Items are held as frozen copies with object keys in canonical order: what `get` and `toArray`
 * return must not be changed (it throws in strict mode), copy it to edit it.
 *
 * @example
 * const a = new ListDoc('alice');
 * const b = new ListDoc('bob');
 * a.insert(0, [{ task: 'milk' }, { task: 'eggs' }]);
 * b.applyChanges(a.encodeSince(b.version()));
 * b.delete(0, 1);
 * b.insert(1, ['bread']);
 * a.applyChanges(b.encodeSince(a.version())); // [{ pos: 0, deleted: 1, inserted: [] }, { pos: 1, deleted: 0, inserted: ['bread'] }]
 * a.toArray(); // [{ task: 'eggs' }, 'bread']
 */
export class ListDoc {
  private s: ListState;

  /** An empty list edited as `replica` (any string, unique among the replicas that edit it). */
  constructor(replica: string) {
    if (typeof replica !== 'string') invalid('replica must be a string');
    this.s = new ListState(replica);
  }

  /** This replica's id. */
  get replica(): string {
    return this.s.replica;
  }

  /** Number of items. */
  get length(): number {
    return this.s.length;
  }

  /** The items, in order, as a new array (the items themselves are frozen). */
  toArray(): JsonValue[] {
    return this.s.visible();
  }

  /** The item at `index`, or undefined when there is none. Throws DbError('invalid_input') unless index is an integer. */
  get(index: number): JsonValue | undefined {
    if (!Number.isInteger(index)) invalid(`index ${index} is not an integer`);
    if (index < 0 || index >= this.s.length) return undefined;
    return this.s.get(index);
  }

  /**
   * Inserts `items` before index `pos` (0 <= pos <= length), in order. Each must be a JSON value
   * within the limits of a document value. Throws DbError('invalid_input') (and inserts nothing)
   * on a bad position or item, DbError('too_large') past the limits.
   */
  insert(pos: number, items: readonly JsonValue[]): void {
    if (!Array.isArray(items)) invalid('items must be an array');
    if (!Number.isInteger(pos) || pos < 0 || pos > this.s.length) invalid(`insert position ${pos} out of range`);
    if (items.length === 0) return;
    const held = (items as readonly unknown[]).map(toItem);
    const s = this.s;
    if (s.nextLv + held.length > LV_MAX) throw new DbError(ErrorCode.tooLarge, 'list holds too many operations');
    s.localInsert(pos, held);
  }

  /** Deletes `len` items from `pos`. Throws DbError('invalid_input') when out of range. */
  delete(pos: number, len: number): void {
    if (!Number.isInteger(pos) || !Number.isInteger(len) || pos < 0 || len < 0 || pos + len > this.s.length) {
      invalid(`delete range ${pos}+${len} out of range`);
    }
    if (len === 0) return;
    const s = this.s;
    if (s.nextLv + len > LV_MAX) throw new DbError(ErrorCode.tooLarge, 'list holds too many operations');
    s.localDelete(pos, len);
  }

  /**
   * Per replica id, how many of its operations this doc holds: one per item inserted and one per
   * item deleted. Replicas with none are left out. Always a prefix per replica.
   */
  version(): Map<string, number> {
    const v = new Map<string, number>();
    const s = this.s;
    for (let a = 0; a < s.agents.length; a++) {
      const n = s.seqCount[a] as number;
      if (n > 0) v.set(s.agents[a] as string, n);
    }
    return v;
  }

  /**
   * Everything this doc holds that a doc at version `since` lacks, as bytes for applyChanges.
   * Without `since` (or with an empty one) this is encode(). Deleted items travel without their
   * content (the delete travels too, or is already there).
   */
  encodeSince(since?: ReadonlyMap<string, number>): Uint8Array {
    const s = this.s;
    let any = false;
    if (since !== undefined) for (const n of since.values()) if (n > 0) any = true;
    if (!any) return encodeSnapshot(s, listContent);
    return writeDelta(s.collectOps(since), listContent);
  }

  /**
   * Applies bytes from another list's encodeSince or encode: idempotent and commutative.
   * Operations whose dependencies are missing wait inside the doc until those arrive.
   * Returns the visible changes as patches to apply in order (see ListChange).
   * Throws DbError('corrupt') on malformed bytes (a text's included), and then changes nothing.
   */
  applyChanges(bytes: Uint8Array): ListChange[] {
    if (!(bytes instanceof Uint8Array)) invalid('changes must be bytes');
    const changes: ListChange[] = [];
    if (bytes[0] === LIST_SNAPSHOT_TAG) {
      const { state, content } = decodeSnapshot(bytes, this.s.replica, listContent);
      if (this.s.nextLv === 0) {
        // Nothing here yet: take the loaded state as it is, no integration needed.
        state.pending = this.s.pending;
        this.s = state;
        if (content.length > 0) changes.push({ pos: 0, deleted: 0, inserted: content });
        if (state.pending.length > 0) state.retryPending(changes);
        return changes;
      }
      this.s.applyOps(state.collectOps(this.version()), changes);
      return changes;
    }
    if (bytes[0] === LIST_DELTA_TAG) {
      this.s.applyOps(readDelta(bytes, listContent), changes);
      return changes;
    }
    throw new DbError(ErrorCode.corrupt, 'corrupt list changes: unknown format');
  }

  /** Operations received whose dependencies have not arrived yet. */
  get pendingCount(): number {
    return this.s.pending.length;
  }

  /** The whole list, with the history needed to merge (deleted items are dropped). */
  encode(): Uint8Array {
    return encodeSnapshot(this.s, listContent);
  }

  /** Loads bytes from encode() (or any encodeSince) as a list edited by `replica`. Throws DbError('corrupt'). */
  static decode(bytes: Uint8Array, replica: string): ListDoc {
    const doc = new ListDoc(replica);
    doc.applyChanges(bytes);
    return doc;
  }
}
