/**
 * Laws of the `record` kind, checked on states a real system can reach. Arbitrary random
 * states are not valid inputs: a document's context is a version vector, and `{a: 3}` only
 * means "saw a's writes 1 to 3" because a's writes to one document are ordered at a. So a
 * small reference simulation (replicas writing and merging, with skewed clocks) generates
 * the states, and the laws are checked on every state it reached along the way.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dbErrorOf } from '../../test/support/errors.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { Encoder, toHex, utf8 } from './codec.js';
import type { Dot } from './dot.js';
import { compareDots, dotToString } from './dot.js';
import type { Hlc } from './hlc.js';
import { HLC_ZERO, maxHlc, observe, tick } from './hlc.js';
import type { Policy, RecordState, Sibling, WriteBasis } from './record.js';
import {
  EMPTY_RECORD,
  KIND_RECORD,
  compareForWinner,
  compareLww,
  decodeRecord,
  encodeRecord,
  joinRecords,
  latestHlc,
  recordEquals,
  winner,
  writeRecord,
} from './record.js';
import type { VersionVector } from './version-vector.js';
import { vvCovers } from './version-vector.js';

// ---------------------------------------------------------------------------------------------
// Helpers

function expectCorrupt(fn: () => unknown): void {
  expect(dbErrorOf(fn).code).toBe(ErrorCode.corrupt);
}

/** Canonical bytes, as hex so a failure shows a readable difference. */
const hex = (s: RecordState): string => toHex(encodeRecord(s));

const dots = (s: RecordState): string[] => s.siblings.map((x) => dotToString(x.dot));

const json = (v: unknown): Uint8Array => utf8(JSON.stringify(v));

function joinAll(states: readonly RecordState[], policy: Policy): RecordState {
  return states.reduce<RecordState>((acc, s) => joinRecords(acc, s, policy), EMPTY_RECORD);
}

/** Every ordering of `xs` (at most 4 elements here, so at most 24). */
function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [[...xs]];
  const out: T[][] = [];
  xs.forEach((x, i) => {
    for (const rest of permutations([...xs.slice(0, i), ...xs.slice(i + 1)])) out.push([x, ...rest]);
  });
  return out;
}

/** `xs` reordered by random sort keys (ties keep their order). */
function shuffle<T>(xs: readonly T[], keys: readonly number[]): T[] {
  return xs
    .map((x, i) => ({ x, k: keys[i % Math.max(1, keys.length)] ?? 0, i }))
    .sort((p, q) => p.k - q.k || p.i - q.i)
    .map((p) => p.x);
}

/** The LWW order written out by hand: (hlc.ms, hlc.c, replica, counter), lexicographically. */
function lwwKey(s: Sibling): [number, number, string, number] {
  return [s.hlc.ms, s.hlc.c, s.dot.replica, s.dot.counter];
}

function laterByHand(x: Sibling, y: Sibling): Sibling {
  const a = lwwKey(x);
  const b = lwwKey(y);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return (a[i] as number | string) > (b[i] as number | string) ? x : y;
  }
  return x;
}

function sibling(replica: string, counter: number, ms: number, value: unknown): Sibling {
  return { dot: { replica, counter }, hlc: { ms, c: 0 }, value: value === null ? null : json(value) };
}

// ---------------------------------------------------------------------------------------------
// The reference simulation

const IDS = ['a', 'b', 'c', 'd'] as const;

type BasisChoice =
  /** The replica's current context: the usual write, or a client holding the latest version. */
  | { kind: 'current' }
  /** A context the replica's own state had earlier: a client holding an old version. */
  | { kind: 'stale'; pick: number }
  /** The dot of one current sibling: a client resolving one conflict. */
  | { kind: 'sibling'; pick: number }
  /** A context another replica's state had: a version read at another leader. */
  | { kind: 'foreign'; from: number; pick: number };

type Action =
  | {
      kind: 'write';
      at: number;
      value: Uint8Array | null;
      basis: BasisChoice;
      clockStepMs: number;
      counterStep: number;
    }
  | { kind: 'merge'; from: number; to: number };

interface Scenario {
  replicaCount: number;
  clockMs: number[];
  actions: Action[];
}

interface SimReplica {
  id: string;
  state: RecordState;
  /** Every context this replica's state has had, oldest first. */
  contexts: VersionVector[];
  /** The last counter this replica used: dots are never reused. */
  counter: number;
  hlc: Hlc;
  /** This replica's wall clock: skewed, and it may step backwards. */
  wallMs: number;
}

