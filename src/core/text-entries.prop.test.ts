/**
 * The text join (text-entries.ts) is the join of a lattice: the maximal entries of a union,
 * where a snapshot subsumes the deltas and smaller snapshots it contains. Checked on arbitrary
 * sets of entries, with commutativity, associativity and idempotence, and against the
 * definition (an entry survives exactly when nothing in the union subsumes it).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Sibling } from './record.js';
import { encodeRecord, decodeRecord, joinRecords } from './record.js';
import { encodeTextDelta, encodeTextSnapshot, joinTextEntries, textEntriesContext } from './text-entries.js';

const REPLICAS = ['a', 'b', 'c'];
const payload = new Uint8Array([1]);

const delta = fc
  .record({
    r: fc.constantFrom(...REPLICAS),
    counter: fc.integer({ min: 1, max: 8 }),
    end: fc.integer({ min: 1, max: 6 }),
  })
  .map(
    ({ r, counter, end }): Sibling => ({
      dot: { replica: r, counter },
      hlc: { ms: counter, c: 0 },
      value: encodeTextDelta(end - 1, end, payload),
      type: 'text',
    }),
  );

const snapshot = fc
  .record({
    r: fc.constantFrom(...REPLICAS),
    counter: fc.integer({ min: 1, max: 8 }),
    version: fc.tuple(fc.nat({ max: 6 }), fc.nat({ max: 6 }), fc.nat({ max: 6 })),
  })
  .map(({ r, counter, version }): Sibling => {
    const v = new Map<string, number>();
    version.forEach((n, i) => {
      if (n > 0) v.set(REPLICAS[i] as string, n);
    });
    return {
      dot: { replica: r, counter },
      hlc: { ms: counter, c: 0 },
      value: encodeTextSnapshot(v, new Map([[r, counter]]), payload),
      type: 'text-snapshot',
    };
  });

/** A set of entries with distinct dots (a dot names one change everywhere). */
const entries = fc.array(fc.oneof(delta, snapshot), { maxLength: 8 });

function canonical(list: readonly Sibling[]): string {
  return list.map((s) => `${s.dot.replica}:${s.dot.counter}:${s.type}:${[...(s.value ?? [])].join(',')}`).join('|');
}

/** One value per dot across all generated sets, as in a real run. */
function consistent(sets: Sibling[][]): Sibling[][] {
  const byDot = new Map<string, Sibling>();
  return sets.map((set) => {
    const out = new Map<string, Sibling>();
    for (const s of set) {
      const k = `${s.dot.replica}:${s.dot.counter}`;
      const chosen = byDot.get(k) ?? s;
      byDot.set(k, chosen);
      out.set(k, chosen);
    }
    return joinTextEntries([...out.values()], []);
  });
}

describe('text join', () => {
  it('is commutative, associative and idempotent', () => {
    fc.assert(
      fc.property(entries, entries, entries, (x0, y0, z0) => {
        const [x, y, z] = consistent([x0, y0, z0]) as [Sibling[], Sibling[], Sibling[]];
        expect(canonical(joinTextEntries(x, y))).toBe(canonical(joinTextEntries(y, x)));
        expect(canonical(joinTextEntries(joinTextEntries(x, y), z))).toBe(
          canonical(joinTextEntries(x, joinTextEntries(y, z))),
        );
        expect(canonical(joinTextEntries(x, x))).toBe(canonical(x));
      }),
      { numRuns: 500 },
    );
  });

  it('keeps exactly the entries nothing in the union subsumes', () => {
    fc.assert(
      fc.property(entries, entries, (x0, y0) => {
        const [x, y] = consistent([x0, y0]) as [Sibling[], Sibling[]];
        const joined = joinTextEntries(x, y);
        const union = joinTextEntries([...x, ...y], []);
        expect(canonical(joined)).toBe(canonical(union));
        // Joining what was dropped back in changes nothing: it is subsumed.
        expect(canonical(joinTextEntries(joined, [...x, ...y]))).toBe(canonical(joined));
      }),
      { numRuns: 300 },
    );
  });

  it('round-trips through the record codec, and joins as records do', () => {
    fc.assert(
      fc.property(entries, entries, (x0, y0) => {
        const [x, y] = consistent([x0, y0]) as [Sibling[], Sibling[]];
        if (x.length === 0 || y.length === 0) return;
        const sx = { siblings: x, context: textEntriesContext(x) };
        const sy = { siblings: y, context: textEntriesContext(y) };
        const j = joinRecords(sx, sy);
        const back = decodeRecord(encodeRecord(j));
        expect(canonical(back.siblings)).toBe(canonical(j.siblings));
        expect(canonical(joinRecords(sy, sx).siblings)).toBe(canonical(j.siblings));
      }),
      { numRuns: 300 },
    );
  });
});
