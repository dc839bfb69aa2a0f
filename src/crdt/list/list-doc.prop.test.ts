import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JsonValue } from '../../core/index.js';
import { DbError, ErrorCode } from '../../shared/errors.js';
import { ListDoc, type ListChange } from './index.js';

/** Applies patches in order, as applyChanges documents them. */
function patch(items: readonly JsonValue[], changes: readonly ListChange[]): JsonValue[] {
  const out = [...items];
  for (const c of changes) {
    expect(c.pos).toBeGreaterThanOrEqual(0);
    expect(c.pos + c.deleted).toBeLessThanOrEqual(out.length);
    out.splice(c.pos, c.deleted, ...c.inserted);
  }
  return out;
}

/** Applies bytes and checks the returned patches turn the old items into the new ones. */
function apply(doc: ListDoc, bytes: Uint8Array): void {
  const before = doc.toArray();
  const changes = doc.applyChanges(bytes);
  expect(patch(before, changes)).toEqual(doc.toArray());
}

/** Items compared as JSON text: key order and -0 versus 0 count. */
const json = (d: ListDoc): string => JSON.stringify(d.toArray());

const sameVersion = (a: ListDoc, b: ListDoc): void => {
  expect([...a.version()].sort()).toEqual([...b.version()].sort());
};

// Small values make runs and equal items likely; a few nested ones keep the item codec honest.
const item: fc.Arbitrary<JsonValue> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom<JsonValue>('a', 'b', 'c', 1, 2, true, null) },
  { weight: 1, arbitrary: fc.constantFrom<JsonValue>(-0, 0.5, 1e21, '\u{1F600}', '\uD800', '') },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<JsonValue> },
);
const chunk = fc.array(item, { minLength: 1, maxLength: 6 });

type Action =
  | { kind: 'insert'; r: number; at: number; items: JsonValue[] }
  | { kind: 'delete'; r: number; at: number; len: number }
  | { kind: 'type'; r: number; at: number; n: number; backward: boolean }
  /** Sends from -> to: a delta against to's version now, or against an old version of to (stale), or the full snapshot. */
  | { kind: 'send'; from: number; to: number; how: 'delta' | 'stale' | 'partial' | 'snapshot' }
  /** Delivers (and maybe keeps, to deliver again) a message in flight. */
  | { kind: 'deliver'; pick: number; keep: boolean };

const replica = fc.integer({ min: 0, max: 2 });
const frac = fc.double({ min: 0, max: 1, noNaN: true });
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('insert' as const), r: replica, at: frac, items: chunk }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('delete' as const),
      r: replica,
      at: frac,
      len: fc.integer({ min: 1, max: 5 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('type' as const),
      r: replica,
      at: frac,
      n: fc.integer({ min: 1, max: 6 }),
      backward: fc.boolean(),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('send' as const),
      from: replica,
      to: replica,
      how: fc.constantFrom('delta' as const, 'stale' as const, 'partial' as const, 'snapshot' as const),
    }),
  },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('deliver' as const), pick: fc.nat(), keep: fc.boolean() }) },
);

const names = ['alice', 'bob', 'carol'];

/** LIST_PROP_SCALE=10 runs ten times as many cases (a longer soak than the default run). */
const scale = Number(process.env['LIST_PROP_SCALE'] ?? 1);
const runs = (n: number): number => Math.ceil(n * scale);

/** An index below n from a fraction in [0, 1]. */
const pick = (f: number, n: number): number => Math.min(n - 1, Math.floor(f * n));
const at = pick;

