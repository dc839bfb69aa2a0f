/**
 * A version vector: for each replica, the highest counter seen. Used as the per-document
 * context of a record: because one replica's writes to one document are causally ordered
 * at that replica, knowing its write n implies knowing its earlier writes to the document.
 * Entries are kept sorted by replica id so the encoding is canonical.
 */
import type { Decoder, Encoder } from './codec.js';
import type { Dot } from './dot.js';
import { DbError, ErrorCode } from '../shared/errors.js';

export type VersionVector = ReadonlyMap<string, number>;

export function vvCovers(vv: VersionVector, dot: Dot): boolean {
  return dot.counter <= (vv.get(dot.replica) ?? 0);
}

/** True when every entry of `b` is covered by `a`. */
export function vvDominates(a: VersionVector, b: VersionVector): boolean {
  for (const [r, n] of b) if ((a.get(r) ?? 0) < n) return false;
  return true;
}

export function vvMerge(a: VersionVector, b: VersionVector): Map<string, number> {
  const out = new Map(a);
  for (const [r, n] of b) if ((out.get(r) ?? 0) < n) out.set(r, n);
  return sortVv(out);
}

export function vvWith(vv: VersionVector, dot: Dot): Map<string, number> {
  if (vvCovers(vv, dot)) return new Map(vv);
  const out = new Map(vv);
  out.set(dot.replica, dot.counter);
  return sortVv(out);
}

export function sortVv(vv: VersionVector): Map<string, number> {
  const keys = [...vv.keys()];
  let sorted = true;
  for (let i = 1; i < keys.length; i++) if ((keys[i - 1] as string) >= (keys[i] as string)) sorted = false;
  if (sorted) return vv instanceof Map ? (vv as Map<string, number>) : new Map(vv);
  keys.sort();
  return new Map(keys.map((k) => [k, vv.get(k) as number]));
}

export function vvEquals(a: VersionVector, b: VersionVector): boolean {
  if (a.size !== b.size) return false;
  for (const [r, n] of a) if (b.get(r) !== n) return false;
  return true;
}

export function encodeVv(enc: Encoder, vv: VersionVector): void {
  enc.uint(vv.size);
  for (const [r, n] of sortVv(vv)) enc.string(r).uint(n);
}

export function decodeVv(dec: Decoder): Map<string, number> {
  const n = dec.uint();
  const out = new Map<string, number>();
  let prev: string | undefined;
  for (let i = 0; i < n; i++) {
    const r = dec.string();
    const c = dec.uint();
    if (prev !== undefined && r <= prev) throw new DbError(ErrorCode.corrupt, 'version vector not sorted');
    if (c < 1) throw new DbError(ErrorCode.corrupt, 'version vector entry below 1');
    out.set(r, c);
    prev = r;
  }
  return out;
}

export function vvToObject(vv: VersionVector): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [r, n] of sortVv(vv)) out[r] = n;
  return out;
}
