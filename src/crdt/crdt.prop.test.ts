/**
 * Laws of map, counter and set documents, checked on states a real system can reach: three
 * replicas apply random operations (src/crdt/ops.ts) and exchange whole states, current or
 * stale, duplicated and out of order, with skewed clocks. Arbitrary dot stores are not valid
 * inputs (a context is a version vector, so it only describes states its replicas made).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dbErrorOf } from '../../test/support/errors.js';
import {
  EMPTY_RECORD,
  Encoder,
  KIND_RECORD,
  Policy,
  compareBytes,
  decodeRecord,
  dotToString,
  encodeRecord,
  everyDotIn,
  fromUtf8,
  joinRecords,
  utf8,
} from '../core/index.js';
import type { JsonValue, PolicyAt, RecordState } from '../core/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { canonicalJson } from './canonical-json.js';
import { FieldType, Kind } from './kinds.js';
import type { CollectionConfig } from './kinds.js';
import { applyPatch, diffToOps } from './ops.js';
import { hasConflict, materialize } from './view.js';
import { TestReplica, hex, joinAll, jsonOf } from './test-support.js';

// ---------------------------------------------------------------------------------------------
// The simulation

type DocKind = typeof Kind.map | typeof Kind.counter | typeof Kind.set;

type Action =
  | { kind: 'op'; at: number; ops: unknown[]; clockStepMs: number; counterGap: number }
  /** `to` joins `from`'s state: its current one, or (stale) one it had earlier, maybe again. */
  | { kind: 'exchange'; from: number; to: number; stale: number | null };

interface Scenario {
  clockMs: number[];
  actions: Action[];
}

interface Run {
  replicas: TestReplica[];
  /** Every state reached, the empty one included. */
  reached: RecordState[];
}

const IDS = ['a', 'b', 'c'];

function simulate(kind: DocKind, sc: Scenario, policy: Policy | PolicyAt): Run {
  const replicas = IDS.map((id, i) => new TestReplica(id, sc.clockMs[i] ?? 0));
  const reached: RecordState[] = [EMPTY_RECORD];
  for (const action of sc.actions) {
    if (action.kind === 'exchange') {
      const from = replicas[action.from] as TestReplica;
      const to = replicas[action.to] as TestReplica;
      const sent =
        action.stale === null ? from.state : (from.history[action.stale % from.history.length] as RecordState);
      reached.push(to.receive(sent, policy));
      continue;
    }
    const rep = replicas[action.at] as TestReplica;
    rep.counter += action.counterGap; // this replica's writes to other documents
    rep.wallMs += action.clockStepMs;
    const before = hex(rep.state);
    try {
      reached.push(rep.patch(kind, action.ops));
    } catch (e) {
      // An operation that does not fit what the document holds (an increment of a text
      // field): refused, and the state is left as it was.
      if (!(e instanceof DbError) || e.code !== ErrorCode.invalidInput) throw e;
      expect(hex(rep.state)).toBe(before);
    }
  }
  return { replicas, reached };
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

const valueArb = fc.constantFrom<unknown>(1, 5, 'x', 'y', null, true, {}, { x: 1 }, { x: 2, y: 'z' }, [1, 2]);
const elementArb = fc.constantFrom<unknown>('p', 'q', 1, { k: 1 }, [0]);
const byArb = fc.integer({ min: -5, max: 5 });

// '/k~1~0' is the key "k/~": escapes must survive every step.
const mapOpArb: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('set'),
      // Mostly /a and below: concurrent writes there meet, as values, objects and removes.
      path: fc.constantFrom('/a', '/a', '/a', '/a/x', '/a/x', '/a/y', '/b', '/k~1~0', '/k~1~0/z'),
      value: valueArb,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('remove'),
      path: fc.constantFrom('/a', '/b', '/a/x', '/c', '/t', '/k~1~0'),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('increment'), path: fc.constant('/c'), by: byArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom('add-to-set', 'remove-from-set'),
      path: fc.constant('/t'),
      value: elementArb,
    }),
  },
  // Rare type mismatches: a value where a counter is, an increment of a set.
  { weight: 1, arbitrary: fc.record({ op: fc.constant('set'), path: fc.constantFrom('/c', '/t'), value: valueArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('increment'), path: fc.constantFrom('/t', '/a'), by: byArb }) },
);

