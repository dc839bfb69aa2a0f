/**
 * Examples of map, counter and set operations: what users may write, what each operation does
 * to the dot store, how concurrent operations meet, and how a whole-document write becomes
 * operations. The laws behind them are checked in crdt.prop.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { dbErrorOf } from '../../test/support/errors.js';
import { DEFAULT_LIMITS, EMPTY_RECORD, Policy, compareHlc, fromUtf8, joinRecords } from '../core/index.js';
import type { JsonValue, PolicyAt, RecordState } from '../core/index.js';
import { ErrorCode } from '../shared/errors.js';
import { Kind } from './kinds.js';
import type { CollectionConfig } from './kinds.js';
import { applyPatch, diffToOps, preparePatch } from './ops.js';
import type { PreparedOp } from './ops.js';
import { hasConflict, materialize, toJson } from './view.js';
import { TestReplica, hex, jsonOf } from './test-support.js';

const MAP: CollectionConfig = { kind: Kind.map, policy: Policy.keep };

function invalid(fn: () => unknown): string {
  const e = dbErrorOf(fn);
  expect(e.code).toBe(ErrorCode.invalidInput);
  return e.message;
}

/** A replica whose map document already holds `ops`' result. */
function mapWith(id: string, ops: unknown[], wallMs = 1): TestReplica {
  const r = new TestReplica(id, wallMs);
  if (ops.length > 0) r.patch(Kind.map, ops);
  return r;
}

const set = (path: string, value: unknown): unknown => ({ op: 'set', path, value });

// ---------------------------------------------------------------------------------------------

