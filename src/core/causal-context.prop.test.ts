import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dbErrorOf } from '../../test/support/errors.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { CausalContext } from './causal-context.js';
import { Decoder, Encoder, bytesEqual, toHex } from './codec.js';
import type { Dot } from './dot.js';

function expectCorrupt(fn: () => unknown): void {
  expect(dbErrorOf(fn).code).toBe(ErrorCode.corrupt);
}

const REPLICAS = ['a', 'b', 'c'] as const;
const PROBED = ['a', 'b', 'c', 'd'] as const;
const COUNTER_MAX = 24;

const key = (d: Dot): string => `${d.replica}:${d.counter}`;

function encode(cc: CausalContext): Uint8Array {
  const enc = new Encoder();
  cc.encode(enc);
  return enc.finish();
}

function decode(bytes: Uint8Array): CausalContext {
  const dec = new Decoder(bytes);
  const cc = CausalContext.decode(dec);
  dec.end();
  return cc;
}

/** The reference model: a plain set of dots. */
type Model = Set<string>;

function modelCounters(model: Model, replica: string): number[] {
  const out: number[] = [];
  for (const k of model) {
    const [r, c] = k.split(':') as [string, string];
    if (r === replica) out.push(Number(c));
  }
  return out.sort((x, y) => x - y);
}

function modelBase(model: Model, replica: string): number {
  let n = 0;
  while (model.has(`${replica}:${n + 1}`)) n++;
  return n;
}

/** Every observable of a context, as plain data. */
function observe(cc: CausalContext) {
  return {
    has: PROBED.map((r) => Array.from({ length: COUNTER_MAX + 2 }, (_, i) => cc.has({ replica: r, counter: i + 1 }))),
    max: PROBED.map((r) => cc.max(r)),
    base: [...cc.base()],
    exceptionCount: cc.exceptionCount(),
    replicas: cc.replicas(),
  };
}

/** What the model says each observable must be. */
function expected(model: Model): ReturnType<typeof observe> {
  const base: [string, number][] = [];
  let exceptionCount = 0;
  for (const r of PROBED) {
    const b = modelBase(model, r);
    if (b > 0) base.push([r, b]);
    exceptionCount += modelCounters(model, r).length - b;
  }
  return {
    has: PROBED.map((r) => Array.from({ length: COUNTER_MAX + 2 }, (_, i) => model.has(`${r}:${i + 1}`))),
    max: PROBED.map((r) => modelCounters(model, r).at(-1) ?? 0),
    base,
    exceptionCount,
    replicas: PROBED.filter((r) => modelCounters(model, r).length > 0),
  };
}

/** Checks every observable of `cc` against the model. */
function expectMatches(cc: CausalContext, model: Model): void {
  expect(observe(cc)).toEqual(expected(model));
}

type Op = { kind: 'add'; target: number; dot: Dot } | { kind: 'join'; target: number; source: number };

const dotArb: fc.Arbitrary<Dot> = fc.record({
  replica: fc.constantFrom(...REPLICAS),
  counter: fc.integer({ min: 1, max: COUNTER_MAX }),
});

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('add' as const), target: fc.nat({ max: 2 }), dot: dotArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('join' as const),
      target: fc.nat({ max: 2 }),
      source: fc.nat({ max: 2 }),
    }),
  },
);

/** Runs ops against three contexts and three models side by side. */
function run(ops: readonly Op[], check?: (cc: CausalContext, model: Model) => void): [CausalContext, Model][] {
  const ccs = [new CausalContext(), new CausalContext(), new CausalContext()];
  const models: Model[] = [new Set(), new Set(), new Set()];
  for (const op of ops) {
    const cc = ccs[op.target] as CausalContext;
    const model = models[op.target] as Model;
    if (op.kind === 'add') {
      const added = cc.add(op.dot);
      expect(added).toBe(!model.has(key(op.dot)));
      model.add(key(op.dot));
    } else {
      cc.join(ccs[op.source] as CausalContext);
      for (const k of models[op.source] as Model) model.add(k);
    }
    check?.(cc, model);
  }
  return ccs.map((cc, i) => [cc, models[i] as Model]);
}

/** A context holding a random set of dots, added in random order. */
const contextArb: fc.Arbitrary<CausalContext> = fc.array(dotArb, { maxLength: 40 }).map((dots) => {
  const cc = new CausalContext();
  for (const d of dots) cc.add(d);
  return cc;
});

function joined(...ccs: CausalContext[]): CausalContext {
  const out = new CausalContext();
  for (const cc of ccs) out.join(cc);
  return out;
}

