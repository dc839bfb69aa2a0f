import { describe, expect, it } from 'vitest';
import type { JsonValue } from '../../core/index.js';
import { DbError, ErrorCode } from '../../shared/errors.js';
import { writeDelta } from '../text/delta.js';
import { TextDoc } from '../text/index.js';
import { ListDoc, type ListChange } from './index.js';
import { listContent } from './list-state.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof DbError) return e.code;
    throw e;
  }
  return undefined;
}

/** Sends everything each lacks, both ways. */
function sync(a: ListDoc, b: ListDoc): void {
  b.applyChanges(a.encodeSince(b.version()));
  a.applyChanges(b.encodeSince(a.version()));
}

function patch(items: JsonValue[], changes: readonly ListChange[]): JsonValue[] {
  const out = [...items];
  for (const c of changes) out.splice(c.pos, c.deleted, ...c.inserted);
  return out;
}

/** Replaces the first occurrence of `from` in `bytes` by `to` (same length). */
function replaceBytes(bytes: Uint8Array, from: string, to: string): Uint8Array {
  const f = new TextEncoder().encode(from);
  const t = new TextEncoder().encode(to);
  expect(t.length).toBe(f.length);
  for (let i = 0; i + f.length <= bytes.length; i++) {
    if (f.every((b, k) => bytes[i + k] === b)) {
      const out = bytes.slice();
      out.set(t, i);
      return out;
    }
  }
  throw new Error(`${from} not found`);
}

describe('ListDoc local edits', () => {
  it('inserts and deletes items of every JSON kind by index', () => {
    const d = new ListDoc('a');
    d.insert(0, [1, 'two', null]);
    d.insert(3, [true, { k: [1, { x: 'y' }] }, []]);
    d.insert(0, [-1.5]);
    d.delete(2, 2);
    expect(d.toArray()).toEqual([-1.5, 1, true, { k: [1, { x: 'y' }] }, []]);
    expect(d.length).toBe(5);
    expect(d.get(0)).toBe(-1.5);
    expect(d.get(3)).toEqual({ k: [1, { x: 'y' }] });
    expect(d.get(5)).toBeUndefined();
    expect(d.get(-1)).toBeUndefined();
    expect(d.version()).toEqual(new Map([['a', 3 + 3 + 1 + 2]]));
  });

  it('counts one operation per inserted and per deleted item', () => {
    const d = new ListDoc('me');
    d.insert(0, [[1, 2, 3], 'x', {}]);
    d.delete(0, 3);
    expect(d.version().get('me')).toBe(6);
    expect(d.toArray()).toEqual([]);
  });

  it('rejects bad positions, non-arrays and values that are not JSON as invalid input, inserting nothing', () => {
    const d = new ListDoc('a');
    d.insert(0, ['a', 'b']);
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    let deep: unknown = 0;
    for (let i = 0; i < 70; i++) deep = [deep];
    const bad: unknown[] = [undefined, Number.NaN, Infinity, new Date(0), new Map(), () => 1, 10n, Symbol('s')];
    bad.push({ a: undefined }, [1, Number.NEGATIVE_INFINITY], cyclic, deep, new (class Point {})());
    for (const v of bad) expect(codeOf(() => d.insert(1, ['ok', v as JsonValue]))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.insert(3, ['x']))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.insert(-1, ['x']))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.insert(0.5, ['x']))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.insert(0, 'x' as unknown as JsonValue[]))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.delete(1, 2))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.delete(0, -1))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.delete(Number.NaN, 1))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => d.get(0.5))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => new ListDoc(7 as unknown as string))).toBe(ErrorCode.invalidInput);
    expect(d.toArray()).toEqual(['a', 'b']);
    d.insert(2, []);
    d.delete(2, 0);
    expect(d.version().get('a')).toBe(2);
  });

  it('refuses an item larger than a document value may be as too large', () => {
    const d = new ListDoc('a');
    expect(codeOf(() => d.insert(0, ['x'.repeat(1024 * 1024 + 1)]))).toBe(ErrorCode.tooLarge);
    expect(d.length).toBe(0);
  });

  it('holds frozen canonical copies: the caller’s value can change after, the held one cannot', () => {
    const d = new ListDoc('a');
    const value = { b: 1, a: { d: [1], c: 2 } };
    d.insert(0, [value, -0]);
    value.b = 99;
    value.a.d.push(2);
    const held = d.get(0) as { b: number; a: { d: number[] } };
    expect(held).toEqual({ a: { c: 2, d: [1] }, b: 1 });
    expect(Object.keys(held)).toEqual(['a', 'b']);
    expect(Object.isFrozen(held) && Object.isFrozen(held.a) && Object.isFrozen(held.a.d)).toBe(true);
    expect(() => held.a.d.push(3)).toThrow(TypeError);
    expect(Object.is(d.get(1), 0)).toBe(true);
    // toArray hands out a new array each time: changing it changes nothing held.
    const arr = d.toArray();
    arr.pop();
    expect(d.length).toBe(2);
  });

  it('keeps its typing and position caches honest across deletes, jumps and remote changes', () => {
    const d = new ListDoc('a');
    const other = new ListDoc('b');
    let model: JsonValue[] = [];
    for (let i = 0; i < 1500; i++) {
      const k = (i * 7919) % 13;
      if (k < 7) {
        const p = Math.min(model.length, (i * 31) % (model.length + 1));
        const items = Array.from({ length: (i % 3) + 1 }, (_, j) => i * 10 + j);
        d.insert(p, items);
        model.splice(p, 0, ...items);
      } else if (k < 9 && model.length > 0) {
        const p = (i * 17) % model.length;
        const n = Math.min(3, model.length - p);
        d.delete(p, n);
        model.splice(p, n);
      } else if (k < 11) {
        d.insert(model.length, [{ i }]);
        model.push({ i });
      } else {
        other.insert(0, ['r']);
        model = patch(model, d.applyChanges(other.encodeSince(d.version())));
      }
      expect(d.length).toBe(model.length);
      if (i % 97 === 0 && model.length > 0) expect(d.get(i % model.length)).toEqual(model[i % model.length]);
    }
    expect(d.toArray()).toEqual(model);
  });
});

