import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isJsonText } from './json-check.js';

const enc = new TextEncoder();
const parses = (text: string): boolean => {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
};

describe('isJsonText', () => {
  it('accepts the text of every JSON value', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(isJsonText(enc.encode(JSON.stringify(v)))).toBe(true);
        expect(isJsonText(enc.encode(JSON.stringify(v, null, 2)))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('agrees with JSON.parse on arbitrary text', () => {
    fc.assert(
      fc.property(
        fc.string({
          unit: fc.constantFrom(...'{}[]":,.-+eE0123456789 \\/tfnrulasxé\u2028\n'.split('')),
          maxLength: 12,
        }),
        (text) => {
          expect(isJsonText(enc.encode(text))).toBe(parses(text));
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('agrees with JSON.parse on mutated JSON', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.nat(), fc.integer({ min: 0, max: 127 }), (v, at, ch) => {
        const text = JSON.stringify(v);
        const i = at % (text.length + 1);
        const mutated = text.slice(0, i) + String.fromCharCode(ch) + text.slice(i + 1);
        expect(isJsonText(enc.encode(mutated))).toBe(parses(mutated));
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses invalid UTF-8, overlong forms and encoded surrogates, which TextDecoder would reject', () => {
    const bad = [
      [0x22, 0xc0, 0xaf, 0x22], // overlong '/'
      [0x22, 0xed, 0xa0, 0x80, 0x22], // a surrogate encoded in UTF-8
      [0x22, 0xf5, 0x80, 0x80, 0x80, 0x22], // beyond U+10FFFF
      [0x22, 0xe2, 0x82, 0x22], // truncated sequence
      [0x22, 0x80, 0x22], // lone continuation byte
      [0xef, 0xbb, 0xbf, 0x31], // byte order mark
    ];
    for (const b of bad) expect(isJsonText(Uint8Array.from(b))).toBe(false);
    expect(isJsonText(enc.encode('"h\u00e9llo \u{1F600}"'))).toBe(true);
  });

  it('refuses nesting beyond the bound', () => {
    expect(isJsonText(enc.encode('['.repeat(10) + ']'.repeat(10)), 10)).toBe(true);
    expect(isJsonText(enc.encode('['.repeat(11) + ']'.repeat(11)), 10)).toBe(false);
  });
});