interface WriteEvent {
  replica: string;
  sibling: Sibling;
  basis: WriteBasis;
  before: RecordState;
  after: RecordState;
  /** The dots (as strings) of every earlier write this write's basis covers. */
  superseded: Set<string>;
}

interface Run {
  replicas: SimReplica[];
  /** Every state reached, the empty one included, in order. */
  reached: RecordState[];
  writes: WriteEvent[];
}

interface Mode {
  policy: Policy;
  /** Whether writes may use a version read at another leader. */
  foreign: boolean;
}

function simulate(sc: Scenario, mode: Mode): Run {
  const n = sc.replicaCount;
  const replicas: SimReplica[] = IDS.slice(0, n).map((id, i) => ({
    id,
    state: EMPTY_RECORD,
    contexts: [EMPTY_RECORD.context],
    counter: 0,
    hlc: HLC_ZERO,
    wallMs: sc.clockMs[i] ?? 0,
  }));
  const reached: RecordState[] = [EMPTY_RECORD];
  const writes: WriteEvent[] = [];
  for (const action of sc.actions) {
    if (action.kind === 'merge') {
      const from = replicas[action.from % n] as SimReplica;
      const to = replicas[action.to % n] as SimReplica;
      // A replica observes the clocks of what it receives (as replication does), so HLCs
      // follow causality even though wall clocks are skewed.
      for (const s of from.state.siblings) to.hlc = maxHlc(to.hlc, s.hlc);
      to.state = joinRecords(to.state, from.state, mode.policy);
      to.contexts.push(to.state.context);
      reached.push(to.state);
      continue;
    }
    const rep = replicas[action.at % n] as SimReplica;
    let basis: WriteBasis = { kind: 'context', context: rep.state.context };
    const choice = action.basis;
    if (choice.kind === 'stale' || (choice.kind === 'foreign' && !mode.foreign)) {
      basis = { kind: 'context', context: rep.contexts[choice.pick % rep.contexts.length] as VersionVector };
    } else if (choice.kind === 'foreign') {
      const other = replicas[choice.from % n] as SimReplica;
      basis = { kind: 'context', context: other.contexts[choice.pick % other.contexts.length] as VersionVector };
    } else if (choice.kind === 'sibling' && rep.state.siblings.length > 0) {
      const target = rep.state.siblings[choice.pick % rep.state.siblings.length] as Sibling;
      basis = { kind: 'dot', dot: target.dot };
    }
    rep.counter += action.counterStep; // gaps stand for this replica's writes to other documents
    rep.wallMs += action.clockStepMs;
    rep.hlc = tick(rep.hlc, rep.wallMs);
    const dot: Dot = { replica: rep.id, counter: rep.counter };
    const before = rep.state;
    const after = writeRecord(before, { dot, hlc: rep.hlc, value: action.value, basis }, mode.policy);
    const superseded = new Set<string>();
    for (const w of writes) {
      const d = w.sibling.dot;
      const covered = basis.kind === 'context' ? vvCovers(basis.context, d) : compareDots(basis.dot, d) === 0;
      if (covered) superseded.add(dotToString(d));
    }
    writes.push({
      replica: rep.id,
      sibling: { dot, hlc: rep.hlc, value: action.value },
      basis,
      before,
      after,
      superseded,
    });
    rep.state = after;
    rep.contexts.push(after.context);
    reached.push(after);
  }
  return { replicas, reached, writes };
}

const valueArb: fc.Arbitrary<Uint8Array | null> = fc.option(
  fc.oneof(fc.integer({ min: -3, max: 3 }), fc.string({ maxLength: 3 }), fc.constant({ nested: ['x', 1] })).map(json),
  { nil: null, freq: 4 },
);

const basisArb: fc.Arbitrary<BasisChoice> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'current' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('stale' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sibling' as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('foreign' as const), from: fc.nat({ max: 3 }), pick: fc.nat() }),
  },
);

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('write' as const),
      at: fc.nat({ max: 3 }),
      value: valueArb,
      basis: basisArb,
      clockStepMs: fc.integer({ min: -3, max: 4 }),
      counterStep: fc.integer({ min: 1, max: 3 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant('merge' as const), from: fc.nat({ max: 3 }), to: fc.nat({ max: 3 }) }),
  },
);

// Small clock ranges on purpose: equal HLCs across replicas exercise the tie-breaks.
const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  replicaCount: fc.integer({ min: 3, max: 4 }),
  clockMs: fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 4, maxLength: 4 }),
  actions: fc.array(actionArb, { minLength: 1, maxLength: 30 }),
});

const triplesArb = fc.array(fc.tuple(fc.nat(), fc.nat(), fc.nat()), { minLength: 1, maxLength: 12 });
const keysArb = fc.array(fc.nat(), { minLength: 1, maxLength: 40 });