describe('CausalContext against a set-of-dots model', () => {
  it('has, max, base, exceptionCount and replicas agree with the model after every add and join', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 80 }), (ops) => {
        run(ops, expectMatches);
      }),
      { numRuns: 300 },
    );
  });

  it('exceptions fold away once the gaps fill: a contiguous context has no exceptions', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...REPLICAS),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
        (replica, n, keys) => {
          // Add 1..n in a random order: the result is {replica: n}, with no exceptions left.
          const order = Array.from({ length: n }, (_, i) => i + 1).sort(
            (x, y) => (keys[x - 1] as number) - (keys[y - 1] as number) || x - y,
          );
          const cc = new CausalContext();
          for (const c of order) cc.add({ replica, counter: c });
          expect(cc.exceptionCount()).toBe(0);
          expect([...cc.base()]).toEqual([[replica, n]]);
          expect(cc.equals(CausalContext.from([[replica, n]]))).toBe(true);
          expect(bytesEqual(encode(cc), encode(CausalContext.from([[replica, n]])))).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a join that fills the gaps of another context folds their exceptions too', () => {
    const odd = new CausalContext();
    const even = new CausalContext();
    for (let c = 1; c <= 20; c++) (c % 2 === 1 ? odd : even).add({ replica: 'a', counter: c });
    expect(odd.exceptionCount()).toBe(9);
    expect(even.exceptionCount()).toBe(10);
    const both = odd.clone();
    both.join(even);
    expect(both.exceptionCount()).toBe(0);
    expect([...both.base()]).toEqual([['a', 20]]);
    even.join(odd);
    expect(even.equals(both)).toBe(true);
  });

  it('dots with a counter below 1 are ignored', () => {
    const cc = new CausalContext();
    expect(cc.add({ replica: 'a', counter: 0 })).toBe(false);
    expect(cc.add({ replica: 'a', counter: -3 })).toBe(false);
    expect(cc.replicas()).toEqual([]);
    expect(encode(cc)).toEqual(encode(new CausalContext()));
  });

  it('from() builds the contiguous context of a version vector, dropping zero entries', () => {
    const cc = CausalContext.from([
      ['b', 2],
      ['a', 3],
      ['c', 0],
    ]);
    const model: Model = new Set(['a:1', 'a:2', 'a:3', 'b:1', 'b:2']);
    expectMatches(cc, model);
    expect(cc.toJSON()).toEqual({ a: 3, b: 2 });
  });

  it('clone is independent of the original', () => {
    fc.assert(
      fc.property(contextArb, dotArb, (cc, d) => {
        const before = encode(cc);
        const copy = cc.clone();
        copy.add({ replica: d.replica, counter: d.counter + COUNTER_MAX });
        copy.join(CausalContext.from([['z', 5]]));
        expect(encode(cc)).toEqual(before);
      }),
    );
  });

  it('toJSON shows a base alone when there are no exceptions, and base plus extras otherwise', () => {
    const cc = CausalContext.from([['a', 2]]);
    cc.add({ replica: 'a', counter: 5 });
    cc.add({ replica: 'b', counter: 3 });
    cc.add({ replica: 'c', counter: 1 });
    expect(cc.toJSON()).toEqual({ a: { base: 2, extra: [5] }, b: { base: 0, extra: [3] }, c: 1 });
  });
});

