/**
 * The state of one list replica: the sequence machinery of the text CRDT (SeqState: FugueMax,
 * op logs, fragment tree, formats) with JSON items as the content of each element, kept in
 * chunks indexed by local version. Internal to src/crdt/list; the public face is ListDoc.
 * Invariant: item(lv) is set for every inserted element this replica saw visible.
 */
import type { JsonValue } from '../../core/index.js';
import type { ContentCodec } from '../text/content.js';
import { SeqState } from '../text/text-state.js';
import { readItems, writeItems } from './items.js';

/** The `inserted` of every deletion patch: shared, so frozen. */
const NO_ITEMS: readonly JsonValue[] = Object.freeze([]);

/** LVs per chunk of the item store. */
const CHUNK_BITS = 10;
const CHUNK = 1 << CHUNK_BITS;

export class ListState extends SeqState<readonly JsonValue[]> {
  /**
   * The item of every inserted element by LV, in chunks of CHUNK LVs (undefined where unknown:
   * deleted before we saw it, or a delete). Chunked so that a long stretch of LVs without items
   * (a delta may claim millions of deleted elements in a few bytes) costs nothing, and no array
   * ever grows past V8's limits or turns sparse.
   */
  chunks: ((JsonValue | undefined)[] | undefined)[] = [];
  protected readonly empty = NO_ITEMS;

  reserve(): void {
    // Nothing to do: chunks are made as items arrive.
  }

  allocate(): void {
    this.chunks = [];
  }

  put(lv: number, content: readonly JsonValue[], from: number, n: number): void {
    const chunks = this.chunks;
    for (let i = 0; i < n; i++) {
      const x = lv + i;
      const k = x >>> CHUNK_BITS;
      let c = chunks[k];
      if (c === undefined) {
        // The outer array stays dense: at most LV_MAX / CHUNK entries.
        while (chunks.length < k) chunks.push(undefined);
        c = [];
        chunks[k] = c;
      }
      // Filled up to the slot rather than assigned past the end, which would make it sparse.
      const at = x & (CHUNK - 1);
      while (c.length < at) c.push(undefined);
      c[at] = content[from + i] as JsonValue;
    }
  }

  /** The item of LV `lv` (an inserted element whose item is held). */
  item(lv: number): JsonValue {
    return (this.chunks[lv >>> CHUNK_BITS] as JsonValue[])[lv & (CHUNK - 1)] as JsonValue;
  }

  protected read(lo: number, hi: number): readonly JsonValue[] {
    const out: JsonValue[] = [];
    for (let lv = lo; lv < hi; lv++) out.push(this.item(lv));
    return out;
  }

  protected concat(parts: (readonly JsonValue[])[]): readonly JsonValue[] {
    const out: JsonValue[] = [];
    for (const p of parts) for (const x of p) out.push(x);
    return out;
  }

  protected contentAt(pos: number, len: number): JsonValue[] {
    const out: JsonValue[] = [];
    this.forVisible(pos, len, (lv, n) => {
      for (let i = 0; i < n; i++) out.push(this.item(lv + i));
    });
    return out;
  }

  visible(): JsonValue[] {
    return this.contentAt(0, this.length);
  }

  /** The item at visible index i (0 <= i < length). */
  get(i: number): JsonValue {
    return this.item(this.lvAt(i));
  }
}

/** First bytes of a list's snapshot ('s') and delta ('d'): never a text's. */
export const LIST_SNAPSHOT_TAG = 0x73;
export const LIST_DELTA_TAG = 0x64;

export const listContent: ContentCodec<readonly JsonValue[], ListState> = {
  kind: 'list',
  snapshotTag: LIST_SNAPSHOT_TAG,
  deltaTag: LIST_DELTA_TAG,
  size: (items) => 4 * items.length,
  write: (items) => writeItems(items),
  read: (count) => readItems(count),
  newState: (replica) => new ListState(replica),
};
