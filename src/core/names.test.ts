import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dbErrorOf } from '../../test/support/errors.js';
import { codePoint } from '../../test/support/arbitraries.js';
import { ErrorCode } from '../shared/errors.js';
import { ID_MAX_CHARS, checkCollection, checkDocId, checkReplicaId } from './names.js';

function expectInvalidName(fn: () => unknown): void {
  expect(dbErrorOf(fn).code).toBe(ErrorCode.invalidName);
}

const NOT_STRINGS: unknown[] = [undefined, null, 0, 42, true, {}, [], ['a'], Symbol('a'), () => 'a'];

/** Values JSON.stringify cannot render: a message built with it must not turn them into a TypeError. */
function unprintable(): unknown[] {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  return [1n, cyclic, { toJSON: () => 2n }];
}

describe('collection names', () => {
  it('accepts 1 to 64 letters, digits, underscores, dots and dashes starting with a letter', () => {
    for (const name of ['a', 'Z', 'users', 'user_profiles', 'v1.events', 'A-b.c_d9', 'x'.repeat(64)]) {
      expect(checkCollection(name)).toBe(name);
    }
  });

  it('refuses empty, reserved, misplaced, foreign and overlong names with invalid_name', () => {
    for (const name of [
      '',
      '_config',
      '_batch',
      '1abc',
      '-a',
      '.a',
      'a b',
      'a/b',
      'a\\b',
      'a:b',
      'a%2F',
      'caf\u00e9',
      'a\u0000',
      'abc\n',
      '\nabc',
      'x'.repeat(65),
    ]) {
      expectInvalidName(() => checkCollection(name));
    }
  });

  it('refuses values that are not strings with invalid_name', () => {
    for (const v of NOT_STRINGS) expectInvalidName(() => checkCollection(v));
  });

  it('refuses a bigint or a cyclic object with invalid_name, not a TypeError from the error message', () => {
    for (const v of unprintable()) expectInvalidName(() => checkCollection(v));
  });

  it('accepts exactly the names the documented pattern describes', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'aZ09_.-/ é\n'), maxLength: 70 }), (name) => {
        const valid = name.length >= 1 && name.length <= 64 && /^[A-Za-z][A-Za-z0-9_.-]*$/.test(name);
        if (valid) expect(checkCollection(name)).toBe(name);
        else expectInvalidName(() => checkCollection(name));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('document ids', () => {
  it('accepts printable ids up to the limit, unicode and surrogate pairs included', () => {
    for (const id of [
      'x',
      '0',
      'hello world',
      'a_b',
      'a/b?c#d',
      'caf\u00e9',
      '\u{1F600}',
      '\u4e2d\u6587',
      'x'.repeat(ID_MAX_CHARS),
    ]) {
      expect(checkDocId(id)).toBe(id);
    }
  });

  it('refuses the empty id with invalid_name', () => {
    expectInvalidName(() => checkDocId(''));
  });

  it('refuses an id longer than the limit with invalid_name', () => {
    expectInvalidName(() => checkDocId('x'.repeat(ID_MAX_CHARS + 1)));
    expectInvalidName(() => checkDocId('x'.repeat(100_000)));
  });

  it('refuses ids starting with an underscore, which are reserved, with invalid_name', () => {
    for (const id of ['_', '_config', '_batch', '__x']) expectInvalidName(() => checkDocId(id));
    expect(checkDocId('a_')).toBe('a_');
  });

  it('refuses every ASCII control character, anywhere in the id, with invalid_name', () => {
    for (let c = 0; c < 0x20; c++) {
      const ch = String.fromCharCode(c);
      for (const id of [ch, `a${ch}`, `${ch}a`, `a${ch}b`]) expectInvalidName(() => checkDocId(id));
    }
    expectInvalidName(() => checkDocId('a\u007fb'));
  });

  it('refuses lone surrogates with invalid_name', () => {
    for (const id of [
      '\ud800',
      '\udbff',
      '\udc00',
      '\udfff',
      'a\ud800',
      'a\ud800b',
      'a\udc00b',
      '\udc00\ud800',
      '\ud83d\ude00\ud83d',
    ]) {
      expectInvalidName(() => checkDocId(id));
    }
  });

  it('refuses values that are not strings with invalid_name', () => {
    for (const v of [...NOT_STRINGS, ...unprintable()]) expectInvalidName(() => checkDocId(v));
  });

  it('accepts any well-formed string of printable characters within the limit', () => {
    fc.assert(
      fc.property(fc.string({ unit: codePoint, minLength: 1, maxLength: 40 }), (id) => {
        fc.pre(!id.startsWith('_') && ![...id].some((ch) => ch < ' ' || (ch >= '\u007f' && ch <= '\u009f')));
        expect(checkDocId(id)).toBe(id);
      }),
      { numRuns: 300 },
    );
  });
});

describe('replica ids', () => {
  it('accepts 1 to 64 letters, digits and _ . : - starting with a letter or digit', () => {
    for (const id of [
      'a',
      '7',
      'eu-1',
      'us_east.2',
      'node:3',
      '123e4567-e89b-12d3-a456-426614174000',
      'x'.repeat(64),
    ]) {
      expect(checkReplicaId(id)).toBe(id);
    }
  });

  it('refuses empty, misplaced, foreign and overlong ids with invalid_name', () => {
    for (const id of ['', '-a', '_a', '.a', ':a', 'a b', 'a/b', 'caf\u00e9', 'a\u0000', 'eu-1\n', 'x'.repeat(65)]) {
      expectInvalidName(() => checkReplicaId(id));
    }
  });

  it('refuses values that are not strings with invalid_name', () => {
    for (const v of NOT_STRINGS) expectInvalidName(() => checkReplicaId(v));
  });

  it('refuses a bigint or a cyclic object with invalid_name, not a TypeError from the error message', () => {
    for (const v of unprintable()) expectInvalidName(() => checkReplicaId(v));
  });
});