describe('CausalContext encoding', () => {
  it('decode(encode(cc)) equals cc and re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 60 }), (ops) => {
        for (const [cc, model] of run(ops)) {
          const bytes = encode(cc);
          const back = decode(bytes);
          expect(back.equals(cc)).toBe(true);
          expect(cc.equals(back)).toBe(true);
          expect(encode(back)).toEqual(bytes);
          expectMatches(back, model);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('two contexts are equal exactly when they hold the same dots and their bytes are equal', () => {
    fc.assert(
      fc.property(contextArb, contextArb, (x, y) => {
        const sameDots = PROBED.every((r) => {
          for (let c = 1; c <= COUNTER_MAX; c++) {
            if (x.has({ replica: r, counter: c }) !== y.has({ replica: r, counter: c })) return false;
          }
          return true;
        });
        expect(x.equals(y)).toBe(sameDots);
        expect(bytesEqual(encode(x), encode(y))).toBe(sameDots);
      }),
      { numRuns: 500 },
    );
  });

  it('the same set of dots has one encoding, whatever the order it was built in', () => {
    fc.assert(
      fc.property(
        fc.array(dotArb, { maxLength: 40 }),
        fc.array(fc.nat(), { minLength: 40, maxLength: 40 }),
        (dots, keys) => {
          const shuffled = dots
            .map((d, i) => ({ d, k: keys[i] as number }))
            .sort((x, y) => x.k - y.k)
            .map((x) => x.d);
          const a = new CausalContext();
          for (const d of dots) a.add(d);
          const b = new CausalContext();
          for (const d of shuffled) b.add(d);
          expect(toHex(encode(a))).toBe(toHex(encode(b)));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('replicas not sorted are refused as corrupt', () => {
    const enc = new Encoder().uint(2);
    enc.string('b').uint(1).uint(0);
    enc.string('a').uint(1).uint(0);
    expectCorrupt(() => decode(enc.finish()));
  });

  it('a replica listed twice is refused as corrupt', () => {
    const enc = new Encoder().uint(2);
    enc.string('a').uint(1).uint(0);
    enc.string('a').uint(2).uint(0);
    expectCorrupt(() => decode(enc.finish()));
  });

  it('an exception right after the base (which should have been folded) is refused as corrupt', () => {
    // base 3, extra {4}: should have been encoded as base 4.
    const enc = new Encoder().uint(1);
    enc.string('a').uint(3).uint(1).uint(1);
    expectCorrupt(() => decode(enc.finish()));
    // base 0, extra {1}: should have been base 1.
    const zero = new Encoder().uint(1);
    zero.string('a').uint(0).uint(1).uint(1);
    expectCorrupt(() => decode(zero.finish()));
  });

  it('a repeated exception is refused as corrupt', () => {
    // base 1, extras {5, 5}.
    const enc = new Encoder().uint(1);
    enc.string('a').uint(1).uint(2).uint(4).uint(0);
    expectCorrupt(() => decode(enc.finish()));
  });

  it('an entry with no dots is refused as corrupt', () => {
    const enc = new Encoder().uint(1);
    enc.string('a').uint(0).uint(0);
    expectCorrupt(() => decode(enc.finish()));
  });

  it('a well-formed hand-written encoding with exceptions decodes to the dots it names', () => {
    // base 2, extras {5, 6, 9}: deltas 3, 1, 3.
    const enc = new Encoder().uint(1);
    enc.string('a').uint(2).uint(3).uint(3).uint(1).uint(3);
    const cc = decode(enc.finish());
    expectMatches(cc, new Set(['a:1', 'a:2', 'a:5', 'a:6', 'a:9']));
  });

  it('an exception counter beyond 2^53 - 1 is refused as corrupt', () => {
    const enc = new Encoder().uint(1);
    enc
      .string('a')
      .uint(Number.MAX_SAFE_INTEGER - 1)
      .uint(1)
      .uint(Number.MAX_SAFE_INTEGER);
    expectCorrupt(() => decode(enc.finish()));
  });

  it('every truncation of a valid encoding is refused as corrupt', () => {
    fc.assert(
      fc.property(contextArb, (cc) => {
        const bytes = encode(cc);
        for (let cut = 0; cut < bytes.length; cut++) expectCorrupt(() => decode(bytes.subarray(0, cut)));
      }),
      { numRuns: 200 },
    );
  });

  it('random bytes decode or fail with a DbError, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
        try {
          const cc = decode(b);
          // Whatever decodes is canonical: it re-encodes to the same bytes.
          expect(encode(cc)).toEqual(b);
        } catch (e) {
          if (!(e instanceof DbError)) throw e;
          expect(e.code).toBe(ErrorCode.corrupt);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('CausalContext join', () => {
  it('is commutative', () => {
    fc.assert(
      fc.property(contextArb, contextArb, (x, y) => {
        expect(toHex(encode(joined(x, y)))).toBe(toHex(encode(joined(y, x))));
      }),
      { numRuns: 500 },
    );
  });

  it('is associative', () => {
    fc.assert(
      fc.property(contextArb, contextArb, contextArb, (x, y, z) => {
        const left = joined(x, y);
        left.join(z);
        const right = x.clone();
        right.join(joined(y, z));
        expect(toHex(encode(left))).toBe(toHex(encode(right)));
      }),
      { numRuns: 500 },
    );
  });

  it('is idempotent, joining itself included', () => {
    fc.assert(
      fc.property(contextArb, (x) => {
        const before = toHex(encode(x));
        const twice = x.clone();
        twice.join(x);
        expect(toHex(encode(twice))).toBe(before);
        const self = x.clone();
        self.join(self);
        expect(toHex(encode(self))).toBe(before);
      }),
      { numRuns: 300 },
    );
  });

  it('does not change the context joined in', () => {
    fc.assert(
      fc.property(contextArb, contextArb, (x, y) => {
        const before = toHex(encode(y));
        const target = x.clone();
        target.join(y);
        target.add({ replica: 'a', counter: COUNTER_MAX + 1 });
        target.add({ replica: 'a', counter: COUNTER_MAX + 5 });
        expect(toHex(encode(y))).toBe(before);
      }),
    );
  });
});