describe('preparePatch refuses bad operations, naming the first bad one', () => {
  const ok = { op: 'set', path: '/ok', value: 1 };

  it('refuses what is not a list of operations', () => {
    for (const ops of [undefined, null, {}, 'set', []]) invalid(() => preparePatch(ops, Kind.map, DEFAULT_LIMITS));
    const limits = { ...DEFAULT_LIMITS, batchDocsMax: 2 };
    expect(invalid(() => preparePatch([ok, ok, ok], Kind.map, limits))).toMatch(/at most 2/);
  });

  const bad: [string, unknown, RegExp][] = [
    ['not an object', 'set', /must be an object/],
    ['null', null, /must be an object/],
    ['an array', [], /must be an object/],
    ['an unknown op', { op: 'replace', path: '/a', value: 1 }, /op must be one of/],
    ['no op', { path: '/a', value: 1 }, /op must be one of/],
    ['set without a value', { op: 'set', path: '/a' }, /needs a "value"/],
    ['add-to-set without a value', { op: 'add-to-set', path: '/t' }, /needs a "value"/],
    ['remove-from-set without a value', { op: 'remove-from-set', path: '/t' }, /needs a "value"/],
    ['a value that is not JSON', { op: 'set', path: '/a', value: Number.NaN }, /not JSON/],
    ['an undefined value', { op: 'set', path: '/a', value: undefined }, /not JSON/],
    ['an element that is not JSON', { op: 'add-to-set', path: '/t', value: new Date(0) }, /not JSON/],
    ['increment without by', { op: 'increment', path: '/c' }, /"by", an integer/],
    ['a fractional by', { op: 'increment', path: '/c', by: 1.5 }, /"by", an integer/],
    ['a by in a string', { op: 'increment', path: '/c', by: '1' }, /"by", an integer/],
    ['an unsafe by', { op: 'increment', path: '/c', by: 2 ** 53 }, /"by", an integer/],
    ['an infinite by', { op: 'increment', path: '/c', by: Infinity }, /"by", an integer/],
    ['a key the op does not take', { op: 'remove', path: '/a', value: 1 }, /unexpected "value"/],
    ['a value on increment', { op: 'increment', path: '/c', by: 1, value: 1 }, /unexpected "value"/],
    ['no path', { op: 'set', value: 1 }, /path must be a JSON pointer/],
    ['a path that is not a string', { op: 'set', path: 3, value: 1 }, /path must be a JSON pointer/],
    ['a pointer without the leading slash', { op: 'set', path: 'a/b', value: 1 }, /not a JSON pointer/],
    ['a bad escape', { op: 'set', path: '/a~2', value: 1 }, /not a JSON pointer/],
    ['a lone tilde', { op: 'remove', path: '/a~' }, /not a JSON pointer/],
    ['the whole map', { op: 'set', path: '', value: { a: 1 } }, /whole map/],
    ['a remove of the whole map', { op: 'remove', path: '' }, /whole map/],
  ];

  for (const [what, op, message] of bad) {
    it(`refuses ${what}`, () => {
      // Third in the list, after two good ones: the message names ops[2].
      const msg = invalid(() => preparePatch([ok, ok, op, op], Kind.map, DEFAULT_LIMITS));
      expect(msg).toMatch(/^ops\[2\]/);
      expect(msg).toMatch(message);
    });
  }

  it('refuses a path nested deeper than the limit', () => {
    const limits = { ...DEFAULT_LIMITS, valueDepthMax: 2 };
    expect(invalid(() => preparePatch([set('/a/b/c', 1)], Kind.map, limits))).toMatch(/^ops\[0\].*deeper than 2/);
    expect(preparePatch([set('/a/b', 1)], Kind.map, limits)).toHaveLength(1);
  });

  it('holds counter and set documents to their one operation at the root', () => {
    const counter: [unknown, RegExp][] = [
      [{ op: 'increment', path: '/x', by: 1 }, /counter document takes only/],
      [{ op: 'set', path: '', value: 1 }, /counter document takes only/],
      [{ op: 'add-to-set', path: '', value: 1 }, /counter document takes only/],
      [{ op: 'remove', path: '' }, /counter document takes only/],
    ];
    for (const [op, message] of counter) {
      const msg = invalid(() => preparePatch([{ op: 'increment', path: '', by: 1 }, op], Kind.counter, DEFAULT_LIMITS));
      expect(msg).toMatch(/^ops\[1\]/);
      expect(msg).toMatch(message);
    }
    const setDoc: unknown[] = [
      { op: 'increment', path: '', by: 1 },
      { op: 'add-to-set', path: '/t', value: 1 },
      { op: 'set', path: '', value: [1] },
      { op: 'remove', path: '' },
    ];
    for (const op of setDoc) {
      const msg = invalid(() => preparePatch([{ op: 'add-to-set', path: '', value: 1 }, op], Kind.set, DEFAULT_LIMITS));
      expect(msg).toMatch(/^ops\[1\]: a set document takes only/);
    }
  });

  it('refuses every patch of a record document', () => {
    for (const op of [set('/a', 1), { op: 'increment', path: '', by: 1 }, { op: 'add-to-set', path: '', value: 1 }]) {
      expect(invalid(() => preparePatch([op], Kind.record, DEFAULT_LIMITS))).toMatch(/^ops\[0\]: .*kind "record"/);
    }
  });

  it('accepts good operations, with set elements in canonical form', () => {
    const ops = preparePatch(
      [
        set('/a~1b/~0c', { z: 1, a: [true] }),
        { op: 'remove', path: '/x' },
        { op: 'increment', path: '/n', by: -3 },
        { op: 'add-to-set', path: '/t', value: { b: 2, a: 1 } },
      ],
      Kind.map,
      DEFAULT_LIMITS,
    );
    expect(ops[0]).toEqual({ op: 'set', path: '/a~1b/~0c', value: { z: 1, a: [true] } });
    expect(ops[2]).toEqual({ op: 'increment', path: '/n', by: -3 });
    const add = ops[3] as PreparedOp & { element: Uint8Array };
    expect(fromUtf8(add.element)).toBe('{"a":1,"b":2}');
  });
});

// ---------------------------------------------------------------------------------------------

