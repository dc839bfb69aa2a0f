import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DbError, ErrorCode } from '../../shared/errors.js';
import { TextDoc, type TextChange } from './index.js';

/** Applies patches in order, as applyChanges documents them. */
function patch(text: string, changes: readonly TextChange[]): string {
  for (const c of changes) {
    expect(c.pos).toBeGreaterThanOrEqual(0);
    expect(c.pos + c.deleted).toBeLessThanOrEqual(text.length);
    text = text.slice(0, c.pos) + c.inserted + text.slice(c.pos + c.deleted);
  }
  return text;
}

/** Applies bytes and checks the returned patches turn the old text into the new one. */
function apply(doc: TextDoc, bytes: Uint8Array): void {
  const before = doc.toString();
  const changes = doc.applyChanges(bytes);
  expect(patch(before, changes)).toBe(doc.toString());
}

const sameVersion = (a: TextDoc, b: TextDoc): void => {
  expect([...a.version()].sort()).toEqual([...b.version()].sort());
};

// Small alphabets make runs and same-position conflicts likely; one astral character and one
// lone surrogate keep the UTF-16 and WTF-8 paths honest.
const chunk = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: fc.constantFrom('a', 'b', 'c', ' '), minLength: 1, maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom('\u00e9', '\u{1F600}', '\uD800', 'xyz\u20ac') },
);

type Action =
  | { kind: 'insert'; r: number; at: number; text: string }
  | { kind: 'delete'; r: number; at: number; len: number }
  | { kind: 'type'; r: number; at: number; n: number; backward: boolean }
  /** Sends from -> to: a delta against to's version now, or against an old version of to (stale), or the full snapshot. */
  | { kind: 'send'; from: number; to: number; how: 'delta' | 'stale' | 'partial' | 'snapshot' }
  /** Delivers (and maybe keeps, to deliver again) a message in flight. */
  | { kind: 'deliver'; pick: number; keep: boolean };

const replica = fc.integer({ min: 0, max: 2 });
const frac = fc.double({ min: 0, max: 1, noNaN: true });
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('insert' as const), r: replica, at: frac, text: chunk }) },
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

/** TEXT_PROP_SCALE=10 runs ten times as many cases (a longer soak than the default run). */
const scale = Number(process.env['TEXT_PROP_SCALE'] ?? 1);
const runs = (n: number): number => Math.ceil(n * scale);

/** An index below n from a fraction in [0, 1]. */
const pick = (f: number, n: number): number => Math.min(n - 1, Math.floor(f * n));
const at = pick;

function run(actions: readonly Action[]): TextDoc[] {
  const docs = names.map((n) => new TextDoc(n));
  const history: Map<string, number>[][] = names.map(() => [new Map()]);
  const inFlight: { to: number; bytes: Uint8Array }[] = [];
  for (const a of actions) {
    switch (a.kind) {
      case 'insert': {
        const d = docs[a.r]!;
        d.insert(at(a.at, d.length + 1), a.text);
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
          d.insert(pos, String.fromCharCode(100 + i));
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

describe('TextDoc convergence', () => {
  it('replicas that exchanged everything, in any order, with duplicates and stale or partial deltas, agree', () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 60 * Math.min(scale, 3) }), (actions) => {
        const [a, b, c] = run(actions) as [TextDoc, TextDoc, TextDoc];
        expect(b.toString()).toBe(a.toString());
        expect(c.toString()).toBe(a.toString());
        sameVersion(a, b);
        sameVersion(a, c);
        for (const d of [a, b, c]) expect(d.pendingCount).toBe(0);
      }),
      { numRuns: runs(300) },
    );
  });

  it('large documents (deep trees, long scans) converge the same way', () => {
    fc.assert(
      fc.property(fc.array(action, { minLength: 2500, maxLength: 2500 }), (actions) => {
        const [a, b, c] = run(actions) as [TextDoc, TextDoc, TextDoc];
        expect(b.toString()).toBe(a.toString());
        expect(c.toString()).toBe(a.toString());
        sameVersion(a, c);
        expect(TextDoc.decode(c.encode(), 'x').toString()).toBe(a.toString());
      }),
      { numRuns: runs(3), endOnFailure: true },
    );
  });

  it('decode(encode(doc)) keeps the text and the version, and merges on as the original would', () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 40 }), chunk, frac, (actions, extra, at) => {
        const [a, b] = run(actions) as [TextDoc, TextDoc, TextDoc];
        const copy = TextDoc.decode(a.encode(), 'dave');
        expect(copy.toString()).toBe(a.toString());
        sameVersion(copy, a);
        expect(copy.encode()).toEqual(a.encode());
        // Edits on the copy and on another replica, concurrently, merge everywhere alike.
        copy.insert(pick(at, copy.length + 1), extra);
        b.insert(pick(at, b.length + 1), extra);
        if (b.length > 0) b.delete(0, 1);
        apply(copy, b.encodeSince(copy.version()));
        apply(b, copy.encodeSince(b.version()));
        apply(a, copy.encode());
        expect(copy.toString()).toBe(b.toString());
        expect(a.toString()).toBe(b.toString());
        sameVersion(a, b);
        const again = TextDoc.decode(b.encode(), 'erin');
        expect(again.toString()).toBe(b.toString());
      }),
      { numRuns: runs(200) },
    );
  });

  it('applying the same bytes twice changes nothing the second time', () => {
    fc.assert(
      fc.property(fc.array(action, { maxLength: 30 }), (actions) => {
        const [a] = run(actions) as [TextDoc, TextDoc, TextDoc];
        const other = new TextDoc('zed');
        other.insert(0, 'zz');
        const bytes = a.encodeSince(new Map([['nobody', 1]]));
        apply(other, bytes);
        const text = other.toString();
        expect(other.applyChanges(bytes)).toEqual([]);
        expect(other.applyChanges(a.encode())).toEqual([]);
        expect(other.toString()).toBe(text);
      }),
      { numRuns: runs(100) },
    );
  });
});

