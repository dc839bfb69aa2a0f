import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dbErrorOf } from '../../test/support/errors.js';
import { codePoint } from '../../test/support/arbitraries.js';
import { HLC_ZERO } from './hlc.js';
import { ErrorCode } from '../shared/errors.js';
import { fromBase64Url, toBase64Url } from './codec.js';
import { contextToken, dotToken, parseToken } from './version-token.js';
import { sortVv } from './version-vector.js';

function expectBadVersion(collection: string, id: string, token: string): void {
  expect(dbErrorOf(() => parseToken(collection, id, token)).code).toBe(ErrorCode.badVersion);
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

const nameArb = fc.string({ unit: codePoint, minLength: 1, maxLength: 20 });
const replicaArb = fc.string({ unit: codePoint, minLength: 1, maxLength: 12 });
const counterArb = fc.oneof(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }));
const vvArb = fc
  .uniqueArray(fc.tuple(replicaArb, counterArb), { selector: ([r]) => r, maxLength: 6 })
  .map((entries) => sortVv(new Map(entries)));

const HLC = { ms: 1_700_000_000_000, c: 3 };
const SAMPLE_CONTEXT = contextToken(
  'users',
  'alice',
  new Map([
    ['eu-1', 12],
    ['us-2', 3],
  ]),
  HLC,
);
const SAMPLE_DOT = dotToken('users', 'alice', { replica: 'eu-1', counter: 12 }, HLC);

describe('version tokens', () => {
  it('a context token round-trips through parseToken', () => {
    fc.assert(
      fc.property(nameArb, nameArb, vvArb, (collection, id, vv) => {
        const token = contextToken(collection, id, vv, HLC);
        expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
        const basis = parseToken(collection, id, token);
        expect(basis.kind).toBe('context');
        if (basis.kind !== 'context') return;
        expect([...basis.context]).toEqual([...vv]);
        expect(basis.hlc).toEqual(HLC);
      }),
      { numRuns: 500 },
    );
  });

  it('a dot token round-trips through parseToken', () => {
    fc.assert(
      fc.property(nameArb, nameArb, replicaArb, counterArb, (collection, id, replica, counter) => {
        const token = dotToken(collection, id, { replica, counter }, HLC);
        expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(parseToken(collection, id, token)).toEqual({ kind: 'dot', dot: { replica, counter }, hlc: HLC });
      }),
      { numRuns: 500 },
    );
  });

  it('the context token of an empty document round-trips', () => {
    expect(parseToken('c', 'x', contextToken('c', 'x', new Map(), HLC_ZERO))).toEqual({
      kind: 'context',
      context: new Map(),
      hlc: HLC_ZERO,
    });
  });

  it('a context token does not depend on the order the vector was built in', () => {
    const a = new Map([
      ['b', 1],
      ['a', 2],
    ]);
    const b = new Map([
      ['a', 2],
      ['b', 1],
    ]);
    expect(contextToken('c', 'x', a, HLC)).toBe(contextToken('c', 'x', b, HLC));
  });

  it('a token for another document is refused with bad_version', () => {
    fc.assert(
      fc.property(nameArb, nameArb, nameArb, nameArb, vvArb, (c1, id1, c2, id2, vv) => {
        fc.pre(c1 !== c2 || id1 !== id2);
        expectBadVersion(c2, id2, contextToken(c1, id1, vv, HLC));
        expectBadVersion(c2, id2, dotToken(c1, id1, { replica: 'r', counter: 1 }, HLC));
      }),
      { numRuns: 300 },
    );
    expectBadVersion('users', 'bob', SAMPLE_CONTEXT);
    expectBadVersion('people', 'alice', SAMPLE_DOT);
  });

  it('every truncation of a token is refused with bad_version', () => {
    for (const token of [SAMPLE_CONTEXT, SAMPLE_DOT]) {
      for (let n = 0; n < token.length; n++) expectBadVersion('users', 'alice', token.slice(0, n));
    }
  });

  it('a token with any one character changed, at any position, is refused with bad_version', () => {
    for (const token of [SAMPLE_CONTEXT, SAMPLE_DOT]) {
      for (let i = 0; i < token.length; i++) {
        for (const ch of ALPHABET) {
          if (ch === token[i]) continue;
          expectBadVersion('users', 'alice', token.slice(0, i) + ch + token.slice(i + 1));
        }
        for (const ch of ['=', '+', '/', ' ', '\u00e9', '\u0000']) {
          expectBadVersion('users', 'alice', token.slice(0, i) + ch + token.slice(i + 1));
        }
      }
    }
  });

  it('a token with characters appended is refused with bad_version', () => {
    for (const extra of ['A', 'AA', 'AAA', 'AAAA', '=', '==']) {
      expectBadVersion('users', 'alice', SAMPLE_CONTEXT + extra);
    }
  });

  it('a string that is not base64url is refused with bad_version', () => {
    for (const s of ['not a token', 'abc$', 'ab==', 'AAAA+AAA', 'AAAA/AAA', '\u{1F600}', '%41%41']) {
      expectBadVersion('users', 'alice', s);
    }
  });

  it('the empty string is refused with bad_version', () => {
    expectBadVersion('users', 'alice', '');
  });

  it('a 10,000-character string is refused with bad_version', () => {
    expectBadVersion('users', 'alice', 'A'.repeat(10_000));
    expectBadVersion('users', 'alice', SAMPLE_CONTEXT + 'A'.repeat(10_000 - SAMPLE_CONTEXT.length));
  });

  it('a value that is not a string is refused with bad_version', () => {
    for (const v of [undefined, null, 42, {}, ['AAAA']]) {
      expectBadVersion('users', 'alice', v as unknown as string);
    }
  });

  it('a correctly sealed token whose body is malformed is refused with bad_version, not corrupt', () => {
    // The writers do not validate, so they seal bodies the reader must refuse.
    expectBadVersion('users', 'alice', contextToken('users', 'alice', new Map([['a', 0]]), HLC));
    expectBadVersion('users', 'alice', dotToken('users', 'alice', { replica: 'a', counter: 0 }, HLC));
  });

  it('flipping any single bit of a token is refused with bad_version', () => {
    const bytes = fromBase64Url(SAMPLE_CONTEXT);
    for (let i = 0; i < bytes.length * 8; i++) {
      const flipped = bytes.slice();
      flipped[i >> 3] = (flipped[i >> 3] as number) ^ (1 << (i & 7));
      expectBadVersion('users', 'alice', toBase64Url(flipped));
    }
  });

  it('random strings are refused with bad_version, never another error', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 60 }),
          fc.string({ unit: fc.constantFrom(...ALPHABET), maxLength: 60 }),
          fc.uint8Array({ maxLength: 40 }).map(toBase64Url),
        ),
        (s) => {
          expectBadVersion('users', 'alice', s);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