const pick = (run: Run, i: number): RecordState => run.reached[i % run.reached.length] as RecordState;

// ---------------------------------------------------------------------------------------------
// Laws, for each policy

const MODES: readonly Mode[] = [
  // Under keep, writes may also carry a version read at another leader (the If-Match case).
  { policy: 'keep', foreign: true },
  // Under lww, only versions read at the writing leader: see the regression test below for why.
  { policy: 'lww', foreign: false },
];

for (const mode of MODES) {
  const { policy } = mode;
  const sim = (sc: Scenario): Run => simulate(sc, mode);

  describe(`record join under '${policy}', on reachable states`, () => {
    it('is commutative', () => {
      fc.assert(
        fc.property(scenarioArb, triplesArb, (sc, triples) => {
          const run = sim(sc);
          for (const [i, j] of triples) {
            const x = pick(run, i);
            const y = pick(run, j);
            expect(hex(joinRecords(x, y, policy))).toBe(hex(joinRecords(y, x, policy)));
          }
        }),
        { numRuns: 300 },
      );
    });

    it('is associative', () => {
      fc.assert(
        fc.property(scenarioArb, triplesArb, (sc, triples) => {
          const run = sim(sc);
          for (const [i, j, k] of triples) {
            const [x, y, z] = [pick(run, i), pick(run, j), pick(run, k)];
            const left = joinRecords(joinRecords(x, y, policy), z, policy);
            const right = joinRecords(x, joinRecords(y, z, policy), policy);
            expect(hex(left)).toBe(hex(right));
          }
        }),
        { numRuns: 300 },
      );
    });

    it('is idempotent, has the empty state as identity, and absorbs what it already holds', () => {
      fc.assert(
        fc.property(scenarioArb, triplesArb, (sc, triples) => {
          const run = sim(sc);
          for (const s of run.reached) {
            expect(hex(joinRecords(s, s, policy))).toBe(hex(s));
            expect(hex(joinRecords(s, EMPTY_RECORD, policy))).toBe(hex(s));
            expect(hex(joinRecords(EMPTY_RECORD, s, policy))).toBe(hex(s));
          }
          for (const [i, j] of triples) {
            const x = pick(run, i);
            const xy = joinRecords(x, pick(run, j), policy);
            expect(hex(joinRecords(x, xy, policy))).toBe(hex(xy));
            expect(hex(joinRecords(xy, xy, policy))).toBe(hex(xy));
          }
        }),
        { numRuns: 300 },
      );
    });

    it('only moves a replica up: joining any earlier state of the same replica changes nothing', () => {
      fc.assert(
        fc.property(scenarioArb, (sc) => {
          const run = sim(sc);
          for (const w of run.writes) {
            expect(hex(joinRecords(w.before, w.after, policy))).toBe(hex(w.after));
            expect(hex(joinRecords(w.after, w.before, policy))).toBe(hex(w.after));
          }
          // The join of everything ever reached is the join of the final states.
          const finals = run.replicas.map((r) => r.state);
          expect(hex(joinAll(run.reached, policy))).toBe(hex(joinAll(finals, policy)));
        }),
        { numRuns: 300 },
      );
    });

    it('merging all replicas in every order gives identical bytes and the same winner everywhere', () => {
      fc.assert(
        fc.property(scenarioArb, keysArb, (sc, keys) => {
          const run = sim(sc);
          const finals = run.replicas.map((r) => r.state);
          const expected = joinAll(finals, policy);
          const expectedWinner = winner(expected);
          for (const order of permutations(finals)) {
            const got = joinAll(order, policy);
            expect(hex(got)).toBe(hex(expected));
            expect(winner(got)?.dot).toEqual(expectedWinner?.dot);
          }
          // Every reached state, delivered in a random order, with duplicates.
          const shuffled = shuffle([...run.reached, ...run.reached], keys);
          expect(hex(joinAll(shuffled, policy))).toBe(hex(expected));
        }),
        { numRuns: 300 },
      );
    });

    it('replicas that exchange states pairwise in any order converge to identical bytes', () => {
      fc.assert(
        fc.property(scenarioArb, keysArb, (sc, keys) => {
          const run = sim(sc);
          const states = run.replicas.map((r) => r.state);
          const pairs: [number, number][] = [];
          for (let i = 0; i < states.length; i++)
            for (let j = 0; j < states.length; j++) if (i !== j) pairs.push([i, j]);
          // Two rounds of every ordered pair, each round in a random order: enough for all to see all.
          for (const round of [0, 1]) {
            for (const [from, to] of shuffle(
              pairs,
              keys.map((k) => k + round),
            )) {
              states[to] = joinRecords(states[to] as RecordState, states[from] as RecordState, policy);
            }
          }
          const first = hex(states[0] as RecordState);
          for (const s of states) expect(hex(s)).toBe(first);
          expect(first).toBe(
            hex(
              joinAll(
                run.replicas.map((r) => r.state),
                policy,
              ),
            ),
          );
        }),
        { numRuns: 300 },
      );
    });

    it('a write replaces exactly the siblings its basis covers, and what it replaced never comes back', () => {
      fc.assert(
        fc.property(scenarioArb, (sc) => {
          const run = sim(sc);
          const finals = run.replicas.map((r) => r.state);
          for (const w of run.writes) {
            const covered = (s: Sibling): boolean =>
              w.basis.kind === 'context' ? vvCovers(w.basis.context, s.dot) : compareDots(w.basis.dot, s.dot) === 0;
            const after = new Set(dots(w.after));
            for (const s of w.before.siblings) {
              if (covered(s)) expect(after.has(dotToString(s.dot))).toBe(false);
              else if (policy === 'keep') expect(after.has(dotToString(s.dot))).toBe(true);
            }
            expect(after.has(dotToString(w.sibling.dot))).toBe(true);
            // Merged with any replica's state, the replaced siblings stay gone.
            for (const f of finals) {
              for (const d of dots(joinRecords(w.after, f, policy))) expect(w.superseded.has(d)).toBe(false);
              for (const d of dots(joinRecords(f, w.after, policy))) expect(w.superseded.has(d)).toBe(false);
            }
          }
        }),
        { numRuns: 300 },
      );
    });

    it('the merge of everything holds exactly the writes no other write superseded (keep) or the latest write (lww)', () => {
      fc.assert(
        fc.property(scenarioArb, (sc) => {
          const run = sim(sc);
          const all = joinAll(
            run.replicas.map((r) => r.state),
            policy,
          );
          const superseded = new Set<string>();
          for (const w of run.writes) for (const d of w.superseded) superseded.add(d);
          let expected: Sibling[];
          if (policy === 'keep') {
            expected = run.writes.map((w) => w.sibling).filter((s) => !superseded.has(dotToString(s.dot)));
          } else {
            expected = run.writes.length === 0 ? [] : [run.writes.map((w) => w.sibling).reduce(laterByHand)];
          }
          expected.sort((x, y) => compareDots(x.dot, y.dot));
          expect(dots(all)).toEqual(expected.map((s) => dotToString(s.dot)));
          expect(hex({ siblings: expected, context: all.context })).toBe(hex(all));
          // The context holds every write.
          for (const w of run.writes) expect(vvCovers(all.context, w.sibling.dot)).toBe(true);
        }),
        { numRuns: 300 },
      );
    });

    it('two concurrent writes (neither saw the other) both survive under keep; under lww only the later one', () => {
      fc.assert(
        fc.property(
          scenarioArb,
          fc.nat(),
          fc.tuple(fc.constantFrom(...IDS), fc.constantFrom(...IDS)).filter(([p, q]) => p !== q),
          fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 2 })),
          fc.tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 2 })),
          fc.tuple(valueArb, valueArb),
          (sc, at, [x, y], [msX, cX], [msY, cY], [vX, vY]) => {
            const run = sim(sc);
            const base = pick(run, at);
            const fresh = (id: string): number =>
              (run.replicas.find((r) => r.id === id)?.counter ?? 0) + 1 + (base.context.get(id) ?? 0);
            // Both writers saw `base` and nothing else, so neither saw the other. The clocks are
            // arbitrary: concurrency is decided by contexts, never by clocks.
            const basis: WriteBasis = { kind: 'context', context: base.context };
            const sx: Sibling = { dot: { replica: x, counter: fresh(x) }, hlc: { ms: msX, c: cX }, value: vX };
            const sy: Sibling = { dot: { replica: y, counter: fresh(y) }, hlc: { ms: msY, c: cY }, value: vY };
            const wx = writeRecord(base, { ...sx, basis }, policy);
            const wy = writeRecord(base, { ...sy, basis }, policy);
            const merged = joinRecords(wx, wy, policy);
            expect(hex(joinRecords(wy, wx, policy))).toBe(hex(merged));
            const expected = policy === 'keep' ? [sx, sy] : [laterByHand(sx, sy)];
            expected.sort((p, q) => compareDots(p.dot, q.dot));
            expect(merged.siblings).toEqual(expected);
            expect(winner(merged)).toEqual(expected.reduce((p, q) => (compareForWinner(p, q) >= 0 ? p : q)));
          },
        ),
        { numRuns: 300 },
      );
    });

    it('winner() is the greatest sibling, a live one whenever there is one, whatever the sibling order', () => {
      fc.assert(
        fc.property(scenarioArb, keysArb, (sc, keys) => {
          const run = sim(sc);
          for (const s of run.reached) {
            const w = winner(s);
            if (s.siblings.length === 0) {
              expect(w).toBeUndefined();
              continue;
            }
            expect(w).toBeDefined();
            for (const other of s.siblings) expect(compareForWinner(w as Sibling, other)).toBeGreaterThanOrEqual(0);
            if (s.siblings.some((x) => x.value !== null)) expect(w?.value).not.toBeNull();
            expect(winner({ siblings: shuffle(s.siblings, keys), context: s.context })).toBe(w);
          }
        }),
        { numRuns: 300 },
      );
    });

    it('decodeRecord(encodeRecord(s)) equals s for every reached state', () => {
      fc.assert(
        fc.property(scenarioArb, (sc) => {
          const run = sim(sc);
          for (const s of run.reached) {
            const bytes = encodeRecord(s);
            const back = decodeRecord(bytes, { checkJson: true });
            expect(back).toEqual(s);
            expect(recordEquals(back, s)).toBe(true);
            expect(toHex(encodeRecord(back))).toBe(toHex(bytes));
          }
        }),
        { numRuns: 300 },
      );
    });

    it('every truncation and every extension of a reached state is refused as corrupt', () => {
      fc.assert(
        fc.property(scenarioArb, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 }), (sc, at, extra) => {
          const bytes = encodeRecord(pick(sim(sc), at));
          for (let cut = 0; cut < bytes.length; cut++) expectCorrupt(() => decodeRecord(bytes.subarray(0, cut)));
          const longer = new Uint8Array(bytes.length + extra.length);
          longer.set(bytes);
          longer.set(extra, bytes.length);
          expectCorrupt(() => decodeRecord(longer));
        }),
        { numRuns: 200 },
      );
    });

    it('a corrupted byte is refused as corrupt or decodes to a canonical state, never anything else', () => {
      fc.assert(
        fc.property(scenarioArb, fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 }), (sc, at, pos, xor) => {
          const bytes = encodeRecord(pick(sim(sc), at)).slice();
          const i = pos % bytes.length;
          bytes[i] = (bytes[i] as number) ^ xor;
          let decoded: RecordState;
          try {
            decoded = decodeRecord(bytes);
          } catch (e) {
            if (!(e instanceof DbError)) throw e;
            expect(e.code).toBe(ErrorCode.corrupt);
            return;
          }
          expect(toHex(encodeRecord(decoded))).toBe(toHex(bytes));
        }),
        { numRuns: 500 },
      );
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Examples: the laws above, one case at a time

