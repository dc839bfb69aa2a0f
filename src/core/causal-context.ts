/**
 * A causal context: the set of dots a replica has accounted for, kept compact as a version
 * vector (every counter up to `base` is in) plus exceptions (single dots above the base,
 * received out of order). Adding the missing dots folds exceptions back into the base, so a
 * replica that has caught up holds one number per replica.
 *
 *   replica a:  base=3, extra={5,6}   means {a:1, a:2, a:3, a:5, a:6}
 *
 * Invariants: every extra counter is > base + 1; extras are sorted and unique.
 */
import type { Decoder, Encoder } from './codec.js';
import type { Dot } from './dot.js';
import { DbError, ErrorCode } from '../shared/errors.js';

interface Entry {
  base: number;
  extra: number[];
}

export class CausalContext {
  private readonly entries = new Map<string, Entry>();

  static from(vv: Iterable<readonly [string, number]>): CausalContext {
    const cc = new CausalContext();
    for (const [r, n] of vv) if (n > 0) cc.entries.set(r, { base: n, extra: [] });
    return cc;
  }

  clone(): CausalContext {
    const cc = new CausalContext();
    for (const [r, e] of this.entries) cc.entries.set(r, { base: e.base, extra: [...e.extra] });
    return cc;
  }

  has(dot: Dot): boolean {
    const e = this.entries.get(dot.replica);
    if (e === undefined) return false;
    if (dot.counter <= e.base) return true;
    return binarySearch(e.extra, dot.counter) >= 0;
  }

  /** Adds one dot; returns true when it was not there before. */
  add(dot: Dot): boolean {
    if (dot.counter < 1) return false;
    let e = this.entries.get(dot.replica);
    if (e === undefined) {
      e = { base: 0, extra: [] };
      this.entries.set(dot.replica, e);
    }
    if (dot.counter <= e.base) return false;
    if (dot.counter === e.base + 1) {
      e.base++;
      let i = 0;
      while (i < e.extra.length && e.extra[i] === e.base + 1) {
        e.base++;
        i++;
      }
      if (i > 0) e.extra.splice(0, i);
      return true;
    }
    const at = binarySearch(e.extra, dot.counter);
    if (at >= 0) return false;
    e.extra.splice(-at - 1, 0, dot.counter);
    return true;
  }

  /** Adds every dot of `other`. */
  join(other: CausalContext): void {
    for (const [r, o] of other.entries) {
      const e = this.entries.get(r);
      if (e === undefined) {
        this.entries.set(r, { base: o.base, extra: [...o.extra] });
        continue;
      }
      if (o.base > e.base) {
        const old = e.extra;
        e.base = o.base;
        e.extra = [];
        // Re-adding in ascending order folds extras that became contiguous.
        for (const c of old) if (c > e.base) this.add({ replica: r, counter: c });
      }
      for (const c of o.extra) this.add({ replica: r, counter: c });
    }
  }

  /** True when every dot of `other` is in this context (conservative: may say false for equal sets held differently). */
  covers(other: CausalContext): boolean {
    for (const [r, o] of other.entries) {
      const e = this.entries.get(r);
      if (e === undefined) {
        if (o.base > 0 || o.extra.length > 0) return false;
        continue;
      }
      if (e.base < o.base) {
        for (let c = e.base + 1; c <= o.base; c++) if (!this.has({ replica: r, counter: c })) return false;
      }
      for (const c of o.extra) if (!this.has({ replica: r, counter: c })) return false;
    }
    return true;
  }

  /** The highest counter of each replica's contiguous prefix: a safe lower bound. */
  base(): Map<string, number> {
    const out = new Map<string, number>();
    for (const r of [...this.entries.keys()].sort()) {
      const e = this.entries.get(r) as Entry;
      if (e.base > 0) out.set(r, e.base);
    }
    return out;
  }

  /** The highest counter seen of `replica` (exceptions included). */
  max(replica: string): number {
    const e = this.entries.get(replica);
    if (e === undefined) return 0;
    return e.extra.length > 0 ? (e.extra[e.extra.length - 1] as number) : e.base;
  }

  replicas(): string[] {
    return [...this.entries.keys()].sort();
  }

  /** Number of dots held as exceptions: how far from compact this context is. */
  exceptionCount(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.extra.length;
    return n;
  }

  equals(other: CausalContext): boolean {
    const a = this.replicas().filter((r) => this.max(r) > 0);
    const b = other.replicas().filter((r) => other.max(r) > 0);
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) {
      const r = a[i] as string;
      if (r !== b[i]) return false;
      const x = this.entries.get(r) as Entry;
      const y = other.entries.get(r) as Entry;
      if (x.base !== y.base || x.extra.length !== y.extra.length) return false;
      for (let j = 0; j < x.extra.length; j++) if (x.extra[j] !== y.extra[j]) return false;
    }
    return true;
  }

  encode(enc: Encoder): void {
    const rs = this.replicas().filter((r) => this.max(r) > 0);
    enc.uint(rs.length);
    for (const r of rs) {
      const e = this.entries.get(r) as Entry;
      enc.string(r).uint(e.base).uint(e.extra.length);
      let prev = e.base;
      for (const c of e.extra) {
        enc.uint(c - prev);
        prev = c;
      }
    }
  }

  static decode(dec: Decoder): CausalContext {
    const cc = new CausalContext();
    const n = dec.uint();
    let prevReplica: string | undefined;
    for (let i = 0; i < n; i++) {
      const r = dec.string();
      if (prevReplica !== undefined && r <= prevReplica) {
        throw new DbError(ErrorCode.corrupt, 'causal context replicas not sorted');
      }
      prevReplica = r;
      const base = dec.uint();
      const count = dec.uint();
      if (count > 1_000_000) throw new DbError(ErrorCode.corrupt, 'causal context too large');
      const extra: number[] = [];
      let prev = base;
      for (let j = 0; j < count; j++) {
        const delta = dec.uint();
        // Extras are strictly above base + 1 and strictly increasing.
        if (delta < (j === 0 ? 2 : 1)) throw new DbError(ErrorCode.corrupt, 'causal context exceptions not canonical');
        prev += delta;
        if (!Number.isSafeInteger(prev)) throw new DbError(ErrorCode.corrupt, 'causal context counter overflow');
        extra.push(prev);
      }
      if (base === 0 && extra.length === 0) throw new DbError(ErrorCode.corrupt, 'empty causal context entry');
      cc.entries.set(r, { base, extra });
    }
    return cc;
  }

  toJSON(): Record<string, number | { base: number; extra: number[] }> {
    const out: Record<string, number | { base: number; extra: number[] }> = {};
    for (const r of this.replicas()) {
      const e = this.entries.get(r) as Entry;
      if (e.base === 0 && e.extra.length === 0) continue;
      out[r] = e.extra.length === 0 ? e.base : { base: e.base, extra: [...e.extra] };
    }
    return out;
  }
}

/** Index of `x` in the sorted array, or -(insertion point) - 1. */
function binarySearch(xs: readonly number[], x: number): number {
  let lo = 0;
  let hi = xs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const v = xs[mid] as number;
    if (v < x) lo = mid + 1;
    else if (v > x) hi = mid - 1;
    else return mid;
  }
  return -lo - 1;
}
