/**
 * How a document row's bytes are laid out: one byte of local flags, then the replicated
 * state. The flags are local bookkeeping (they never enter the digest or the wire).
 *
 *   flag 1: the change that wrote this row touched several documents (an atomic batch);
 *           when this row moves to a later seq, the old seq must ship with the new one.
 *   flag 2: the document shows a conflict, as counted in the replica's `conflicts`. Kept
 *           here because whether a map shows one depends on settings that may change: the
 *           count is adjusted by what was counted, then recounted when settings change.
 */
import { decodeRecord, encodeRecordWithPrefix } from '../core/index.js';
import type { RecordState } from '../core/index.js';

export const FLAG_IN_GROUP = 1;
export const FLAG_CONFLICT = 2;

export interface StoredDoc {
  readonly flags: number;
  /** The encoded replicated state (what the digest hashes and the wire carries). */
  readonly bytes: Uint8Array;
  readonly state: RecordState;
}

export function unwrapStored(row: Uint8Array): StoredDoc {
  const bytes = row.subarray(1);
  return { flags: row[0] ?? 0, bytes, state: decodeRecord(bytes) };
}

export function wrapStored(flags: number, state: RecordState): { row: Uint8Array; bytes: Uint8Array } {
  const row = encodeRecordWithPrefix(1, state);
  row[0] = flags;
  return { row, bytes: row.subarray(1) };
}

/** Like wrapStored, for a state whose canonical encoding is already at hand. */
export function wrapEncoded(flags: number, encoded: Uint8Array): { row: Uint8Array; bytes: Uint8Array } {
  const row = new Uint8Array(encoded.length + 1);
  row[0] = flags;
  row.set(encoded, 1);
  return { row, bytes: row.subarray(1) };
}