describe('TextDoc non-interleaving', () => {
  it('runs typed concurrently at one position, forward or backward, stay contiguous', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.integer({ min: 1, max: 8 }),
        fc.boolean(),
        fc.boolean(),
        fc.nat({ max: 4 }),
        fc.boolean(),
        (na, nb, backA, backB, at, deleteFirst) => {
          const a = new TextDoc('A');
          const b = new TextDoc('B');
          a.insert(0, 'xxxx');
          if (deleteFirst) a.delete(at > 0 ? at - 1 : 0, 1);
          b.applyChanges(a.encode());
          const pos = Math.min(at, a.length);
          const typeRun = (d: TextDoc, ch: string, n: number, back: boolean) => {
            for (let i = 0; i < n; i++) d.insert(back ? pos : pos + i, ch);
          };
          typeRun(a, 'a', na, backA);
          typeRun(b, 'b', nb, backB);
          a.applyChanges(b.encodeSince(a.version()));
          b.applyChanges(a.encodeSince(b.version()));
          const text = a.toString();
          expect(b.toString()).toBe(text);
          expect(text).toMatch(new RegExp(`^x*(a{${na}}b{${nb}}|b{${nb}}a{${na}})x*$`));
        },
      ),
      { numRuns: runs(300) },
    );
  });
});

describe('TextDoc hostile bytes', () => {
  const sample = (): TextDoc => {
    const a = new TextDoc('alice');
    const b = new TextDoc('bob');
    a.insert(0, 'hello world');
    b.applyChanges(a.encode());
    b.insert(5, ' there\u{1F600}');
    a.delete(0, 2);
    a.applyChanges(b.encodeSince(a.version()));
    return a;
  };

  /** Runs fn; anything thrown must be DbError('corrupt'), and then the doc is unchanged. */
  function corruptOrApplied(doc: TextDoc, bytes: Uint8Array): void {
    const before = doc.encode();
    try {
      doc.applyChanges(bytes);
    } catch (e) {
      if (!(e instanceof DbError)) throw e;
      expect(e.code).toBe(ErrorCode.corrupt);
      expect(doc.encode()).toEqual(before);
    }
  }

  it('every truncation of a snapshot or a delta is rejected as corrupt and changes nothing', () => {
    const a = sample();
    const target = new TextDoc('carol');
    target.insert(0, 'abc');
    for (const bytes of [a.encode(), a.encodeSince(new Map([['alice', 3]]))]) {
      for (let n = 0; n < bytes.length; n++) {
        const before = target.encode();
        let err: unknown;
        try {
          target.applyChanges(bytes.subarray(0, n));
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(DbError);
        expect((err as DbError).code).toBe(ErrorCode.corrupt);
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
          const target = new TextDoc('carol');
          target.insert(0, 'abc');
          corruptOrApplied(target, random);
          const flipped = base.slice();
          const i = at % flipped.length;
          flipped[i] = (flipped[i] as number) ^ xor;
          corruptOrApplied(target, flipped);
          corruptOrApplied(new TextDoc('dave'), flipped);
        },
      ),
      { numRuns: runs(2000) },
    );
  });
});