describe('ListDoc merging', () => {
  it('merges concurrent inserts and deletes and reports them as patches', () => {
    const a = new ListDoc('alice');
    const b = new ListDoc('bob');
    a.insert(0, ['the', 'cat', 'sat']);
    sync(a, b);
    a.insert(1, [{ colour: 'black' }]);
    b.delete(2, 1);
    b.insert(2, ['slept', 'well']);
    expect(a.applyChanges(b.encodeSince(a.version()))).toEqual([
      { pos: 3, deleted: 1, inserted: [] },
      { pos: 3, deleted: 0, inserted: ['slept', 'well'] },
    ]);
    b.applyChanges(a.encodeSince(b.version()));
    const want = ['the', { colour: 'black' }, 'cat', 'slept', 'well'];
    expect(a.toArray()).toEqual(want);
    expect(b.toArray()).toEqual(want);
  });

  it('holds changes whose dependencies are missing until they arrive', () => {
    const a = new ListDoc('alice');
    const b = new ListDoc('bob');
    a.insert(0, [1]);
    const first = a.encodeSince(new Map());
    const v1 = a.version();
    a.insert(1, [2, 3]);
    const second = a.encodeSince(v1);
    expect(b.applyChanges(second)).toEqual([]);
    expect(b.pendingCount).toBe(1);
    expect(b.version().size).toBe(0);
    expect(b.applyChanges(first)).toEqual([{ pos: 0, deleted: 0, inserted: [1, 2, 3] }]);
    expect(b.pendingCount).toBe(0);
    expect(b.toArray()).toEqual([1, 2, 3]);
  });

  it('a delete that arrives before the insert it removes waits for it', () => {
    const a = new ListDoc('alice');
    const b = new ListDoc('bob');
    const c = new ListDoc('carol');
    a.insert(0, ['a', 'b', 'c']);
    b.applyChanges(a.encode());
    b.delete(1, 1);
    c.applyChanges(b.encodeSince(new Map([['alice', 3]])));
    expect(c.toArray()).toEqual([]);
    c.applyChanges(a.encode());
    expect(c.toArray()).toEqual(['a', 'c']);
    expect(c.version()).toEqual(b.version());
  });

  it('ships deleted items without their content', () => {
    const a = new ListDoc('alice');
    a.insert(0, [{ secret: 'hunter2' }, 'kept']);
    a.delete(0, 1);
    expect(new TextDecoder().decode(a.encode())).not.toContain('hunter2');
    expect(new TextDecoder().decode(a.encodeSince(new Map([['bob', 1]])))).not.toContain('hunter2');
    const b = new ListDoc('bob');
    b.insert(0, ['#']);
    b.applyChanges(a.encodeSince(new Map([['bob', 1]])));
    expect(b.toArray().filter((x) => x !== '#')).toEqual(['kept']);
  });

  it('does not interleave runs two replicas insert at one spot, one item at a time or all at once', () => {
    const a = new ListDoc('A');
    const b = new ListDoc('B');
    a.insert(0, ['[', ']']);
    sync(a, b);
    for (const x of [1, 2, 3, 4]) a.insert(a.length - 1, [x]);
    for (const x of [9, 8, 7]) b.insert(1, [x]);
    b.insert(1, [{ batch: [5, 6] }, 'z']);
    sync(a, b);
    expect(a.toArray()).toEqual(b.toArray());
    const mine = ['[', 1, 2, 3, 4];
    const theirs = [{ batch: [5, 6] }, 'z', 7, 8, 9];
    expect([
      [...mine, ...theirs, ']'],
      ['[', ...theirs, 1, 2, 3, 4, ']'],
    ]).toContainEqual(a.toArray());
  });

  it('replicas holding the same operations hold the same items, key order included, and copies encode alike', () => {
    const a = new ListDoc('a');
    const b = new ListDoc('b');
    a.insert(0, [{ z: 1, a: [true, null], m: { y: 'é', x: -0 } }, 1e21, 0.1]);
    b.insert(0, [{ '10': 1, '2': 2, b: 3 }]);
    sync(a, b);
    a.delete(1, 1);
    sync(a, b);
    const json = (d: ListDoc): string => JSON.stringify(d.toArray());
    expect(json(b)).toBe(json(a));
    const c = ListDoc.decode(b.encode(), 'c');
    expect(json(c)).toBe(json(a));
    expect(c.encode()).toEqual(b.encode());
    expect(ListDoc.decode(a.encodeSince(new Map([['x', 1]])), 'd').encode()).toEqual(
      ListDoc.decode(a.encode(), 'e').encode(),
    );
  });
});

