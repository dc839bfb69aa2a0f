/**
 * Collaborative lists: a sequence CRDT whose elements are JSON values. Invariant: docs that hold
 * the same operations show the same items, whatever the order and repetition of delivery. It
 * never reads clocks or randomness and imports nothing but core/, shared/ and crdt/.
 *
 * The same structure as the text type (src/crdt/text: FugueMax, run-length encoded fragments in
 * a B-tree, Int32Array op logs, the snapshot and delta formats), shared rather than copied: the
 * sequence state (SeqState) is generic over what an element holds, and a list's elements hold
 * items (list-state.ts) where a text's hold UTF-16 code units. So this folder imports text/'s
 * internal modules, the one place that does: they are one algorithm with two contents.
 * Items are checked and made canonical on insert, checked again when read from bytes (items.ts).
 */
export { ListDoc } from './list-doc.js';
export type { ListChange } from './list-doc.js';