const counterOpArb: fc.Arbitrary<unknown> = fc.record({
  op: fc.constant('increment'),
  path: fc.constant(''),
  by: byArb,
});

const setOpArb: fc.Arbitrary<unknown> = fc.record({
  op: fc.constantFrom('add-to-set', 'add-to-set', 'remove-from-set'),
  path: fc.constant(''),
  value: elementArb,
});

// One field and its child only, so that concurrent values, objects and removes meet often.
const narrowMapOpArb: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('set'),
      path: fc.constantFrom('/a', '/a/x'),
      value: fc.constantFrom<unknown>(1, 2, { x: 3 }, { y: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('remove'), path: fc.constantFrom('/a', '/a/x') }) },
);

interface Variant {
  name: string;
  kind: DocKind;
  op: fc.Arbitrary<unknown>;
}

const VARIANTS: readonly Variant[] = [
  { name: 'map documents', kind: Kind.map, op: mapOpArb },
  { name: 'map documents (writes to /a and /a/x only)', kind: Kind.map, op: narrowMapOpArb },
  { name: 'counter documents', kind: Kind.counter, op: counterOpArb },
  { name: 'set documents', kind: Kind.set, op: setOpArb },
];

/** A variant with one of its scenarios. */
const variantScenarioArb: fc.Arbitrary<[Variant, Scenario]> = fc
  .constantFrom(...VARIANTS)
  .chain((v) => fc.tuple(fc.constant(v), scenarioArb(v.op)));

function actionArb(op: fc.Arbitrary<unknown>): fc.Arbitrary<Action> {
  const replica = fc.nat({ max: IDS.length - 1 });
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('op' as const),
        at: replica,
        ops: fc.array(op, { minLength: 1, maxLength: 2 }),
        clockStepMs: fc.integer({ min: -3, max: 4 }),
        counterGap: fc.nat({ max: 2 }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('exchange' as const),
        from: replica,
        to: replica,
        stale: fc.option(fc.nat(), { nil: null, freq: 2 }),
      }),
    },
  );
}

// Small clock ranges on purpose: equal timestamps at different replicas exercise the tie-breaks.
function scenarioArb(op: fc.Arbitrary<unknown>): fc.Arbitrary<Scenario> {
  return fc.record({
    clockMs: fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 3, maxLength: 3 }),
    actions: fc.array(actionArb(op), { minLength: 1, maxLength: 30 }),
  });
}

const triplesArb = fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat()), { minLength: 1, maxLength: 40 });
const keysArb = fc.array(fc.nat(), { minLength: 1, maxLength: 40 });

/** The conflicts a state shows, as `path: dots`. */
function conflictsOf(s: RecordState, policy: Policy | PolicyAt): string[] {
  const view = materialize(s, undefined, policy);
  return view.conflicts.map((c) => `${c.path}: ${c.siblings.map((x) => dotToString(x.dot)).join(' ')}`);
}

const pick = (run: Run, i: number): RecordState => run.reached[i % run.reached.length] as RecordState;

/** `xs` reordered by random sort keys (ties keep their order). */
function shuffle<T>(xs: readonly T[], keys: readonly number[]): T[] {
  return xs
    .map((x, i) => ({ x, k: keys[i % Math.max(1, keys.length)] ?? 0, i }))
    .sort((p, q) => p.k - q.k || p.i - q.i)
    .map((p) => p.x);
}

const perPath: PolicyAt = (path) => (path === '/a' || path === '/a/x' || path === '/k~1~0' ? Policy.lww : Policy.keep);