describe('applyPatch refuses operations that do not fit the document, leaving it untouched', () => {
  /** Applies `ops` to a copy-checked state: it must throw invalid_input and change nothing. */
  function refuses(r: TestReplica, kind: Kind, ops: unknown[]): string {
    const state = r.state;
    const before = hex(state);
    const siblings = [...state.siblings];
    const context = new Map(state.context);
    const prepared = preparePatch(ops, kind, DEFAULT_LIMITS);
    const msg = invalid(() => applyPatch(state, materialize(state), prepared, r.id, r.mint));
    expect(hex(state)).toBe(before);
    expect(state.siblings).toEqual(siblings);
    expect(state.context).toEqual(context);
    return msg;
  }

  it('an increment of a path holding a string', () => {
    const r = mapWith('a', [set('/s', 'text')]);
    expect(refuses(r, Kind.map, [{ op: 'increment', path: '/s', by: 1 }])).toMatch(/\/s holds a value, not a counter/);
  });

  it('an increment of an object, and of a set', () => {
    const r = mapWith('a', [set('/o', { x: 1 }), { op: 'add-to-set', path: '/t', value: 1 }]);
    expect(refuses(r, Kind.map, [{ op: 'increment', path: '/o', by: 1 }])).toMatch(/holds an object/);
    expect(refuses(r, Kind.map, [{ op: 'increment', path: '/t', by: 1 }])).toMatch(/holds a set/);
  });

  it('an add-to-set or remove-from-set on a counter', () => {
    const r = mapWith('a', [{ op: 'increment', path: '/c', by: 2 }]);
    expect(refuses(r, Kind.map, [{ op: 'add-to-set', path: '/c', value: 1 }])).toMatch(/holds a counter, not a set/);
    expect(refuses(r, Kind.map, [{ op: 'remove-from-set', path: '/c', value: 1 }])).toMatch(/not a set/);
  });

  it('writing /a/b when /a holds 5, or a counter, or a set', () => {
    const r = mapWith('a', [
      set('/a', 5),
      { op: 'increment', path: '/c', by: 1 },
      { op: 'add-to-set', path: '/t', value: 1 },
    ]);
    expect(refuses(r, Kind.map, [set('/a/b', 1)])).toMatch(/\/a holds a value, not an object, so \/a\/b/);
    expect(refuses(r, Kind.map, [{ op: 'increment', path: '/a/b/c', by: 1 }])).toMatch(/\/a holds a value/);
    expect(refuses(r, Kind.map, [{ op: 'add-to-set', path: '/c/x', value: 1 }])).toMatch(/\/c holds a counter/);
    expect(refuses(r, Kind.map, [set('/t/x', 1)])).toMatch(/\/t holds a set/);
  });

  it('a patch whose later operation does not fit: the earlier ones are not applied either', () => {
    const r = mapWith('a', [set('/s', 'text')]);
    refuses(r, Kind.map, [set('/x', 1), { op: 'increment', path: '/s', by: 1 }]);
    // An operation that makes the next one not fit.
    refuses(r, Kind.map, [set('/n', 'now text'), { op: 'increment', path: '/n', by: 1 }]);
  });

  it('writing below a field holding an empty object makes the object of fields', () => {
    const r = mapWith('a', [set('/a', {})]);
    expect(jsonOf(r.state)).toEqual({ a: {} });
    r.patch(Kind.map, [set('/a/b', 1)]);
    expect(jsonOf(r.state)).toEqual({ a: { b: 1 } });
    expect(r.state.siblings).toHaveLength(1);
    expect(hasConflict(r.state)).toBe(false);
  });

  it('a set of a field holding a counter replaces the counter; a remove makes room for a new type', () => {
    const r = mapWith('a', [{ op: 'increment', path: '/c', by: 2 }]);
    r.patch(Kind.map, [set('/c', 'text')]);
    expect(jsonOf(r.state)).toEqual({ c: 'text' });
    r.patch(Kind.map, [
      { op: 'remove', path: '/c' },
      { op: 'add-to-set', path: '/c', value: 'e' },
    ]);
    expect(jsonOf(r.state)).toEqual({ c: ['e'] });
  });
});

// ---------------------------------------------------------------------------------------------

