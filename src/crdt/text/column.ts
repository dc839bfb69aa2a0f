/**
 * A growable column of 32-bit integers: the op logs of the text CRDT are columns of these, four
 * bytes a field and no object per entry. `a` is valid up to `n`; it may be replaced on growth.
 */
export class Col {
  a: Int32Array;
  n = 0;

  constructor(capacity = 8) {
    this.a = new Int32Array(capacity);
  }

  push(v: number): void {
    if (this.n === this.a.length) this.grow(this.n + 1);
    this.a[this.n++] = v;
  }

  /** Takes `a` as the whole column (it holds exactly the values). */
  assign(a: Int32Array): void {
    this.a = a;
    this.n = a.length;
  }

  /** The last value (the column must not be empty). */
  last(): number {
    return this.a[this.n - 1] as number;
  }

  get(i: number): number {
    return this.a[i] as number;
  }

  grow(min: number): void {
    let size = Math.max(8, this.a.length + (this.a.length >> 1));
    while (size < min) size *= 2;
    const b = new Int32Array(size);
    b.set(this.a.subarray(0, this.n));
    this.a = b;
  }

  /** Index of the last entry <= v in a sorted column, or -1. */
  floor(v: number): number {
    const a = this.a;
    let lo = 0;
    let hi = this.n - 1;
    if (hi < 0 || (a[0] as number) > v) return -1;
    if ((a[hi] as number) <= v) return hi;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((a[mid] as number) <= v) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
