/**
 * Collaborative text: a sequence CRDT over UTF-16 code units. Invariant: docs that hold the same
 * operations show the same text, whatever the order and repetition of delivery. It never reads
 * clocks or randomness and imports nothing but core/ and shared/.
 *
 * Algorithm: FugueMax (Weidner & Kleppmann, "The Art of the Fugue", 2023), integrated the way
 * Gentle's YjsMod does it. Chosen over YATA (Yjs) and RGA because it is maximally
 * non-interleaving: runs typed concurrently at one spot stay contiguous whether they were typed
 * forwards or backwards (the paper shows RGA interleaving backward typing, and YATA falling short
 * of maximal non-interleaving), at the same cost as YATA: each run stores a left and a right
 * origin, and only concurrent inserts at one spot pay for a scan.
 *
 * Data structures (text-state.ts, fragment-tree.ts):
 * - every operation (a character inserted or deleted) gets a local version (LV) in the order
 *   this replica applied it, so ids in memory are single numbers; per-replica run tables map
 *   (replica, seq) <-> LV;
 * - insert and delete logs in LV order, run-length encoded in Int32Array columns (a run typed
 *   left to right is one entry; a run of backspaces is one entry);
 * - a B-tree of fragments (runs of one insert with consecutive LVs, all visible or all
 *   deleted) with subtree visible lengths, and a cache of the last typing position and leaf;
 * - content as one Uint16Array indexed by LV; deleted characters keep an id but their
 *   content is never shipped, and a loaded doc never had it.
 *
 * Formats: snapshot.ts (encode: no replay on load, origins derived from document order) and
 * delta.ts (encodeSince: ops by id, in causal order), both read and written by bytes.ts.
 * Loading a snapshot into an empty doc (TextDoc.decode) checks it whole but builds nothing: the
 * doc shows the snapshot's visible text and version, and builds the tree, the op tables and the
 * content at the first edit, merge or encoding (text-doc.ts).
 *
 * Only the content knows it is text: the state is generic over what an element holds
 * (SeqState in text-state.ts) and the formats over how content is written (content.ts), so
 * src/crdt/list runs the same machinery with JSON items for elements.
 */
export { TextDoc } from './text-doc.js';
export type { TextChange } from './text-state.js';