describe('what each operation does to the dot store', () => {
  it('a set expands a non-empty object into one entry per field, with escaped keys', () => {
    const r = mapWith('a', [set('/p', { 'x/y': 1, 'a~b': { c: [1, 2] }, e: {} })]);
    expect(r.state.siblings.map((s) => s.path).sort()).toEqual(['/p/a~0b/c', '/p/e', '/p/x~1y']);
    expect(jsonOf(r.state)).toEqual({ p: { 'a~b': { c: [1, 2] }, e: {}, 'x/y': 1 } });
  });

  it('a remove makes no entry but moves the context', () => {
    const r = mapWith('a', [set('/p', 1), set('/q', 2)]);
    const before = r.state;
    r.patch(Kind.map, [{ op: 'remove', path: '/p' }]);
    expect(r.state.siblings.map((s) => s.path)).toEqual(['/q']);
    expect(r.state.context.get('a')).toBe((before.context.get('a') as number) + 1);
    // A remove of a field that is not there still replicates (and changes nothing shown).
    r.patch(Kind.map, [{ op: 'remove', path: '/nothing' }]);
    expect(jsonOf(r.state)).toEqual({ q: 2 });
  });

  it("an increment replaces the replica's own total and keeps the others'", () => {
    const [a, b] = [new TestReplica('a'), new TestReplica('b')];
    a.patch(Kind.counter, [{ op: 'increment', path: '', by: 5 }]);
    a.patch(Kind.counter, [{ op: 'increment', path: '', by: -2 }]);
    b.patch(Kind.counter, [{ op: 'increment', path: '', by: 10 }]);
    a.receive(b.state, Policy.keep);
    a.patch(Kind.counter, [{ op: 'increment', path: '', by: 1 }]);
    expect(a.state.siblings.map((s) => [s.dot.replica, fromUtf8(s.value as Uint8Array), s.type])).toEqual([
      ['a', '[6,2]', 'count'],
      ['b', '[10,0]', 'count'],
    ]);
    expect(jsonOf(a.state)).toBe(14);
  });

  it('an increment that would overflow is refused', () => {
    const r = new TestReplica('a');
    r.patch(Kind.counter, [{ op: 'increment', path: '', by: Number.MAX_SAFE_INTEGER }]);
    expect(invalid(() => r.patch(Kind.counter, [{ op: 'increment', path: '', by: 1 }]))).toMatch(/overflow/);
    expect(jsonOf(r.state)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('set elements are one element per canonical text, shown sorted', () => {
    const r = new TestReplica('a');
    r.patch(Kind.set, [
      { op: 'add-to-set', path: '', value: { b: 1, a: 2 } },
      { op: 'add-to-set', path: '', value: { a: 2, b: 1 } },
      { op: 'add-to-set', path: '', value: 'z' },
      { op: 'add-to-set', path: '', value: 1 },
    ]);
    expect(r.state.siblings).toHaveLength(3);
    // Sorted by canonical text: '"z"' < '1' < '{'.
    expect(jsonOf(r.state)).toEqual(['z', 1, { a: 2, b: 1 }]);
    r.patch(Kind.set, [{ op: 'remove-from-set', path: '', value: { a: 2, b: 1 } }]);
    expect(jsonOf(r.state)).toEqual(['z', 1]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('concurrent operations', () => {
  /** a and b both start from `common`, then apply their own ops concurrently. */
  function concurrent(common: unknown[], opsA: unknown[], opsB: unknown[], clocks: [number, number] = [1, 2]) {
    const a = mapWith('a', common, clocks[0]);
    const b = new TestReplica('b', clocks[1]);
    b.receive(a.state, Policy.keep);
    if (opsA.length > 0) a.patch(Kind.map, opsA);
    if (opsB.length > 0) b.patch(Kind.map, opsB);
    return { a, b };
  }

  /** Joins both ways under `policy`, checks both give the same bytes, and returns the join. */
  function merged(a: RecordState, b: RecordState, policy: Policy | PolicyAt = Policy.keep): RecordState {
    const ab = joinRecords(a, b, policy);
    expect(hex(joinRecords(b, a, policy))).toBe(hex(ab));
    return ab;
  }

  it('counters: increments at three replicas add up', () => {
    const rs = ['a', 'b', 'c'].map((id) => new TestReplica(id));
    const bys = [[5, -1], [-3], [10, 10, -7]];
    bys.forEach((list, i) => {
      for (const by of list) (rs[i] as TestReplica).patch(Kind.counter, [{ op: 'increment', path: '', by }]);
    });
    const [a, b, c] = rs.map((r) => r.state) as [RecordState, RecordState, RecordState];
    expect(jsonOf(joinRecords(joinRecords(a, b), c))).toBe(14);
    expect(jsonOf(joinRecords(c, joinRecords(b, a)))).toBe(14);
  });

  it('sets: an add concurrent with a remove of the same element wins', () => {
    const a = new TestReplica('a');
    a.patch(Kind.set, [{ op: 'add-to-set', path: '', value: 'x' }]);
    const b = new TestReplica('b');
    b.receive(a.state, Policy.keep);
    b.patch(Kind.set, [{ op: 'remove-from-set', path: '', value: 'x' }]);
    a.patch(Kind.set, [{ op: 'add-to-set', path: '', value: 'x' }]);
    expect(jsonOf(merged(a.state, b.state))).toEqual(['x']);
    // A remove that observed both adds wins.
    b.receive(a.state, Policy.keep);
    b.patch(Kind.set, [{ op: 'remove-from-set', path: '', value: 'x' }]);
    expect(jsonOf(merged(a.state, b.state))).toBeUndefined();
  });

  it('maps: concurrent sets of different fields both stay', () => {
    const { a, b } = concurrent([set('/base', 0)], [set('/x', 1)], [set('/y', 2)]);
    const m = merged(a.state, b.state);
    expect(jsonOf(m)).toEqual({ base: 0, x: 1, y: 2 });
    expect(hasConflict(m)).toBe(false);
    expect(materialize(m).conflicts).toEqual([]);
  });

  it('maps: concurrent sets of one field are a conflict, the later HLC shown and the other listed', () => {
    const { a, b } = concurrent([set('/f', 0), set('/g', 0)], [set('/f', 'from a')], [set('/f', 'from b')], [5, 9]);
    const m = merged(a.state, b.state);
    expect(jsonOf(m)).toEqual({ f: 'from b', g: 0 });
    expect(hasConflict(m)).toBe(true);
    const { conflicts } = materialize(m);
    expect(conflicts).toHaveLength(1);
    expect(conflicts[0]?.path).toBe('/f');
    expect(conflicts[0]?.siblings.map((s) => [s.dot.replica, fromUtf8(s.value as Uint8Array)])).toEqual([
      ['a', '"from a"'],
    ]);
  });

  it('maps under lww: one value, the one with the higher HLC, and no conflict', () => {
    for (const clocks of [
      [5, 9],
      [9, 5],
    ] as [number, number][]) {
      const { a, b } = concurrent([set('/f', 0)], [set('/f', 'from a')], [set('/f', 'from b')], clocks);
      const later = compareHlc(a.hlc, b.hlc) > 0 ? 'from a' : 'from b';
      for (const policy of [Policy.lww, (p: string) => (p === '/f' ? Policy.lww : Policy.keep)]) {
        const m = merged(a.state, b.state, policy);
        const view = materialize(m, undefined, policy);
        expect(view.root === undefined ? undefined : toJson(view.root)).toEqual({ f: later });
        expect(view.conflicts).toEqual([]);
        expect(hasConflict(m, policy)).toBe(false);
        // The next write to the field, wherever it is made, drops every value it observed.
        const c = new TestReplica('c', 20);
        c.receive(m, policy);
        c.patch(Kind.map, [set('/f', 'from c')]);
        expect(c.state.siblings).toHaveLength(1);
      }
      // Where the field's policy is keep, the same state shows the conflict.
      const keepF = (p: string): Policy => (p === '/f' ? Policy.keep : Policy.lww);
      expect(hasConflict(merged(a.state, b.state, keepF), keepF)).toBe(true);
    }
  });

  it('maps: concurrent sets of /a/x and /a/y both stay', () => {
    const { a, b } = concurrent([set('/a', { z: 0 })], [set('/a/x', 1)], [set('/a/y', 2)]);
    const m = merged(a.state, b.state);
    expect(jsonOf(m)).toEqual({ a: { x: 1, y: 2, z: 0 } });
    expect(hasConflict(m)).toBe(false);
  });

  it('maps: a set of /a to 5 concurrent with a set of /a/x shows the object, the 5 as a conflict', () => {
    for (const policy of [Policy.keep, Policy.lww]) {
      const { a, b } = concurrent([set('/a', { x: 0 })], [set('/a', 5)], [set('/a/x', 1)]);
      const onA = new TestReplica('a2');
      onA.receive(a.state, policy);
      onA.receive(b.state, policy);
      const onB = new TestReplica('b2');
      onB.receive(b.state, policy);
      onB.receive(a.state, policy);
      expect(hex(onA.state)).toBe(hex(onB.state));
      for (const state of [onA.state, onB.state]) {
        const view = materialize(state, undefined, policy);
        expect(view.root === undefined ? undefined : toJson(view.root)).toEqual({ a: { x: 1 } });
        expect(view.conflicts.map((c) => [c.path, c.siblings.map((s) => fromUtf8(s.value as Uint8Array))])).toEqual([
          ['/a', ['5']],
        ]);
        expect(hasConflict(state, policy)).toBe(true);
      }
    }
  });

  it('maps: a remove of /a concurrent with a set of /a/y keeps what the remove did not see', () => {
    const { a, b } = concurrent([set('/a', { x: 1 })], [{ op: 'remove', path: '/a' }], [set('/a/y', 2)]);
    expect(jsonOf(merged(a.state, b.state))).toEqual({ a: { y: 2 } });
  });

  it('maps: an increment of a counter field concurrent with a set of it shows the value, the counts kept', () => {
    const { a, b } = concurrent(
      [{ op: 'increment', path: '/c', by: 1 }],
      [set('/c', 'text')],
      [{ op: 'increment', path: '/c', by: 5 }],
    );
    const m = merged(a.state, b.state);
    expect(jsonOf(m)).toEqual({ c: 'text' });
    // Removing the value shows the counter again, with the increment a did not see.
    const r = new TestReplica('a', 3);
    r.counter = 100;
    r.state = m;
    r.patch(Kind.map, [{ op: 'remove', path: '/c' }]);
    expect(jsonOf(r.state)).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------

describe('lww on maps is resolved when read, not by the join (regression)', () => {
  // The join used to drop, under lww, every register value at a path but the latest. Map
  // operations remove values without leaving a later one (a remove, a set of a parent or a
  // child), so a value dropped there stayed dropped or came back depending on the order states
  // were joined in: the join was not associative, and replicas that had received the same
  // states could show different documents.

  it('a remove that saw only the latest value: every join order gives the same state', () => {
    const x = mapWith('x', [set('/f', 'x')], 10); // the latest value
    const y = mapWith('y', [set('/f', 'y')], 1); // an earlier, concurrent one
    const z = new TestReplica('z', 11);
    z.receive(x.state, Policy.lww);
    z.patch(Kind.map, [{ op: 'remove', path: '/f' }]);
    z.receive(y.state, Policy.lww);
    for (const policy of [Policy.lww, (p: string) => (p === '/f' ? Policy.lww : Policy.keep)]) {
      const left = joinRecords(joinRecords(x.state, y.state, policy), z.state, policy);
      const right = joinRecords(x.state, joinRecords(y.state, z.state, policy), policy);
      expect(hex(left)).toBe(hex(right));
      // The remove did not see y's value, so it stays (as it does under keep).
      expect(jsonOf(left, policy)).toEqual({ f: 'y' });
    }
  });

  it('a stale state delivered late changes nothing', () => {
    // a sets /k~1~0 (the key "k/~") at a later clock, then makes it an object; b sets it earlier.
    const a = mapWith('a', [set('/k~1~0', 1)], 3);
    const stale = a.state;
    a.patch(Kind.map, [set('/k~1~0', { x: 1 })]);
    const b = mapWith('b', [set('/k~1~0', 2)], 0);
    const direct = joinRecords(a.state, b.state, Policy.lww);
    const viaStale = joinRecords(
      joinRecords(joinRecords(EMPTY_RECORD, stale, Policy.lww), b.state, Policy.lww),
      a.state,
      Policy.lww,
    );
    expect(hex(viaStale)).toBe(hex(direct));
    // The object and b's value, which a never saw, shown as a conflict: the same on every replica.
    expect(jsonOf(direct, Policy.lww)).toEqual({ 'k/~': { x: 1 } });
    expect(hasConflict(direct, Policy.lww)).toBe(true);
  });

  it('records are still reduced to their latest sibling by the join', () => {
    const rec = (replica: string, counter: number, ms: number, value: string) => ({
      siblings: [
        { dot: { replica, counter }, hlc: { ms, c: 0 }, value: new TextEncoder().encode(JSON.stringify(value)) },
      ],
      context: new Map([[replica, counter]]),
    });
    const j = joinRecords(rec('a', 1, 5, 'old'), rec('b', 1, 9, 'new'), Policy.lww);
    expect(j.siblings.map((s) => s.dot.replica)).toEqual(['b']);
    const perPath = joinRecords(rec('a', 1, 5, 'old'), rec('b', 1, 9, 'new'), () => Policy.lww);
    expect(hex(perPath)).toBe(hex(j));
    expect(joinRecords(rec('a', 1, 5, 'old'), rec('b', 1, 9, 'new'), Policy.keep).siblings).toHaveLength(2);
  });
});

// ---------------------------------------------------------------------------------------------

describe('diffToOps: a whole-document write as operations', () => {
  const read = (r: TestReplica) => materialize(r.state);

  /** Applies the ops of writing `next` at `r`, and returns them. */
  function put(r: TestReplica, next: unknown, config: CollectionConfig = MAP): PreparedOp[] {
    const view = read(r);
    const ops = diffToOps(view, next, config);
    r.state = applyPatch(r.state, view, ops, r.id, r.mint);
    return ops;
  }

  const opsText = (ops: PreparedOp[]): string[] =>
    ops.map((o) =>
      'value' in o
        ? `${o.op} ${o.path} ${JSON.stringify(o.value)}`
        : 'by' in o
          ? `${o.op} ${o.path} ${o.by}`
          : 'element' in o
            ? `${o.op} ${o.path} ${fromUtf8(o.element)}`
            : `${o.op} ${o.path}`,
    );

  it('sets and removes only the fields that changed', () => {
    const r = mapWith('a', [set('/a', 1), set('/b', 'x'), set('/n', { p: 1, q: 2 }), set('/gone', true)]);
    const ops = put(r, { a: 1, b: 'y', n: { p: 1, q: 3 }, d: { e: [1] } });
    expect(opsText(ops).sort()).toEqual(['remove /gone', 'set /b "y"', 'set /d {"e":[1]}', 'set /n/q 3']);
    expect(jsonOf(r.state)).toEqual({ a: 1, b: 'y', d: { e: [1] }, n: { p: 1, q: 3 } });
    // Writing what is there changes nothing.
    expect(diffToOps(read(r), jsonOf(r.state), MAP)).toEqual([]);
    expect(diffToOps(read(r), { n: { q: 3, p: 1 }, d: { e: [1] }, b: 'y', a: 1 }, MAP)).toEqual([]);
  });

  it('replaces an object by a value and a value by an object', () => {
    const r = mapWith('a', [set('/o', { x: 1 }), set('/v', 5)]);
    const ops = put(r, { o: 'flat', v: { y: 2 } });
    expect(opsText(ops).sort()).toEqual(['set /o "flat"', 'set /v {"y":2}']);
    expect(jsonOf(r.state)).toEqual({ o: 'flat', v: { y: 2 } });
  });

  it('increments a counter by the difference', () => {
    const r = mapWith('a', [{ op: 'increment', path: '/c', by: 5 }]);
    expect(opsText(put(r, { c: 8 }))).toEqual(['increment /c 3']);
    expect(opsText(put(r, { c: -2 }))).toEqual(['increment /c -10']);
    expect(put(r, { c: -2 })).toEqual([]);
    expect(jsonOf(r.state)).toEqual({ c: -2 });
    expect(invalid(() => diffToOps(read(r), { c: 'x' }, MAP))).toMatch(/\/c is a counter/);
    expect(invalid(() => diffToOps(read(r), { c: 1.5 }, MAP))).toMatch(/\/c is a counter/);
  });

  it('a counter declared in the settings starts from 0, even at 0, and replaces another type', () => {
    const config: CollectionConfig = { ...MAP, fields: { '/c': { type: 'counter' }, '/n/c': { type: 'counter' } } };
    const r = new TestReplica('a');
    expect(opsText(put(r, { c: 4 }, config))).toEqual(['increment /c 4']);
    const s = mapWith('b', [set('/c', 'text')]);
    put(s, { c: 0 }, config);
    expect(jsonOf(s.state)).toEqual({ c: 0 });
    // Also inside an object the write creates.
    const t = new TestReplica('c');
    put(t, { n: { c: 3, v: 1 } }, config);
    expect(jsonOf(t.state)).toEqual({ n: { c: 3, v: 1 } });
    expect(materialize(t.state).root?.type === 'object' && materialize(t.state).conflicts).toEqual([]);
    t.patch(Kind.map, [{ op: 'increment', path: '/n/c', by: 1 }]);
    expect(jsonOf(t.state)).toEqual({ n: { c: 4, v: 1 } });
  });

  it('gives a set the adds and removes, whatever the order and duplicates', () => {
    const r = mapWith('a', [
      { op: 'add-to-set', path: '/t', value: 'p' },
      { op: 'add-to-set', path: '/t', value: 'q' },
    ]);
    expect(opsText(put(r, { t: ['r', 'q', 'r'] })).sort()).toEqual(['add-to-set /t "r"', 'remove-from-set /t "p"']);
    expect(jsonOf(r.state)).toEqual({ t: ['q', 'r'] });
    expect(diffToOps(read(r), { t: ['r', 'q'] }, MAP)).toEqual([]);
    expect(invalid(() => diffToOps(read(r), { t: 'q' }, MAP))).toMatch(/\/t is a set/);
    const config: CollectionConfig = { ...MAP, fields: { '/s': { type: 'set' } } };
    const s = new TestReplica('b');
    expect(opsText(put(s, { s: [{ b: 1, a: 2 }] }, config))).toEqual(['add-to-set /s {"a":2,"b":1}']);
  });

  it('removes fields whose names are also Object.prototype properties', () => {
    const r = mapWith('a', [set('/constructor', 1), set('/toString', 2), set('/keep', 3)]);
    put(r, { keep: 3 });
    expect(jsonOf(r.state)).toEqual({ keep: 3 });
  });

  it('shows a field named __proto__ as an own field', () => {
    const r = mapWith('a', [set('/__proto__', { x: 1 }), set('/y', 2)]);
    const shown = jsonOf(r.state) as Record<string, JsonValue>;
    expect(Object.getPrototypeOf(shown)).toBe(Object.prototype);
    expect(Object.hasOwn(shown, '__proto__')).toBe(true);
    expect(JSON.stringify(shown)).toBe('{"__proto__":{"x":1},"y":2}');
    // And a write of what was read changes nothing.
    expect(diffToOps(read(r), JSON.parse(JSON.stringify(shown)), MAP)).toEqual([]);
  });

  it('writing back the read view of a field in conflict resolves the conflict', () => {
    const a = mapWith('a', [set('/f', 0), set('/g', 1)], 1);
    const b = new TestReplica('b', 2);
    b.receive(a.state, Policy.keep);
    a.patch(Kind.map, [set('/f', 'a')]);
    b.patch(Kind.map, [set('/f', 'b')]);
    b.receive(a.state, Policy.keep);
    expect(hasConflict(b.state)).toBe(true);
    const shown = jsonOf(b.state);
    expect(shown).toEqual({ f: 'b', g: 1 });
    expect(opsText(put(b, shown))).toEqual(['set /f "b"']);
    expect(hasConflict(b.state)).toBe(false);
    expect(jsonOf(b.state)).toEqual(shown);
  });

  it('writing back the read view resolves a value that met an object', () => {
    const a = mapWith('a', [set('/a', { x: 0 })], 1);
    const b = new TestReplica('b', 2);
    b.receive(a.state, Policy.keep);
    a.patch(Kind.map, [set('/a', 5)]);
    b.patch(Kind.map, [set('/a/x', 1)]);
    b.receive(a.state, Policy.keep);
    expect(materialize(b.state).conflicts.map((c) => c.path)).toEqual(['/a']);
    const shown = jsonOf(b.state);
    put(b, shown);
    expect(hasConflict(b.state)).toBe(false);
    expect(jsonOf(b.state)).toEqual({ a: { x: 1 } });
  });

  it('refuses what is not an object', () => {
    for (const next of [null, 1, 'x', [1]]) invalid(() => diffToOps(materialize(EMPTY_RECORD), next, MAP));
  });
});
