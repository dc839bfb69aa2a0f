import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dbErrorOf } from '../../test/support/errors.js';
import { ErrorCode } from '../shared/errors.js';
import type { Hlc } from './hlc.js';
import { DEFAULT_MAX_SKEW_MS, HLC_ZERO, compareHlc, hlcToIso, maxHlc, observe, tick } from './hlc.js';

const hlcArb: fc.Arbitrary<Hlc> = fc.record({
  ms: fc.integer({ min: 0, max: 2_000_000_000_000 }),
  c: fc.integer({ min: 0, max: 1000 }),
});
const wallArb = fc.integer({ min: 0, max: 2_000_000_000_000 });

describe('tick', () => {
  it('takes the wall clock when it is ahead, with a zero counter', () => {
    expect(tick({ ms: 100, c: 7 }, 150)).toEqual({ ms: 150, c: 0 });
    expect(tick(HLC_ZERO, 1)).toEqual({ ms: 1, c: 0 });
  });

  it('bumps the counter when the wall clock stands still or goes backwards', () => {
    expect(tick({ ms: 100, c: 7 }, 100)).toEqual({ ms: 100, c: 8 });
    expect(tick({ ms: 100, c: 7 }, 40)).toEqual({ ms: 100, c: 8 });
  });

  it('ignores fractions of a millisecond', () => {
    expect(tick(HLC_ZERO, 12.9)).toEqual({ ms: 12, c: 0 });
    expect(tick({ ms: 12, c: 0 }, 12.9)).toEqual({ ms: 12, c: 1 });
  });

  it('is strictly increasing whatever the wall clock does, backwards jumps included', () => {
    fc.assert(
      fc.property(
        hlcArb,
        fc.array(fc.oneof(wallArb, fc.integer({ min: -1000, max: 1000 })), { minLength: 1, maxLength: 100 }),
        (start, walls) => {
          let last = start;
          for (const w of walls) {
            const next = tick(last, w);
            expect(compareHlc(next, last)).toBeGreaterThan(0);
            expect(next.ms).toBe(Math.max(last.ms, Math.floor(w)));
            last = next;
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('observe', () => {
  it('takes the larger of our clock and the remote one', () => {
    fc.assert(
      fc.property(hlcArb, hlcArb, wallArb, (last, remote, now) => {
        fc.pre(remote.ms <= now + DEFAULT_MAX_SKEW_MS);
        const seen = observe(last, remote, now, DEFAULT_MAX_SKEW_MS);
        expect(seen).toEqual(compareHlc(last, remote) >= 0 ? last : remote);
        expect(compareHlc(seen, last)).toBeGreaterThanOrEqual(0);
        expect(compareHlc(seen, remote)).toBeGreaterThanOrEqual(0);
        expect(seen).toEqual(maxHlc(last, remote));
      }),
      { numRuns: 1000 },
    );
  });

  it('the next tick after an observation is later than the remote timestamp, even with a slow wall clock', () => {
    fc.assert(
      fc.property(hlcArb, hlcArb, wallArb, fc.integer({ min: -5000, max: 5000 }), (last, remote, now, drift) => {
        fc.pre(remote.ms <= now + DEFAULT_MAX_SKEW_MS);
        const next = tick(observe(last, remote, now, DEFAULT_MAX_SKEW_MS), now + drift);
        expect(compareHlc(next, remote)).toBeGreaterThan(0);
        expect(compareHlc(next, last)).toBeGreaterThan(0);
      }),
      { numRuns: 1000 },
    );
  });

  it('accepts a remote clock exactly at the skew bound', () => {
    const now = 1_700_000_000_000;
    for (const bound of [0, 1, 1000, DEFAULT_MAX_SKEW_MS]) {
      expect(observe(HLC_ZERO, { ms: now + bound, c: 3 }, now, bound)).toEqual({ ms: now + bound, c: 3 });
      expect(observe(HLC_ZERO, { ms: now + bound, c: Number.MAX_SAFE_INTEGER }, now, bound).ms).toBe(now + bound);
    }
  });

  it('refuses a remote clock one millisecond beyond the bound with clock_skew', () => {
    const now = 1_700_000_000_000;
    for (const bound of [0, 1, 1000, DEFAULT_MAX_SKEW_MS]) {
      const e = dbErrorOf(() => observe(HLC_ZERO, { ms: now + bound + 1, c: 0 }, now, bound));
      expect(e.code).toBe(ErrorCode.clockSkew);
      expect(e.details).toEqual({ remoteMs: now + bound + 1, nowMs: now, maxSkewMs: bound });
    }
  });

  it('refuses anything beyond the bound, whatever our own clock says, and accepts anything within it', () => {
    fc.assert(
      fc.property(
        hlcArb,
        wallArb,
        fc.integer({ min: 0, max: 600_000 }),
        fc.integer({ min: -1_000_000, max: 1_000_000 }),
        (last, now, bound, offset) => {
          const remote = { ms: Math.max(0, now + bound + offset), c: 0 };
          if (remote.ms > now + bound) {
            expect(dbErrorOf(() => observe(last, remote, now, bound)).code).toBe(ErrorCode.clockSkew);
          } else {
            expect(observe(last, remote, now, bound)).toEqual(maxHlc(last, remote));
          }
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('a remote clock behind ours is always accepted, however far behind', () => {
    expect(observe({ ms: 5000, c: 2 }, { ms: 0, c: 0 }, 5000, 0)).toEqual({ ms: 5000, c: 2 });
  });
});

describe('ordering and display', () => {
  it('compareHlc orders by milliseconds, then by counter', () => {
    fc.assert(
      fc.property(hlcArb, hlcArb, (a, b) => {
        const expected = a.ms !== b.ms ? Math.sign(a.ms - b.ms) : Math.sign(a.c - b.c);
        expect(Math.sign(compareHlc(a, b))).toBe(expected);
        expect(Math.sign(compareHlc(b, a))).toBe(0 - expected);
      }),
    );
  });

  it('maxHlc returns one of its arguments, the larger', () => {
    fc.assert(
      fc.property(hlcArb, hlcArb, (a, b) => {
        const m = maxHlc(a, b);
        expect(m === a || m === b).toBe(true);
        expect(compareHlc(m, a)).toBeGreaterThanOrEqual(0);
        expect(compareHlc(m, b)).toBeGreaterThanOrEqual(0);
      }),
    );
  });

  it('hlcToIso renders the physical part in UTC', () => {
    expect(hlcToIso({ ms: 0, c: 5 })).toBe('1970-01-01T00:00:00.000Z');
    expect(hlcToIso({ ms: 1_700_000_000_123, c: 0 })).toBe('2023-11-14T22:13:20.123Z');
  });
});