describe('record writes and merges', () => {
  const v1 = json('v1');

  it('a write whose context covers a sibling replaces it, here and after a merge', () => {
    const a1 = writeRecord(EMPTY_RECORD, {
      dot: { replica: 'a', counter: 1 },
      hlc: { ms: 10, c: 0 },
      value: v1,
      basis: { kind: 'context', context: new Map() },
    });
    // b received a1, then overwrote it having seen it.
    const b1 = writeRecord(a1, {
      dot: { replica: 'b', counter: 1 },
      hlc: { ms: 5, c: 0 },
      value: json('v2'),
      basis: { kind: 'context', context: a1.context },
    });
    expect(dots(b1)).toEqual(['b:1']);
    // a, which still holds a1, receives b's state: a1 is gone, although its clock was later.
    for (const policy of ['keep', 'lww'] as const) {
      expect(dots(joinRecords(a1, b1, policy))).toEqual(['b:1']);
      expect(dots(joinRecords(b1, a1, policy))).toEqual(['b:1']);
    }
  });

  it('a write naming one sibling by its dot replaces that sibling only', () => {
    const state: RecordState = {
      siblings: [sibling('a', 1, 1, 'x'), sibling('b', 1, 1, 'y')],
      context: new Map([
        ['a', 1],
        ['b', 1],
      ]),
    };
    const next = writeRecord(state, {
      dot: { replica: 'a', counter: 2 },
      hlc: { ms: 2, c: 0 },
      value: json('z'),
      basis: { kind: 'dot', dot: { replica: 'b', counter: 1 } },
    });
    expect(dots(next)).toEqual(['a:1', 'a:2']);
    expect(dots(joinRecords(next, state))).toEqual(['a:1', 'a:2']);
  });

  it('two concurrent writes both survive a merge as siblings under keep', () => {
    const basis: WriteBasis = { kind: 'context', context: new Map() };
    const a = writeRecord(EMPTY_RECORD, { dot: { replica: 'a', counter: 1 }, hlc: { ms: 9, c: 0 }, value: v1, basis });
    const b = writeRecord(EMPTY_RECORD, { dot: { replica: 'b', counter: 1 }, hlc: { ms: 3, c: 0 }, value: v1, basis });
    expect(dots(joinRecords(a, b, 'keep'))).toEqual(['a:1', 'b:1']);
    expect(hex(joinRecords(b, a, 'keep'))).toBe(hex(joinRecords(a, b, 'keep')));
  });

  it('a delete concurrent with an update is kept as a conflict under keep', () => {
    const basis: WriteBasis = { kind: 'context', context: new Map() };
    const put = writeRecord(EMPTY_RECORD, {
      dot: { replica: 'a', counter: 1 },
      hlc: { ms: 1, c: 0 },
      value: v1,
      basis,
    });
    const del = writeRecord(EMPTY_RECORD, {
      dot: { replica: 'b', counter: 1 },
      hlc: { ms: 2, c: 0 },
      value: null,
      basis,
    });
    const merged = joinRecords(put, del);
    expect(merged.siblings.map((s) => s.value === null)).toEqual([false, true]);
    expect(winner(merged)?.dot).toEqual({ replica: 'a', counter: 1 });
  });

  it('under lww, of two concurrent writes only the one with the larger (hlc, replica, counter) survives', () => {
    const basis: WriteBasis = { kind: 'context', context: new Map() };
    const write = (replica: string, ms: number, c: number): RecordState =>
      writeRecord(EMPTY_RECORD, { dot: { replica, counter: 1 }, hlc: { ms, c }, value: v1, basis }, 'lww');
    // Later physical time wins.
    expect(dots(joinRecords(write('a', 5, 0), write('b', 4, 9), 'lww'))).toEqual(['a:1']);
    // Same milliseconds: the logical counter decides.
    expect(dots(joinRecords(write('a', 5, 1), write('b', 5, 2), 'lww'))).toEqual(['b:1']);
    // Same HLC: the larger replica id decides.
    expect(dots(joinRecords(write('b', 5, 0), write('a', 5, 0), 'lww'))).toEqual(['b:1']);
    // A delete takes part like any write under lww.
    const del = writeRecord(
      EMPTY_RECORD,
      { dot: { replica: 'c', counter: 1 }, hlc: { ms: 6, c: 0 }, value: null, basis },
      'lww',
    );
    expect(dots(joinRecords(write('a', 5, 0), del, 'lww'))).toEqual(['c:1']);
  });

  it('compareLww orders by hlc, then replica id, then counter', () => {
    const s = (replica: string, counter: number, ms: number, c: number): Sibling => ({
      dot: { replica, counter },
      hlc: { ms, c },
      value: null,
    });
    const ordered = [s('z', 9, 1, 0), s('a', 1, 1, 1), s('a', 1, 2, 0), s('a', 2, 2, 0), s('b', 1, 2, 0)];
    for (let i = 0; i < ordered.length; i++) {
      for (let j = 0; j < ordered.length; j++) {
        expect(Math.sign(compareLww(ordered[i] as Sibling, ordered[j] as Sibling))).toBe(Math.sign(i - j));
      }
    }
  });

  it('a live sibling beats a tombstone in winner() regardless of HLC', () => {
    fc.assert(
      fc.property(
        fc.tuple(fc.nat({ max: 1000 }), fc.nat({ max: 5 })),
        fc.tuple(fc.nat({ max: 1000 }), fc.nat({ max: 5 })),
        fc.boolean(),
        ([liveMs, liveC], [deadMs, deadC], liveFirst) => {
          const live: Sibling = { dot: { replica: 'a', counter: 1 }, hlc: { ms: liveMs, c: liveC }, value: v1 };
          const dead: Sibling = { dot: { replica: 'b', counter: 1 }, hlc: { ms: deadMs, c: deadC }, value: null };
          const state: RecordState = {
            siblings: liveFirst ? [live, dead] : [dead, live],
            context: new Map([
              ['a', 1],
              ['b', 1],
            ]),
          };
          expect(winner(state)).toBe(live);
          expect(compareForWinner(live, dead)).toBeGreaterThan(0);
          expect(compareForWinner(dead, live)).toBeLessThan(0);
        },
      ),
    );
    // With only tombstones, the latest one is shown (as deleted).
    const t1 = sibling('a', 1, 5, null);
    const t2 = sibling('b', 1, 7, null);
    expect(
      winner({
        siblings: [t1, t2],
        context: new Map([
          ['a', 1],
          ['b', 1],
        ]),
      }),
    ).toBe(t2);
    expect(winner(EMPTY_RECORD)).toBeUndefined();
  });

  it('under lww, a write based on a version read at another leader converges whatever the merge order', () => {
    // x is written at X with a fast clock; t at T, concurrently, with a middling clock.
    const empty: WriteBasis = { kind: 'context', context: new Map() };
    const x = writeRecord(
      EMPTY_RECORD,
      { dot: { replica: 'X', counter: 1 }, hlc: { ms: 100, c: 0 }, value: json('x'), basis: empty },
      'lww',
    );
    const t = writeRecord(
      EMPTY_RECORD,
      { dot: { replica: 'T', counter: 1 }, hlc: { ms: 50, c: 0 }, value: json('t'), basis: empty },
      'lww',
    );
    // A client reads x at X and writes w at Y with that version (If-Match). Y never received x,
    // and its wall clock says 10, but the version carries x's timestamp, which Y observes before
    // stamping w (as the replica does), so w is later than the write it replaces.
    const basis: WriteBasis = { kind: 'context', context: x.context, hlc: latestHlc(x) };
    const y = writeRecord(
      EMPTY_RECORD,
      {
        dot: { replica: 'Y', counter: 1 },
        hlc: tick(observe({ ms: 10, c: 0 }, basis.hlc as Hlc, 10, Infinity), 10),
        value: json('w'),
        basis,
      },
      'lww',
    );
    // Three replicas receive the three states in every possible order.
    const results = permutations([x, t, y]).map((order) => dots(joinAll(order, 'lww')).join(','));
    expect(results).toEqual(results.map(() => results[0]));
    // Whatever state they reach, merging any two of them must still show one write.
    const states = permutations([x, t, y]).map((order) => joinAll(order, 'lww'));
    for (const a of states) for (const b of states) expect(dots(joinRecords(a, b, 'lww'))).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------
// Decoding hostile bytes

describe('decodeRecord on malformed input', () => {
  /** A hand-written encoding; siblings are written in the order given, not sorted. */
  function encodeRaw(
    siblings: readonly { replica: string; counter: number; ms?: number; flag?: number; value?: Uint8Array }[],
    context: readonly [string, number][],
  ): Encoder {
    const enc = new Encoder().byte(KIND_RECORD).uint(siblings.length);
    for (const s of siblings) {
      enc
        .string(s.replica)
        .uint(s.counter)
        .uint(s.ms ?? 1)
        .uint(0);
      const flag = s.flag ?? (s.value === undefined ? 0 : 1);
      enc.byte(flag);
      if (flag === 1) enc.bytes(s.value ?? json(null));
    }
    enc.uint(context.length);
    for (const [r, n] of context) enc.string(r).uint(n);
    return enc;
  }

  const ctx: [string, number][] = [
    ['a', 2],
    ['b', 2],
  ];

  it('a hand-written well-formed state decodes', () => {
    const s = decodeRecord(
      encodeRaw(
        [
          { replica: 'a', counter: 1 },
          { replica: 'b', counter: 2, value: json(1) },
        ],
        ctx,
      ).finish(),
    );
    expect(dots(s)).toEqual(['a:1', 'b:2']);
    expect(s.siblings[0]?.value).toBeNull();
  });

  it('refuses siblings out of order, or the same sibling twice', () => {
    expectCorrupt(() =>
      decodeRecord(
        encodeRaw(
          [
            { replica: 'b', counter: 1 },
            { replica: 'a', counter: 1 },
          ],
          ctx,
        ).finish(),
      ),
    );
    expectCorrupt(() =>
      decodeRecord(
        encodeRaw(
          [
            { replica: 'a', counter: 2 },
            { replica: 'a', counter: 1 },
          ],
          ctx,
        ).finish(),
      ),
    );
    expectCorrupt(() =>
      decodeRecord(
        encodeRaw(
          [
            { replica: 'a', counter: 1 },
            { replica: 'a', counter: 1 },
          ],
          ctx,
        ).finish(),
      ),
    );
  });

  it('refuses a sibling its context does not cover', () => {
    expectCorrupt(() => decodeRecord(encodeRaw([{ replica: 'a', counter: 3 }], ctx).finish()));
    expectCorrupt(() => decodeRecord(encodeRaw([{ replica: 'c', counter: 1 }], ctx).finish()));
    expectCorrupt(() => decodeRecord(encodeRaw([{ replica: 'a', counter: 1 }], []).finish()));
  });

  it('refuses a context out of order or with a zero entry', () => {
    expectCorrupt(() =>
      decodeRecord(
        encodeRaw(
          [],
          [
            ['b', 1],
            ['a', 1],
          ],
        ).finish(),
      ),
    );
    expectCorrupt(() => decodeRecord(encodeRaw([], [['a', 0]]).finish()));
  });

  it('refuses a sibling counter of zero and a flag other than 0 or 1', () => {
    expectCorrupt(() => decodeRecord(encodeRaw([{ replica: 'a', counter: 0 }], ctx).finish()));
    expectCorrupt(() => decodeRecord(encodeRaw([{ replica: 'a', counter: 1, flag: 2 }], ctx).finish()));
    expectCorrupt(() => decodeRecord(encodeRaw([{ replica: 'a', counter: 1, flag: 255 }], ctx).finish()));
  });

  it('refuses every unknown kind byte', () => {
    const good = encodeRaw([{ replica: 'a', counter: 1, value: json('x') }], ctx).finish();
    expect(() => decodeRecord(good)).not.toThrow();
    for (let kind = 0; kind < 256; kind++) {
      if (kind === KIND_RECORD) continue;
      const bad = good.slice();
      bad[0] = kind;
      expectCorrupt(() => decodeRecord(bad));
    }
  });

  it('refuses trailing bytes', () => {
    const good = encodeRaw([{ replica: 'a', counter: 1 }], ctx).finish();
    for (const extra of [[0], [1], [0, 0, 0]]) {
      expectCorrupt(() => decodeRecord(Uint8Array.from([...good, ...extra])));
    }
    expectCorrupt(() => decodeRecord(Uint8Array.from([...encodeRecord(EMPTY_RECORD), 0])));
  });

  it('refuses a value that is not JSON when checkJson is set, and keeps it as bytes otherwise', () => {
    for (const text of ['', 'not json', '{', '{"a":1,}', "'x'", 'undefined', 'NaN', '[1] [2]']) {
      const bytes = encodeRaw([{ replica: 'a', counter: 1, value: utf8(text) }], ctx).finish();
      expectCorrupt(() => decodeRecord(bytes, { checkJson: true }));
      expect(decodeRecord(bytes).siblings[0]?.value).toEqual(utf8(text));
    }
    const badUtf8 = encodeRaw([{ replica: 'a', counter: 1, value: Uint8Array.from([0x22, 0xff, 0x22]) }], ctx).finish();
    expectCorrupt(() => decodeRecord(badUtf8, { checkJson: true }));
    for (const text of ['null', '0', '"x"', '{"a":[1,{}]}', ' [true] ']) {
      const bytes = encodeRaw([{ replica: 'a', counter: 1, value: utf8(text) }], ctx).finish();
      expect(decodeRecord(bytes, { checkJson: true }).siblings[0]?.value).toEqual(utf8(text));
    }
  });

  it('encodeRecord returns bytes of its own, which later encodings do not overwrite', () => {
    const big: RecordState = {
      siblings: [sibling('a', 1, 1, 'x'.repeat(10_000))],
      context: new Map([['a', 1]]),
    };
    const small = encodeRaw([{ replica: 'b', counter: 1 }], [['b', 1]]).finish();
    const first = encodeRecord(decodeRecord(small));
    const firstHex = toHex(first);
    const second = encodeRecord(big);
    encodeRecord(EMPTY_RECORD);
    expect(toHex(first)).toBe(firstHex);
    expect(hex(decodeRecord(second))).toBe(toHex(second));
    expect(first.buffer).not.toBe(second.buffer);
  });

  it('copies values out of the input buffer', () => {
    const bytes = encodeRaw([{ replica: 'a', counter: 1, value: json('x') }], ctx).finish();
    const s = decodeRecord(bytes);
    bytes.fill(0);
    expect(s.siblings[0]?.value).toEqual(json('x'));
  });

  it('random bytes are refused with a DbError or decode to a canonical state, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.boolean(), (body, asRecord) => {
        const bytes = asRecord ? Uint8Array.from([KIND_RECORD, ...body]) : body;
        let decoded: RecordState;
        try {
          decoded = decodeRecord(bytes, { checkJson: true });
        } catch (e) {
          if (!(e instanceof DbError)) throw e;
          expect(e.code).toBe(ErrorCode.corrupt);
          return;
        }
        expect(toHex(encodeRecord(decoded))).toBe(toHex(bytes));
      }),
      { numRuns: 2000 },
    );
  });
});
