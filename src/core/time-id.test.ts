import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkDocId } from './names.js';
import {
  TIME_ID_ALPHABET,
  TIME_ID_COUNTER_MAX,
  TIME_ID_MS_MAX,
  decodeTimeId,
  encodeTimeId,
  timeOfId,
} from './time-id.js';
import type { TimeIdParts } from './time-id.js';

const replicaArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/);
const partsArb: fc.Arbitrary<TimeIdParts> = fc.record({
  ms: fc.oneof(
    fc.integer({ min: 0, max: TIME_ID_MS_MAX }),
    fc.integer({ min: 1_700_000_000_000, max: 1_700_000_000_100 }),
  ),
  counter: fc.oneof(fc.integer({ min: 0, max: TIME_ID_COUNTER_MAX }), fc.integer({ min: 0, max: 3 })),
  replica: fc.oneof(replicaArb, fc.constantFrom('eu-1', 'eu-1.x', 'eu', 'a.b.c')),
  incarnation: fc.oneof(fc.nat(), fc.integer({ min: 0, max: 40 }), fc.constant(Number.MAX_SAFE_INTEGER)),
});

describe('time ids', () => {
  it('the alphabet lists its digits in ASCII order', () => {
    expect([...TIME_ID_ALPHABET].sort().join('')).toBe(TIME_ID_ALPHABET);
    expect(new Set(TIME_ID_ALPHABET).size).toBe(32);
  });

  it('looks like this', () => {
    const id = encodeTimeId({ ms: 1_700_000_000_000, counter: 1, replica: 'eu-1', incarnation: 33 });
    expect(id).toBe('01hf7yat00001.eu-1.11');
    expect(timeOfId(id)).toBe(1_700_000_000_000);
  });

  it('is a valid document id and decodes to its parts', () => {
    fc.assert(
      fc.property(partsArb, (p) => {
        const id = encodeTimeId(p);
        expect(checkDocId(id)).toBe(id);
        expect(decodeTimeId(id)).toEqual(p);
        expect(timeOfId(id)).toBe(p.ms);
      }),
    );
  });

  it('sorts as strings like (ms, counter) at one replica and incarnation', () => {
    fc.assert(
      fc.property(partsArb, partsArb, (a, b) => {
        const x = encodeTimeId(a);
        const y = encodeTimeId({ ...b, replica: a.replica, incarnation: a.incarnation });
        const byTime = Math.sign(a.ms - b.ms || a.counter - b.counter);
        expect(Math.sign(x < y ? -1 : x > y ? 1 : 0)).toBe(byTime);
      }),
    );
  });

  it('sorts by time first, whatever the replicas and incarnations', () => {
    fc.assert(
      fc.property(partsArb, partsArb, (a, b) => {
        fc.pre(a.ms !== b.ms || a.counter !== b.counter);
        const byTime = Math.sign(a.ms - b.ms || a.counter - b.counter);
        const x = encodeTimeId(a);
        const y = encodeTimeId(b);
        expect(Math.sign(x < y ? -1 : 1)).toBe(byTime);
      }),
    );
  });

  it('never gives two different part tuples the same id', () => {
    fc.assert(
      fc.property(partsArb, partsArb, (a, b) => {
        fc.pre(JSON.stringify(a) !== JSON.stringify(b));
        expect(encodeTimeId(a)).not.toBe(encodeTimeId(b));
      }),
    );
    // The same time at replicas whose ids differ only around the separator.
    const at = { ms: 5, counter: 0 };
    const ids = [
      encodeTimeId({ ...at, replica: 'a.1', incarnation: 1 }),
      encodeTimeId({ ...at, replica: 'a', incarnation: 1 }),
      encodeTimeId({ ...at, replica: 'a', incarnation: 32 }),
      encodeTimeId({ ...at, replica: 'a.10', incarnation: 0 }),
    ];
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('is not fooled by other ids', () => {
    for (const id of [
      '',
      'todo-1',
      '01hf4jb400001',
      '01hf4jb400001.eu-1',
      '01hf4jb400001.eu-1.',
      '01hf4jb400001.eu-1.01',
      '01HF4JB400001.eu-1.1',
      '01hf4jb40000u.eu-1.1',
      '01hf4jb400001..1',
      '01hf4jb400001.eu 1.1',
      '01hf4jb4000001.eu-1.1',
    ]) {
      expect(decodeTimeId(id), id).toBeUndefined();
      expect(timeOfId(id), id).toBeUndefined();
    }
  });

  it('refuses parts out of range', () => {
    expect(() => encodeTimeId({ ms: -1, counter: 0, replica: 'a', incarnation: 0 })).toThrow(/ms/);
    expect(() => encodeTimeId({ ms: TIME_ID_MS_MAX + 1, counter: 0, replica: 'a', incarnation: 0 })).toThrow(/ms/);
    expect(() => encodeTimeId({ ms: 1, counter: TIME_ID_COUNTER_MAX + 1, replica: 'a', incarnation: 0 })).toThrow(
      /counter/,
    );
    expect(() => encodeTimeId({ ms: 1, counter: 0, replica: '_a', incarnation: 0 })).toThrow(/replica/);
    expect(() => encodeTimeId({ ms: 1, counter: 0, replica: 'a', incarnation: 1.5 })).toThrow(/incarnation/);
  });
});
