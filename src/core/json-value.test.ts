import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dbErrorOf } from '../../test/support/errors.js';
import { ErrorCode } from '../shared/errors.js';
import { fromUtf8 } from './codec.js';
import { encodeJsonValue } from './json-value.js';
import { DEFAULT_LIMITS } from './names.js';
import type { Limits } from './names.js';

function expectInvalid(value: unknown): void {
  expect(dbErrorOf(() => encodeJsonValue(value, DEFAULT_LIMITS)).code).toBe(ErrorCode.invalidInput);
}

function text(value: unknown, limits: Pick<Limits, 'docBytesMax' | 'valueDepthMax'> = DEFAULT_LIMITS): string {
  return fromUtf8(encodeJsonValue(value, limits));
}

/** `depth` arrays nested in one another, built without recursion. */
function nestedArrays(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

function nestedObjects(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = { k: v };
  return v;
}

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

describe('encodeJsonValue', () => {
  it('accepts every JSON value and returns exactly its JSON text', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
        const t = text(v);
        expect(t).toBe(JSON.stringify(v));
        expect(JSON.stringify(JSON.parse(t))).toBe(t);
      }),
      { numRuns: 500 },
    );
  });

  it('accepts scalars, nested plain objects and arrays', () => {
    expect(text(null)).toBe('null');
    expect(text(true)).toBe('true');
    expect(text(0)).toBe('0');
    expect(text(-1.5e300)).toBe('-1.5e+300');
    expect(text('')).toBe('""');
    expect(text({ a: [1, { b: [null, false, 'x'] }], c: {} })).toBe('{"a":[1,{"b":[null,false,"x"]}],"c":{}}');
  });

  it('accepts objects made with Object.create(null)', () => {
    const o = Object.create(null) as Record<string, unknown>;
    o.a = 1;
    o.nested = Object.assign(Object.create(null) as object, { b: [2] });
    expect(text(o)).toBe('{"a":1,"nested":{"b":[2]}}');
  });

  it('accepts unicode text, astral characters and escapes, as UTF-8', () => {
    const v = { 'cl\u00e9': 'caf\u00e9 \u4e2d\u6587 \u{1F600}', quote: '"\\\n\u0000' };
    const bytes = encodeJsonValue(v, DEFAULT_LIMITS);
    expect(JSON.parse(fromUtf8(bytes))).toEqual(v);
    // The emoji is four UTF-8 bytes, not an escaped surrogate pair.
    expect([...bytes].filter((b) => b === 0xf0)).toHaveLength(1);
  });

  it('keeps lone surrogates as JSON escapes, so they round-trip', () => {
    const v = ['\ud800', 'a\udc00b'];
    expect(JSON.parse(text(v))).toEqual(v);
  });

  it('accepts the same object reachable twice when there is no cycle', () => {
    const shared = { x: 1 };
    expect(text({ a: shared, b: [shared, shared] })).toBe('{"a":{"x":1},"b":[{"x":1},{"x":1}]}');
  });

  it('refuses undefined, at the top and nested, with invalid_input', () => {
    expectInvalid(undefined);
    expectInvalid({ a: undefined });
    expectInvalid([1, undefined]);
    expectInvalid({ a: { b: [undefined] } });
  });

  it('refuses holes in arrays, which JSON.stringify would turn into null', () => {
    // eslint-disable-next-line no-sparse-arrays
    expectInvalid([1, , 3]);
    expectInvalid(new Array(3));
  });

  it('refuses NaN and the infinities with invalid_input', () => {
    for (const n of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      expectInvalid(n);
      expectInvalid({ n });
      expectInvalid([n]);
    }
  });

  it('refuses functions, symbols and bigints with invalid_input', () => {
    for (const v of [() => 1, function named() {}, Symbol('s'), 10n]) {
      expectInvalid(v);
      expectInvalid({ v });
      expectInvalid([v]);
    }
  });

  it('refuses an object with a toJSON method rather than calling it', () => {
    expectInvalid({ toJSON: () => 'sneaky' });
  });

  it('refuses a Date, a Map, a Set, typed arrays, boxed primitives, regexps and class instances with invalid_input', () => {
    for (const v of [
      new Date(0),
      new Map([['a', 1]]),
      new Set([1]),
      new Uint8Array(2),
      new ArrayBuffer(2),
      /re/,
      new String('s'),
      new Number(1),
      new Point(1, 2),
      new Error('e'),
      Object.create({ inherited: 1 }) as object,
    ]) {
      expectInvalid(v);
      expectInvalid({ nested: [v] });
    }
  });

  it('refuses cycles with invalid_input', () => {
    const o: Record<string, unknown> = { a: 1 };
    o.self = o;
    expectInvalid(o);
    const arr: unknown[] = [1];
    arr.push(arr);
    expectInvalid(arr);
    const x: Record<string, unknown> = {};
    const y: Record<string, unknown> = { x };
    x.y = [y];
    expectInvalid({ root: x });
  });

  it('accepts nesting up to the depth limit and refuses one level more with invalid_input', () => {
    const max = DEFAULT_LIMITS.valueDepthMax;
    expect(() => encodeJsonValue(nestedArrays(max), DEFAULT_LIMITS)).not.toThrow();
    expect(() => encodeJsonValue(nestedObjects(max), DEFAULT_LIMITS)).not.toThrow();
    expectInvalid(nestedArrays(max + 1));
    expectInvalid(nestedObjects(max + 1));
    const limits = { docBytesMax: 1000, valueDepthMax: 3 };
    expect(text(nestedArrays(3), limits)).toBe('[[[1]]]');
    expect(dbErrorOf(() => encodeJsonValue(nestedArrays(4), limits)).code).toBe(ErrorCode.invalidInput);
  });

  it('refuses absurdly deep nesting with invalid_input rather than overflowing the stack', () => {
    expectInvalid(nestedArrays(200_000));
    expectInvalid(nestedObjects(200_000));
  });

  it('accepts a value exactly at the size limit and refuses one byte more with too_large', () => {
    const limits = { docBytesMax: 10, valueDepthMax: 64 };
    expect(text('12345678', limits)).toBe('"12345678"');
    const e = dbErrorOf(() => encodeJsonValue('123456789', limits));
    expect(e.code).toBe(ErrorCode.tooLarge);
    expect(e.details).toEqual({ bytes: 11, limit: 10 });
  });

  it('counts the size in UTF-8 bytes, not characters', () => {
    const limits = { docBytesMax: 10, valueDepthMax: 64 };
    expect(text('\u00e9\u00e9\u00e9\u00e9', limits)).toBe('"\u00e9\u00e9\u00e9\u00e9"');
    expect(dbErrorOf(() => encodeJsonValue('\u00e9\u00e9\u00e9\u00e9\u00e9', limits)).code).toBe(ErrorCode.tooLarge);
  });

  it('refuses a value over the default 1 MiB limit with too_large', () => {
    const big = { a: 'x'.repeat(DEFAULT_LIMITS.docBytesMax) };
    expect(dbErrorOf(() => encodeJsonValue(big, DEFAULT_LIMITS)).code).toBe(ErrorCode.tooLarge);
    const justFits = 'x'.repeat(DEFAULT_LIMITS.docBytesMax - 2);
    expect(encodeJsonValue(justFits, DEFAULT_LIMITS).length).toBe(DEFAULT_LIMITS.docBytesMax);
  });

  it('refuses an object with symbol keys, which JSON.stringify would silently drop', () => {
    expectInvalid({ a: 1, [Symbol('hidden')]: 2 });
  });
});
