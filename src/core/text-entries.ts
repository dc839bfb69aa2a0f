/**
 * Text documents in the dot store (ADR 4). A text document's entries are its changes: each
 * coalesced local edit takes one dot and holds the text operations it made (a delta), and now
 * and then a change holds the whole text instead (a snapshot), which subsumes the deltas and
 * snapshots whose operations it contains.
 *
 *   delta     dot a:7, ops a[120, 135)           the operations replica a made in change a:7
 *   snapshot  dot b:9, version {a:135, b:40}     every operation up to those counts
 *
 * The join is not the register join (record.ts): a text change never replaces another, so a
 * context covering a dot whose entry is absent says nothing. It is the union of entries, keeping
 * the maximal ones: a delta drops when a snapshot's version holds its operations; a snapshot
 * drops when another's version is at least as large (the higher dot wins a tie). Subsumption is
 * transitive, so this is the join of a lattice (maximal elements of a grow-only set), and a
 * sender may ship only the entries a peer lacks.
 *
 * The payloads are src/crdt/text's bytes; core only reads the headers, so joins never decode
 * text. Layout of an entry's value:
 *   delta:    uint start, uint end, payload (the delta of ops [start, end) of the dot's replica)
 *   snapshot: version vector (ops held per replica), version vector (the document context it
 *             covers), payload (a text snapshot)
 */
import { Decoder, Encoder } from './codec.js';
import { compareDots } from './dot.js';
import type { Sibling } from './record.js';
import type { VersionVector } from './version-vector.js';
import { decodeVv, encodeVv, sortVv, vvDominates, vvEquals, vvMerge } from './version-vector.js';
import { DbError, ErrorCode } from '../shared/errors.js';

export interface TextDeltaInfo {
  readonly kind: 'delta';
  /** The dot's replica made operations [start, end) in this change. */
  readonly start: number;
  readonly end: number;
  readonly payload: Uint8Array;
}

export interface TextSnapshotInfo {
  readonly kind: 'snapshot';
  /** Operations held, per replica. */
  readonly version: VersionVector;
  /** The document context this snapshot accounts for (what a receiver of it alone has seen). */
  readonly cover: VersionVector;
  readonly payload: Uint8Array;
}

export type TextEntryInfo = TextDeltaInfo | TextSnapshotInfo;

const infos = new WeakMap<Sibling, TextEntryInfo>();

export function isTextEntry(s: Sibling): boolean {
  return s.type === 'text' || s.type === 'text-snapshot';
}

/** True when the state is a text document's (it holds text changes). */
export function isTextState(state: { readonly siblings: readonly Sibling[] }): boolean {
  for (const s of state.siblings) if (isTextEntry(s)) return true;
  return false;
}

export function encodeTextDelta(start: number, end: number, payload: Uint8Array): Uint8Array {
  return new Encoder(payload.length + 16).uint(start).uint(end).raw(payload).finish();
}

export function encodeTextSnapshot(version: VersionVector, cover: VersionVector, payload: Uint8Array): Uint8Array {
  const enc = new Encoder(payload.length + 64);
  encodeVv(enc, version);
  encodeVv(enc, cover);
  return enc.raw(payload).finish();
}

/** Parses an entry's header (cached per entry object). Throws DbError('corrupt'). */
export function textEntryInfo(s: Sibling): TextEntryInfo {
  const cached = infos.get(s);
  if (cached !== undefined) return cached;
  const value = s.value;
  if (value === null || !isTextEntry(s)) throw new DbError(ErrorCode.corrupt, 'not a text entry');
  const dec = new Decoder(value);
  let info: TextEntryInfo;
  if (s.type === 'text') {
    const start = dec.uint();
    const end = dec.uint();
    if (end <= start) throw new DbError(ErrorCode.corrupt, 'text change holds no operations');
    info = { kind: 'delta', start, end, payload: value.subarray(dec.offset) };
  } else {
    const version = decodeVv(dec);
    const cover = decodeVv(dec);
    if (!vvDominates(cover, new Map([[s.dot.replica, s.dot.counter]]))) {
      throw new DbError(ErrorCode.corrupt, 'text snapshot does not cover its own change');
    }
    info = { kind: 'snapshot', version, cover, payload: value.subarray(dec.offset) };
  }
  if (info.payload.length === 0) throw new DbError(ErrorCode.corrupt, 'text change without payload');
  infos.set(s, info);
  return info;
}

/** Whether `a` is subsumed by snapshot `b` (a different entry). */
function subsumedBy(a: Sibling, ai: TextEntryInfo, b: Sibling, bi: TextSnapshotInfo): boolean {
  if (ai.kind === 'delta') return (bi.version.get(a.dot.replica) ?? 0) >= ai.end;
  if (!vvDominates(bi.version, ai.version)) return false;
  return !vvEquals(bi.version, ai.version) || compareDots(b.dot, a.dot) > 0;
}

/** The maximal entries among `entries` (distinct dots, sorted by dot), as a new sorted array. */
export function maximalTextEntries(entries: readonly Sibling[]): Sibling[] {
  const snapshots: { s: Sibling; info: TextSnapshotInfo }[] = [];
  for (const s of entries) {
    const info = textEntryInfo(s);
    if (info.kind === 'snapshot') snapshots.push({ s, info });
  }
  if (snapshots.length === 0) return [...entries];
  return entries.filter((s) => {
    const info = textEntryInfo(s);
    for (const b of snapshots) if (b.s !== s && subsumedBy(s, info, b.s, b.info)) return false;
    return true;
  });
}

/**
 * The join of two text states' entries: the maximal entries of their union. Entries of other
 * kinds (a record write that raced the document's creation as text) are dropped: text wins,
 * identically everywhere.
 */
export function joinTextEntries(a: readonly Sibling[], b: readonly Sibling[]): Sibling[] {
  const byDot = new Map<string, Sibling>();
  for (const s of a) if (isTextEntry(s)) byDot.set(`${s.dot.counter}\u0000${s.dot.replica}`, s);
  for (const s of b) {
    if (!isTextEntry(s)) continue;
    const k = `${s.dot.counter}\u0000${s.dot.replica}`;
    if (!byDot.has(k)) byDot.set(k, s);
  }
  const all = [...byDot.values()].sort((x, y) => compareDots(x.dot, y.dot));
  return maximalTextEntries(all);
}

/**
 * The document context a set of text entries accounts for: their dots and the contexts their
 * snapshots cover. A sender shipping only some entries claims exactly this much.
 */
export function textEntriesContext(entries: readonly Sibling[]): Map<string, number> {
  let out = new Map<string, number>();
  for (const s of entries) {
    if ((out.get(s.dot.replica) ?? 0) < s.dot.counter) out.set(s.dot.replica, s.dot.counter);
    const info = textEntryInfo(s);
    if (info.kind === 'snapshot') out = vvMerge(out, info.cover);
  }
  return sortVv(out);
}