describe('ListDoc encodings', () => {
  it('round-trips an empty list and a list of deletions only', () => {
    const e = ListDoc.decode(new ListDoc('a').encode(), 'b');
    expect(e.toArray()).toEqual([]);
    expect(e.version().size).toBe(0);
    const d = new ListDoc('a');
    d.insert(0, ['gone', 'too']);
    d.delete(0, 2);
    const back = ListDoc.decode(d.encode(), 'c');
    expect(back.toArray()).toEqual([]);
    expect(back.version()).toEqual(new Map([['a', 4]]));
    back.insert(0, ['new']);
    d.applyChanges(back.encodeSince(d.version()));
    expect(d.toArray()).toEqual(['new']);
  });

  it('a snapshot merged into a doc that has edits of its own integrates them', () => {
    const a = new ListDoc('a');
    a.insert(0, [1, 2, 3]);
    const b = new ListDoc('b');
    b.insert(0, ['b']);
    const changes = b.applyChanges(a.encode());
    expect(patch(['b'], changes)).toEqual(b.toArray());
    a.applyChanges(b.encode());
    expect(a.toArray()).toEqual(b.toArray());
    expect(b.applyChanges(a.encode())).toEqual([]);
  });

  it('decoded items are frozen and equal to the inserted ones, strings with lone surrogates included', () => {
    const a = new ListDoc('a');
    a.insert(0, [{ s: '\uD800 and \u{1F600}', n: [0.1, -2e-7, 1234567890123456] }, '\uDC00']);
    const b = ListDoc.decode(a.encode(), 'b');
    expect(b.toArray()).toEqual(a.toArray());
    expect(Object.isFrozen(b.get(0))).toBe(true);
  });

  it('a number JSON cannot carry is corrupt; -0 in bytes is read as 0', () => {
    const a = new ListDoc('a');
    a.insert(0, [12345, 10]);
    const big = replaceBytes(a.encode(), '12345', '1e999');
    expect(codeOf(() => ListDoc.decode(big, 'b'))).toBe(ErrorCode.corrupt);
    const neg = ListDoc.decode(replaceBytes(a.encode(), '10', '-0'), 'b');
    expect(Object.is(neg.get(1), 0)).toBe(true);
    const delta = a.encodeSince(new Map([['x', 1]]));
    expect(codeOf(() => new ListDoc('c').applyChanges(replaceBytes(delta, '12345', '[1,]2')))).toBe(ErrorCode.corrupt);
  });

  it('keeps no room for elements it has no items for, and drops ops past the most a list may hold', () => {
    // A few bytes may claim 2^26 elements inserted and deleted: they cost an op-log entry, not memory.
    const deleted = (agent: string, len: number) => ({
      kind: 'ins' as const,
      agent,
      seq: 0,
      len,
      leftAgent: null,
      leftSeq: 0,
      rightAgent: null,
      rightSeq: 0,
      segs: [len * 2 + 1],
      content: [],
    });
    const d = new ListDoc('a');
    d.insert(0, ['x']);
    const big = writeDelta([deleted('m', 2 ** 26)], listContent);
    expect(big.length).toBeLessThan(32);
    d.applyChanges(big);
    d.insert(1, ['y']);
    expect(d.toArray()).toEqual(['x', 'y']);
    expect(d.version()).toEqual(
      new Map([
        ['a', 2],
        ['m', 2 ** 26],
      ]),
    );
    // Past 2^27 operations in all: not applied, and the list goes on as before.
    expect(d.applyChanges(writeDelta([deleted('n', 2 ** 26)], listContent))).toEqual([]);
    expect(d.applyChanges(writeDelta([deleted('o', 2 ** 30)], listContent))).toEqual([]);
    expect(d.version().has('n') || d.version().has('o')).toBe(false);
    d.insert(0, ['w']);
    expect(ListDoc.decode(d.encode(), 'b').toArray()).toEqual(['w', 'x', 'y']);
  });

  it('rejects a text’s bytes and any other format as corrupt, and a text rejects a list’s', () => {
    const t = new TextDoc('t');
    t.insert(0, 'abc');
    const l = new ListDoc('l');
    l.insert(0, ['a', 'b', 'c']);
    const d = new ListDoc('a');
    expect(codeOf(() => d.applyChanges(t.encode()))).toBe(ErrorCode.corrupt);
    expect(codeOf(() => d.applyChanges(t.encodeSince(new Map([['x', 1]]))))).toBe(ErrorCode.corrupt);
    expect(codeOf(() => d.applyChanges(new Uint8Array([])))).toBe(ErrorCode.corrupt);
    expect(codeOf(() => d.applyChanges(new Uint8Array([1, 2, 3])))).toBe(ErrorCode.corrupt);
    expect(codeOf(() => d.applyChanges('x' as unknown as Uint8Array))).toBe(ErrorCode.invalidInput);
    expect(codeOf(() => new TextDoc('x').applyChanges(l.encode()))).toBe(ErrorCode.corrupt);
    expect(codeOf(() => new TextDoc('x').applyChanges(l.encodeSince(new Map([['x', 1]]))))).toBe(ErrorCode.corrupt);
    expect(d.length).toBe(0);
  });

  it('reports a large remote batch at one spot as one patch, and scattered edits as patches that apply', () => {
    const a = new ListDoc('a');
    const b = new ListDoc('b');
    b.insert(0, ['<', '<', '>', '>']);
    a.applyChanges(b.encode());
    for (let i = 0; i < 300; i++) {
      const k = i % 3;
      const at = k === 0 ? 2 : k === 1 ? 2 + i : 2 + Math.floor(i / 2);
      a.insert(Math.min(at, a.length - 2), [i]);
    }
    const changes = b.applyChanges(a.encodeSince(b.version()));
    expect(changes).toEqual([{ pos: 2, deleted: 0, inserted: a.toArray().slice(2, -2) }]);
    for (let i = 0; i < 300; i++) a.insert((i * 37) % (a.length + 1), [{ i }]);
    a.delete(5, 20);
    const old = b.toArray();
    expect(patch(old, b.applyChanges(a.encodeSince(b.version())))).toEqual(b.toArray());
    expect(b.toArray()).toEqual(a.toArray());
  });
});