function run(actions: readonly Action[]): ListDoc[] {
  const docs = names.map((n) => new ListDoc(n));
  const history: Map<string, number>[][] = names.map(() => [new Map()]);
  const inFlight: { to: number; bytes: Uint8Array }[] = [];
  for (const a of actions) {
    switch (a.kind) {
      case 'insert': {
        const d = docs[a.r]!;
        d.insert(at(a.at, d.length + 1), a.items);
        break;
      }
      case 'delete': {
        const d = docs[a.r]!;
        if (d.length === 0) break;
        const pos = at(a.at, d.length);
        d.delete(pos, Math.min(a.len, d.length - pos));
        break;
      }
      case 'type': {
        const d = docs[a.r]!;
        let pos = at(a.at, d.length + 1);
        for (let i = 0; i < a.n; i++) {
          d.insert(pos, [{ r: a.r, i }]);
          if (!a.backward) pos++;
        }
        break;
      }
      case 'send': {
        const from = docs[a.from]!;
        const past = history[a.to]!;
        let bytes: Uint8Array;
        if (a.how === 'delta') bytes = from.encodeSince(docs[a.to]!.version());
        else if (a.how === 'stale') bytes = from.encodeSince(past[Math.floor(past.length / 2)]!);
        else if (a.how === 'partial') {
          // Only the sender's recent operations: the receiver may lack what they depend on.
          const own = history[a.from]!;
          bytes = from.encodeSince(own[own.length - 1]!);
        } else bytes = from.encode();
        inFlight.push({ to: a.to, bytes });
        break;
      }
      case 'deliver': {
        if (inFlight.length === 0) break;
        const i = a.pick % inFlight.length;
        const m = inFlight[i]!;
        if (!a.keep) inFlight.splice(i, 1);
        apply(docs[m.to]!, m.bytes);
        break;
      }
    }
    for (let r = 0; r < docs.length; r++) history[r]!.push(docs[r]!.version());
  }
  // Heal: everyone sends everyone what they lack until quiet.
  for (let round = 0; round < 2; round++) {
    for (const to of docs) for (const from of docs) if (from !== to) apply(to, from.encodeSince(to.version()));
  }
  return docs;
}

describe('ListDoc convergence', () => {
  it('replicas that exchanged everything, in any order, with duplicates and stale or partial deltas, agree', () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 60 * Math.min(scale, 3) }), (actions) => {
        const [a, b, c] = run(actions) as [ListDoc, ListDoc, ListDoc];
        expect(json(b)).toBe(json(a));
        expect(json(c)).toBe(json(a));
        sameVersion(a, b);
        sameVersion(a, c);
        for (const d of [a, b, c]) expect(d.pendingCount).toBe(0);
        for (let i = 0; i < a.length; i++) expect(c.get(i)).toEqual(a.get(i));
      }),
      { numRuns: runs(200) },
    );
  });

  it('large lists (deep trees, long scans) converge the same way', () => {
    fc.assert(
      fc.property(fc.array(action, { minLength: 2000, maxLength: 2000 }), (actions) => {
        const [a, b, c] = run(actions) as [ListDoc, ListDoc, ListDoc];
        expect(json(b)).toBe(json(a));
        expect(json(c)).toBe(json(a));
        sameVersion(a, c);
        expect(json(ListDoc.decode(c.encode(), 'x'))).toBe(json(a));
      }),
      { numRuns: runs(2), endOnFailure: true },
    );
  });

  it('decode(encode(doc)) keeps the items and the version, and merges on as the original would', () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 40 }), chunk, frac, (actions, extra, at) => {
        const [a, b] = run(actions) as [ListDoc, ListDoc, ListDoc];
        const copy = ListDoc.decode(a.encode(), 'dave');
        expect(json(copy)).toBe(json(a));
        sameVersion(copy, a);
        expect(copy.encode()).toEqual(a.encode());
        // Edits on the copy and on another replica, concurrently, merge everywhere alike.
        copy.insert(pick(at, copy.length + 1), extra);
        b.insert(pick(at, b.length + 1), extra);
        if (b.length > 0) b.delete(0, 1);
        apply(copy, b.encodeSince(copy.version()));
        apply(b, copy.encodeSince(b.version()));
        apply(a, copy.encode());
        expect(json(copy)).toBe(json(b));
        expect(json(a)).toBe(json(b));
        sameVersion(a, b);
        expect(json(ListDoc.decode(b.encode(), 'erin'))).toBe(json(b));
      }),
      { numRuns: runs(150) },
    );
  });

  it('applying the same bytes twice changes nothing the second time', () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 30 }), (actions) => {
        const [a] = run(actions) as [ListDoc, ListDoc, ListDoc];
        const other = new ListDoc('zed');
        other.insert(0, ['z', 'z']);
        const bytes = a.encodeSince(new Map([['nobody', 1]]));
        apply(other, bytes);
        const items = json(other);
        expect(other.applyChanges(bytes)).toEqual([]);
        expect(other.applyChanges(a.encode())).toEqual([]);
        expect(json(other)).toBe(items);
      }),
      { numRuns: runs(100) },
    );
  });
});