const POLICIES: readonly { name: string; policy: Policy | PolicyAt }[] = [
  { name: 'keep', policy: Policy.keep },
  { name: 'lww', policy: Policy.lww },
  { name: 'lww at /a, /a/x and /k~1~0, keep elsewhere', policy: perPath },
];

/** Runs per property; CRDT_PROP_SCALE=10 (say) searches longer. */
const SCALE = Number(process.env.CRDT_PROP_SCALE ?? 1);
const runs = (n: number): number => Math.max(1, Math.round(n * SCALE));
const RUNS = runs(100);

// ---------------------------------------------------------------------------------------------
// Join laws and convergence, for every kind and policy

for (const { name: kindName, kind, op } of VARIANTS) {
  for (const { name, policy } of POLICIES) {
    describe(`${kindName}, joined under ${name}, on reachable states`, () => {
      const scenario = scenarioArb(op);
      const sim = (sc: Scenario): Run => simulate(kind, sc, policy);
      const join = (x: RecordState, y: RecordState): RecordState => joinRecords(x, y, policy);

      it('join is commutative, associative and idempotent, with the empty state as identity', () => {
        fc.assert(
          fc.property(scenario, triplesArb, (sc, triples) => {
            const run = sim(sc);
            for (const s of run.reached) {
              expect(hex(join(s, s))).toBe(hex(s));
              expect(hex(join(s, EMPTY_RECORD))).toBe(hex(s));
              expect(hex(join(EMPTY_RECORD, s))).toBe(hex(s));
            }
            for (const [i, j, k] of triples) {
              const [x, y, z] = [pick(run, i), pick(run, j), pick(run, k)];
              expect(hex(join(x, y))).toBe(hex(join(y, x)));
              expect(hex(join(join(x, y), z))).toBe(hex(join(x, join(y, z))));
              const xy = join(x, y);
              expect(hex(join(xy, x))).toBe(hex(xy));
            }
          }),
          { numRuns: RUNS },
        );
      });

      it('replicas that exchange everything, in any order and with duplicates, converge', () => {
        fc.assert(
          fc.property(scenario, keysArb, (sc, keys) => {
            const run = sim(sc);
            const finals = run.replicas.map((r) => r.state);
            const expected = joinAll(finals, policy);
            // Pairwise exchanges, two rounds of every ordered pair, each round shuffled.
            const states = [...finals];
            const pairs: [number, number][] = [];
            for (let i = 0; i < states.length; i++)
              for (let j = 0; j < states.length; j++) if (i !== j) pairs.push([i, j]);
            for (const round of [0, 1]) {
              for (const [from, to] of shuffle(
                pairs,
                keys.map((k) => k * (round + 1)),
              )) {
                states[to] = join(states[to] as RecordState, states[from] as RecordState);
              }
            }
            const view = JSON.stringify(jsonOf(expected, policy));
            const conflicts = JSON.stringify(conflictsOf(expected, policy));
            for (const s of states) {
              expect(hex(s)).toBe(hex(expected));
              expect(JSON.stringify(jsonOf(s, policy))).toBe(view);
              expect(JSON.stringify(conflictsOf(s, policy))).toBe(conflicts);
              expect(hasConflict(s, policy)).toBe(hasConflict(expected, policy));
            }
            // Every state ever reached, delivered in a random order, twice each.
            const all = [...run.reached, ...run.reached];
            for (const order of [shuffle(all, keys), shuffle(all, [...keys].reverse()), [...all].reverse()]) {
              expect(hex(joinAll(order, policy))).toBe(hex(expected));
            }
          }),
          { numRuns: RUNS },
        );
      });
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Views

describe('the view of reachable states', () => {
  it('shows a conflict exactly where hasConflict says, under every policy', () => {
    fc.assert(
      fc.property(variantScenarioArb, fc.constantFrom(...POLICIES), ([{ kind }, sc], { policy }) => {
        for (const s of simulate(kind, sc, policy).reached) {
          expect(hasConflict(s, policy)).toBe(materialize(s, undefined, policy).conflicts.length > 0);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

// A PUT of a map document, on any reachable state: reads back as written.

const CONFIG: CollectionConfig = {
  kind: Kind.map,
  policy: Policy.keep,
  fields: { '/c': { type: FieldType.counter }, '/t': { type: FieldType.set } },
};

const putArb = fc.record(
  {
    a: fc.constantFrom<unknown>(1, 'x', null, {}, { x: 1 }, { x: {} }, { y: [1] }, { x: 2, y: 'z' }),
    b: valueArb,
    'k/~': fc.constantFrom<unknown>(7, { z: 1 }),
    c: fc.integer({ min: -20, max: 20 }),
    t: fc.array(elementArb, { maxLength: 4 }),
  },
  { requiredKeys: [] },
);

/** What a map reads as after a PUT of `next`: sets sorted and without duplicates, empty ones absent. */
function expectedRead(next: Record<string, unknown>): unknown {
  const out: Record<string, unknown> = { ...next };
  if (Array.isArray(next.t)) {
    const texts = [...new Set(next.t.map((e) => canonicalJson(e as JsonValue)))].map(utf8).sort(compareBytes);
    if (texts.length === 0) delete out.t;
    else out.t = texts.map((b) => JSON.parse(fromUtf8(b)) as unknown);
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

describe('diffToOps', () => {
  it('a PUT reads back as written, resolving every conflict; writing back what was read changes nothing shown', () => {
    fc.assert(
      fc.property(scenarioArb(mapOpArb), fc.nat({ max: 2 }), putArb, (sc, at, next) => {
        const run = simulate(Kind.map, sc, Policy.keep);
        const r = run.replicas[at] as TestReplica;
        const apply = (value: unknown): void => {
          const view = materialize(r.state);
          r.state = applyPatch(r.state, view, diffToOps(view, value, CONFIG), r.id, r.mint);
        };
        // Writing back what was read: the same document, without conflicts.
        const shown = jsonOf(r.state);
        if (shown !== undefined && !Array.isArray(shown) && typeof shown === 'object' && shown !== null) {
          const typesFit =
            !('t' in shown && !Array.isArray(shown.t)) && !('c' in shown && !Number.isSafeInteger(shown.c));
          if (typesFit) {
            apply(shown);
            expect(jsonOf(r.state)).toEqual(shown);
            expect(hasConflict(r.state)).toBe(false);
          }
        }
        // A field holding a counter or a set takes only an integer or an array, unless declared.
        const root = materialize(r.state).root;
        const misfit = Object.entries(next).some(([k, v]) => {
          if (CONFIG.fields?.[`/${k}`] !== undefined) return false;
          const n = root?.type === 'object' ? root.fields.get(k) : undefined;
          return (n?.type === 'counter' && !Number.isSafeInteger(v)) || (n?.type === 'set' && !Array.isArray(v));
        });
        if (misfit) {
          expect(dbErrorOf(() => apply(next)).code).toBe(ErrorCode.invalidInput);
          return;
        }
        apply(next);
        expect(jsonOf(r.state)).toEqual(expectedRead(next));
        expect(hasConflict(r.state)).toBe(false);
        expect(diffToOps(materialize(r.state), next, CONFIG)).toEqual([]);
      }),
      { numRuns: runs(150) },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// The codec, on reachable states

/** What everyDotIn must answer, computed from the decoded state. */
function everyDotByHand(s: RecordState, holds: (replica: string, counter: number) => boolean): boolean {
  return s.siblings.every((x) => holds(x.dot.replica, x.dot.counter)) && [...s.context].every(([r, n]) => holds(r, n));
}

describe('the codec, on states with entries of every type', () => {
  it('round-trips every reachable state, and everyDotIn agrees with the decoded dots', () => {
    fc.assert(
      fc.property(
        variantScenarioArb,
        fc.array(fc.tuple(fc.constantFrom(...IDS), fc.nat({ max: 30 })), { maxLength: 6 }),
        ([{ kind }, sc], ceilings) => {
          const run = simulate(kind, sc, Policy.keep);
          // A "holds" that answers yes up to a per-replica ceiling, as a peer's context would.
          const ceiling = new Map(ceilings);
          const holds = (r: string, n: number): boolean => n <= (ceiling.get(r) ?? 0);
          for (const s of run.reached) {
            const bytes = encodeRecord(s);
            const back = decodeRecord(bytes, { checkJson: true });
            expect(hex(back)).toBe(hex(s));
            expect(back).toEqual(s);
            expect(everyDotIn(bytes, holds)).toBe(everyDotByHand(back, holds));
            expect(everyDotIn(bytes, () => true)).toBe(true);
          }
        },
      ),
      { numRuns: runs(150) },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Semantics under concurrency

describe('counter semantics', () => {
  it('concurrent increments and decrements at three replicas add up, in any merge order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 6 }), { minLength: 3, maxLength: 3 }),
        fc.constantFrom<Policy | PolicyAt>(Policy.keep, Policy.lww, perPath),
        fc.nat({ max: 5 }),
        (bys, policy, order) => {
          const replicas = IDS.map((id) => new TestReplica(id, 1));
          bys.forEach((list, i) => {
            for (const by of list)
              (replicas[i] as TestReplica).patch(Kind.counter, [{ op: 'increment', path: '', by }]);
          });
          const total = bys.flat().reduce((a, b) => a + b, 0);
          const states = replicas.map((r) => r.state);
          const rotated = [...states.slice(order % 3), ...states.slice(0, order % 3)];
          const merged = joinAll(order >= 3 ? rotated.reverse() : rotated, policy);
          const touched = bys.some((l) => l.length > 0);
          expect(jsonOf(merged)).toBe(touched ? total : undefined);
          // One entry per replica that incremented: each holds its own running total.
          expect(merged.siblings.length).toBe(bys.filter((l) => l.length > 0).length);
          // More increments after the merge keep adding up.
          const again = new TestReplica('a', 1);
          again.counter = 1000;
          again.state = merged;
          again.patch(Kind.counter, [{ op: 'increment', path: '', by: 7 }]);
          expect(jsonOf(joinRecords(again.state, merged, policy))).toBe(total + 7);
        },
      ),
      { numRuns: runs(200) },
    );
  });
});

describe('set semantics', () => {
  it('an add concurrent with a remove of the same element wins; a remove that saw every add wins', () => {
    fc.assert(
      fc.property(
        elementArb,
        fc.boolean(),
        fc.constantFrom<Policy | PolicyAt>(Policy.keep, Policy.lww),
        (e, twice, policy) => {
          const [a, b] = [new TestReplica('a'), new TestReplica('b')];
          a.patch(Kind.set, [{ op: 'add-to-set', path: '', value: e }]);
          b.receive(a.state, policy);
          // Concurrently: b removes e, a adds it again.
          b.patch(Kind.set, [{ op: 'remove-from-set', path: '', value: e }]);
          a.patch(Kind.set, [{ op: 'add-to-set', path: '', value: e }]);
          if (twice) a.patch(Kind.set, [{ op: 'add-to-set', path: '', value: e }]);
          expect(jsonOf(b.state)).toBeUndefined();
          const merged = joinRecords(a.state, b.state, policy);
          expect(jsonOf(merged)).toEqual([e]);
          expect(jsonOf(joinRecords(b.state, a.state, policy))).toEqual([e]);
          // Now a remove that has seen every add: the element is gone everywhere.
          b.receive(a.state, policy);
          b.patch(Kind.set, [{ op: 'remove-from-set', path: '', value: e }]);
          a.receive(b.state, policy);
          expect(jsonOf(a.state)).toBeUndefined();
          expect(hex(a.state)).toBe(hex(b.state));
        },
      ),
      { numRuns: runs(100) },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Decoding refuses non-canonical and malformed entries

interface RawEntry {
  replica: string;
  counter: number;
  flag: number;
  path?: string;
  value?: string;
}

function rawState(entries: RawEntry[], context: [string, number][]): Uint8Array {
  const enc = new Encoder(256);
  enc.byte(KIND_RECORD).uint(entries.length);
  for (const e of entries) {
    enc.string(e.replica).uint(e.counter).uint(1).uint(0).byte(e.flag);
    if (e.path !== undefined) enc.string(e.path);
    if (e.value !== undefined) enc.bytes(utf8(e.value));
  }
  enc.uint(context.length);
  for (const [r, n] of context) enc.string(r).uint(n);
  return enc.finish();
}

const corrupt = (bytes: Uint8Array): string => dbErrorOf(() => decodeRecord(bytes, { checkJson: true })).code;

describe('decoding entries', () => {
  it('accepts each canonical form', () => {
    const ok = rawState(
      [
        { replica: 'a', counter: 1, flag: 1, value: '1' },
        { replica: 'a', counter: 2, flag: 2, path: '/k~0~1', value: '"v"' },
        { replica: 'a', counter: 3, flag: 3, path: '/c', value: '[3,1]' },
        { replica: 'a', counter: 4, flag: 3, path: '', value: '[0,0]' },
        { replica: 'a', counter: 5, flag: 4, path: '/t', value: '{"k":1}' },
        { replica: 'a', counter: 6, flag: 4, path: '', value: '"e"' },
        { replica: 'a', counter: 7, flag: 0 },
      ],
      [['a', 7]],
    );
    const s = decodeRecord(ok, { checkJson: true });
    expect(s.siblings.map((x) => [x.path, x.type])).toEqual([
      [undefined, undefined],
      ['/k~0~1', undefined],
      ['/c', 'count'],
      [undefined, 'count'],
      ['/t', 'element'],
      [undefined, 'element'],
      [undefined, undefined],
    ]);
    expect(encodeRecord(s)).toEqual(ok);
  });

  it('refuses non-canonical and malformed entries', () => {
    const one = (e: Omit<RawEntry, 'replica' | 'counter'>): Uint8Array =>
      rawState([{ replica: 'a', counter: 1, ...e }], [['a', 1]]);
    // A root value written in the long form, with the path flag and ''.
    expect(corrupt(one({ flag: 2, path: '', value: '1' }))).toBe(ErrorCode.corrupt);
    // Counter entries must be [p,n] in canonical form.
    for (const text of ['[1]', '[1,2,3]', '[-1,0]', '[01,0]', '[1, 2]', '[1.5,0]', '{"p":1}', '"x"', '[1e3,0]']) {
      expect(corrupt(one({ flag: 3, path: '/c', value: text }))).toBe(ErrorCode.corrupt);
    }
    expect(corrupt(one({ flag: 3, path: '/c', value: '[99999999999999999,0]' }))).toBe(ErrorCode.corrupt);
    // Paths must be JSON pointers.
    for (const path of ['a', 'a/b', '/a~2', '/a~', '~0']) {
      expect(corrupt(one({ flag: 2, path, value: '1' }))).toBe(ErrorCode.corrupt);
      expect(corrupt(one({ flag: 3, path, value: '[1,0]' }))).toBe(ErrorCode.corrupt);
      expect(corrupt(one({ flag: 4, path, value: '1' }))).toBe(ErrorCode.corrupt);
    }
    // Values and elements must be JSON; flags past 4 do not exist.
    expect(corrupt(one({ flag: 2, path: '/a', value: '{' }))).toBe(ErrorCode.corrupt);
    expect(corrupt(one({ flag: 4, path: '', value: 'nope' }))).toBe(ErrorCode.corrupt);
    expect(corrupt(one({ flag: 5, path: '/a', value: '1' }))).toBe(ErrorCode.corrupt);
    // An entry its context does not cover.
    expect(corrupt(rawState([{ replica: 'a', counter: 2, flag: 3, path: '/c', value: '[1,0]' }], [['a', 1]]))).toBe(
      ErrorCode.corrupt,
    );
  });
});
