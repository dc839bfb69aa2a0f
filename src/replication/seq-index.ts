/**
 * Where in the feed a replica that has seen `vector` should start reading, so that
 * `changesSince(vector)` costs time in proportion to what it returns rather than to the store.
 *
 * Per origin replica, a list of sampled pairs (counter c, seq s): at the end of local seq s, the
 * highest counter of that origin this replica had seen was c. A document holding a dot of the
 * origin above c was therefore recorded after s, and rows only ever move to later seqs; so for a
 * vector that covers the origin up to v, reading after the latest pair with c <= v misses
 * nothing of that origin. The start is the least such seq over the origins the vector lacks.
 * Pairs are sampled (one per SAMPLE seqs per origin), which only makes the start earlier by at
 * most SAMPLE commits; they are stored with the metadata so a restarted replica keeps them.
 */
import { Decoder, Encoder } from '../core/index.js';
import type { CausalContext } from '../core/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';

const SAMPLE = 64;

interface Pairs {
  c: number[];
  s: number[];
}

export class SeqIndex {
  private readonly byOrigin = new Map<string, Pairs>();

  /**
   * Called for each commit with the context before it (`prev`, at the end of `prevSeq`) and
   * after it. Returns true when a pair was added (the index should be persisted).
   */
  note(prev: CausalContext, prevSeq: number, next: CausalContext): boolean {
    let added = false;
    for (const r of next.replicas()) {
      const before = prev.max(r);
      if (next.max(r) <= before) continue;
      let p = this.byOrigin.get(r);
      if (p === undefined) this.byOrigin.set(r, (p = { c: [], s: [] }));
      const lastS = p.s.length === 0 ? 0 : (p.s[p.s.length - 1] as number);
      if (prevSeq - lastS < SAMPLE) continue;
      p.c.push(before);
      p.s.push(prevSeq);
      added = true;
    }
    return added;
  }

  /**
   * The seq after which every document holding a dot of `context` not covered by `vector` lies
   * (`head` when the vector covers everything).
   */
  startFor(vector: ReadonlyMap<string, number>, context: CausalContext, head: number): number {
    let start = head;
    for (const r of context.replicas()) {
      const v = vector.get(r) ?? 0;
      if (context.max(r) <= v) continue;
      const p = this.byOrigin.get(r);
      let s = 0;
      if (p !== undefined) {
        // The latest pair with c <= v.
        let lo = 0;
        let hi = p.c.length - 1;
        while (lo <= hi) {
          const mid = (lo + hi) >> 1;
          if ((p.c[mid] as number) <= v) {
            s = p.s[mid] as number;
            lo = mid + 1;
          } else hi = mid - 1;
        }
      }
      if (s < start) start = s;
      if (start === 0) return 0;
    }
    return start;
  }

  encode(): Uint8Array {
    const enc = new Encoder(64);
    enc.uint(this.byOrigin.size);
    for (const [r, p] of [...this.byOrigin].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      enc.string(r).uint(p.c.length);
      let c = 0;
      let s = 0;
      for (let i = 0; i < p.c.length; i++) {
        enc.uint((p.c[i] as number) - c).uint((p.s[i] as number) - s);
        c = p.c[i] as number;
        s = p.s[i] as number;
      }
    }
    return enc.finish();
  }

  static decode(bytes: Uint8Array | undefined): SeqIndex {
    const index = new SeqIndex();
    if (bytes === undefined) return index;
    const dec = new Decoder(bytes);
    const n = dec.uint();
    for (let k = 0; k < n; k++) {
      const r = dec.string();
      const m = dec.uint();
      if (m > bytes.length) throw new DbError(ErrorCode.corrupt, 'seq index entry count exceeds its bytes');
      const p: Pairs = { c: [], s: [] };
      let c = 0;
      let s = 0;
      for (let i = 0; i < m; i++) {
        c += dec.uint();
        s += dec.uint();
        p.c.push(c);
        p.s.push(s);
      }
      index.byOrigin.set(r, p);
    }
    dec.end();
    return index;
  }
}