describe('ListDoc non-interleaving', () => {
  it('runs inserted concurrently at one position, item by item forward or backward or all at once, stay contiguous', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 8 }),
        fc.constantFrom('forward', 'backward', 'batch'),
        fc.constantFrom('forward', 'backward', 'batch'),
        fc.nat({ max: 4 }),
        fc.boolean(),
        (na, nb, howA, howB, at, deleteFirst) => {
          const a = new ListDoc('A');
          const b = new ListDoc('B');
          a.insert(0, ['x', 'x', 'x', 'x']);
          if (deleteFirst) a.delete(at > 0 ? at - 1 : 0, 1);
          b.applyChanges(a.encode());
          const pos = Math.min(at, a.length);
          const insertRun = (d: ListDoc, tag: string, n: number, how: string) => {
            if (how === 'batch')
              d.insert(
                pos,
                Array.from({ length: n }, () => tag),
              );
            else for (let i = 0; i < n; i++) d.insert(how === 'backward' ? pos : pos + i, [tag]);
          };
          insertRun(a, 'a', na, howA);
          insertRun(b, 'b', nb, howB);
          a.applyChanges(b.encodeSince(a.version()));
          b.applyChanges(a.encodeSince(b.version()));
          expect(b.toArray()).toEqual(a.toArray());
          const text = a.toArray().join('');
          expect(text).toMatch(new RegExp(`^x*(a{${na}}b{${nb}}|b{${nb}}a{${na}})x*$`));
        },
      ),
      { numRuns: runs(300) },
    );
  });
});

describe('ListDoc hostile bytes', () => {
  const sample = (): ListDoc => {
    const a = new ListDoc('alice');
    const b = new ListDoc('bob');
    a.insert(0, ['hello', { w: [1, 2.5, null] }, true, 'x']);
    b.applyChanges(a.encode());
    b.insert(2, [{ there: '\u{1F600}' }, []]);
    a.delete(0, 1);
    a.applyChanges(b.encodeSince(a.version()));
    return a;
  };

  /** Applies bytes: anything thrown must be DbError('corrupt'), and then the doc is unchanged; else it stays sound. */
  function corruptOrApplied(doc: ListDoc, bytes: Uint8Array): void {
    const before = doc.encode();
    try {
      apply(doc, bytes);
    } catch (e) {
      if (!(e instanceof DbError)) throw e;
      expect(e.code).toBe(ErrorCode.corrupt);
      expect(doc.encode()).toEqual(before);
      return;
    }
    expect(json(ListDoc.decode(doc.encode(), 'check'))).toBe(json(doc));
  }

  it('every prefix of a snapshot or a delta is rejected as corrupt and changes nothing', () => {
    const a = sample();
    const target = new ListDoc('carol');
    target.insert(0, ['a', 'b', 'c']);
    for (const bytes of [a.encode(), a.encodeSince(new Map([['alice', 3]]))]) {
      for (let n = 0; n < bytes.length; n++) {
        const before = target.encode();
        for (const doc of [target, new ListDoc('dave')]) {
          let err: unknown;
          try {
            doc.applyChanges(bytes.subarray(0, n));
          } catch (e) {
            err = e;
          }
          expect(err).toBeInstanceOf(DbError);
          expect((err as DbError).code).toBe(ErrorCode.corrupt);
        }
        expect(target.encode()).toEqual(before);
      }
    }
  });

  it('random bytes and flipped bytes are rejected as corrupt or applied, never anything else', () => {
    const a = sample();
    const snapshot = a.encode();
    const delta = a.encodeSince(new Map([['alice', 3]]));
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }),
        fc.constantFrom(snapshot, delta),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (random, base, at, xor) => {
          const target = new ListDoc('carol');
          target.insert(0, ['a', 'b', 'c']);
          corruptOrApplied(target, random);
          // The same with a list tag in front, so the bytes reach the format readers.
          corruptOrApplied(target, Uint8Array.of(0x73, ...random));
          corruptOrApplied(target, Uint8Array.of(0x64, ...random));
          const flipped = base.slice();
          const i = at % flipped.length;
          flipped[i] = (flipped[i] as number) ^ xor;
          corruptOrApplied(target, flipped);
          corruptOrApplied(new ListDoc('dave'), flipped);
        },
      ),
      { numRuns: runs(1000) },
    );
  });
});
