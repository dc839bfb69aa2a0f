import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dbErrorOf } from '../../test/support/errors.js';
import { codePoint } from '../../test/support/arbitraries.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import {
  Decoder,
  Encoder,
  bytesEqual,
  compareBytes,
  fromBase64Url,
  fromUtf8,
  toBase64Url,
  toHex,
  utf8,
} from './codec.js';

function expectCorrupt(fn: () => unknown): void {
  expect(dbErrorOf(fn).code).toBe(ErrorCode.corrupt);
}

/** Runs `fn`; anything it throws must be a DbError('corrupt'). */
function onlyCorrupt(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof DbError)) throw e;
    expect(e.code).toBe(ErrorCode.corrupt);
  }
}

const uint = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.maxSafeNat());
/** Well-formed strings (no lone surrogates): ASCII only, or with multi-byte and astral characters. */
const text = fc.oneof(
  fc.string({ unit: 'binary-ascii', maxLength: 30 }),
  fc.string({ unit: codePoint, maxLength: 30 }),
);

/** Strings on both sides of the 127/128-character boundary, ASCII or not, a non-ASCII one anywhere. */
const longText = fc.oneof(
  fc.string({ unit: 'binary-ascii', maxLength: 200 }),
  fc.string({ unit: codePoint, maxLength: 200 }),
  fc
    .tuple(
      fc.string({ unit: 'binary-ascii', minLength: 120, maxLength: 135 }),
      fc.nat(),
      fc.constantFrom('\u00e9', '\u20ac', '\u{1F600}', '\u0080'),
    )
    .map(([s, at, ch]) => {
      const i = at % (s.length + 1);
      return s.slice(0, i) + ch + s.slice(i);
    }),
);

type Item = { kind: 'uint'; v: number } | { kind: 'bytes'; v: Uint8Array } | { kind: 'string'; v: string };

const item: fc.Arbitrary<Item> = fc.oneof(
  uint.map((v) => ({ kind: 'uint' as const, v })),
  fc.uint8Array({ maxLength: 40 }).map((v) => ({ kind: 'bytes' as const, v })),
  text.map((v) => ({ kind: 'string' as const, v })),
);

function encodeItems(items: readonly Item[]): Uint8Array {
  const enc = new Encoder(1);
  for (const x of items) {
    if (x.kind === 'uint') enc.uint(x.v);
    else if (x.kind === 'bytes') enc.bytes(x.v);
    else enc.string(x.v);
  }
  return enc.finish();
}

function decodeItems(bytes: Uint8Array, shape: readonly Item['kind'][]): Item[] {
  const dec = new Decoder(bytes);
  const out: Item[] = shape.map((kind): Item => {
    if (kind === 'uint') return { kind, v: dec.uint() };
    if (kind === 'bytes') return { kind, v: dec.bytes().slice() };
    return { kind, v: dec.string() };
  });
  dec.end();
  return out;
}

function uintBytes(n: number): Uint8Array {
  return new Encoder().uint(n).finish();
}

describe('varints', () => {
  it('every safe unsigned integer round-trips and uses the fewest bytes', () => {
    fc.assert(
      fc.property(uint, (n) => {
        const bytes = uintBytes(n);
        const dec = new Decoder(bytes);
        expect(dec.uint()).toBe(n);
        expect(dec.done).toBe(true);
        dec.end();
        // Canonical: ceil(bit length / 7) bytes, continuation bits on all but the last.
        const bits = n === 0 ? 1 : Math.floor(Math.log2(n)) + 1;
        expect(bytes.length).toBe(Math.max(1, Math.ceil(bits / 7)));
        for (let i = 0; i < bytes.length - 1; i++) expect((bytes[i] as number) & 0x80).toBe(0x80);
        expect((bytes[bytes.length - 1] as number) & 0x80).toBe(0);
      }),
      { numRuns: 2000 },
    );
  });

  it('the boundaries of each varint length round-trip', () => {
    for (let k = 0; k <= 53; k++) {
      for (const n of [2 ** k - 1, 2 ** k, 2 ** k + 1]) {
        if (n > Number.MAX_SAFE_INTEGER) continue;
        expect(new Decoder(uintBytes(n)).uint()).toBe(n);
      }
    }
    expect(uintBytes(Number.MAX_SAFE_INTEGER).length).toBe(8);
  });

  it('the encoder refuses negative, fractional and unsafe integers', () => {
    for (const n of [-1, 0.5, Number.MAX_SAFE_INTEGER + 1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new Encoder().uint(n)).toThrow(RangeError);
    }
  });

  it('an overlong varint (a value padded with zero groups) is refused as corrupt', () => {
    fc.assert(
      fc.property(uint, fc.integer({ min: 1, max: 7 }), (n, pad) => {
        const canonical = uintBytes(n);
        const overlong = [...canonical];
        for (let i = 0; i < pad; i++) {
          overlong[overlong.length - 1] = (overlong[overlong.length - 1] as number) | 0x80;
          overlong.push(0);
        }
        expectCorrupt(() => new Decoder(Uint8Array.from(overlong)).uint());
      }),
    );
  });

  it('a varint longer than 8 bytes or above 2^53 - 1 is refused as corrupt', () => {
    expectCorrupt(() => new Decoder(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])).uint());
    // 2^53 = 16 * 128^7: seven empty groups, then 0x10.
    expectCorrupt(() => new Decoder(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10])).uint());
    expectCorrupt(() => new Decoder(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])).uint());
    expect(new Decoder(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f])).uint()).toBe(
      Number.MAX_SAFE_INTEGER,
    );
  });

  it('a single zero byte is the canonical zero', () => {
    expect(new Decoder(Uint8Array.from([0])).uint()).toBe(0);
    expectCorrupt(() => new Decoder(Uint8Array.from([0x80, 0x00])).uint());
  });
});

describe('Encoder buffers', () => {
  it('finish() returns a copy that later writes and resets do not change', () => {
    fc.assert(
      fc.property(fc.array(item, { maxLength: 8 }), fc.array(item, { maxLength: 8 }), (first, second) => {
        const enc = new Encoder(1);
        for (const x of first) encodeItems([x]).forEach((b) => enc.byte(b));
        const a = enc.finish();
        const expected = encodeItems(first);
        expect(toHex(a)).toBe(toHex(expected));
        enc.reset();
        for (const x of second) enc.raw(encodeItems([x]));
        expect(toHex(a)).toBe(toHex(expected));
        expect(toHex(enc.view())).toBe(toHex(encodeItems(second)));
        expect(enc.length).toBe(encodeItems(second).length);
      }),
    );
  });

  it('a reused encoder writes the same bytes as a fresh one', () => {
    fc.assert(
      fc.property(fc.array(fc.array(item, { maxLength: 6 }), { maxLength: 5 }), (runs) => {
        const enc = new Encoder(1);
        for (const items of runs) {
          enc.reset();
          for (const x of items) {
            if (x.kind === 'uint') enc.uint(x.v);
            else if (x.kind === 'bytes') enc.bytes(x.v);
            else enc.string(x.v);
          }
          expect(toHex(enc.finish())).toBe(toHex(encodeItems(items)));
        }
      }),
    );
  });
});

describe('byte runs and strings', () => {
  it('bytes round-trip', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
        const dec = new Decoder(new Encoder(1).bytes(b).finish());
        expect(bytesEqual(dec.bytes(), b)).toBe(true);
        dec.end();
      }),
    );
  });

  it('strings round-trip, ASCII, multi-byte and astral characters alike', () => {
    fc.assert(
      fc.property(longText, (s) => {
        const dec = new Decoder(new Encoder(1).string(s).finish());
        expect(dec.string()).toBe(s);
        dec.end();
        expect(fromUtf8(utf8(s))).toBe(s);
        expect(utf8(s)).toEqual(new Uint8Array(Buffer.from(s, 'utf8')));
        // The length prefix counts bytes, not characters.
        const prefixed = new Encoder(1).string(s).finish();
        expect(new Decoder(prefixed).uint()).toBe(Buffer.byteLength(s, 'utf8'));
      }),
      { numRuns: 500 },
    );
  });

  it('any sequence of values round-trips in order', () => {
    fc.assert(
      fc.property(fc.array(item, { maxLength: 20 }), (items) => {
        const bytes = encodeItems(items);
        expect(
          decodeItems(
            bytes,
            items.map((x) => x.kind),
          ),
        ).toEqual(items);
      }),
    );
  });

  it('every truncation of an encoding is refused as corrupt', () => {
    fc.assert(
      fc.property(fc.array(item, { minLength: 1, maxLength: 8 }), (items) => {
        const bytes = encodeItems(items);
        const shape = items.map((x) => x.kind);
        for (let cut = 0; cut < bytes.length; cut++) {
          expectCorrupt(() => decodeItems(bytes.subarray(0, cut), shape));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('trailing bytes after the last value are refused as corrupt', () => {
    fc.assert(
      fc.property(fc.array(item, { maxLength: 8 }), fc.uint8Array({ minLength: 1, maxLength: 5 }), (items, extra) => {
        const bytes = encodeItems(items);
        const padded = new Uint8Array(bytes.length + extra.length);
        padded.set(bytes);
        padded.set(extra, bytes.length);
        expectCorrupt(() =>
          decodeItems(
            padded,
            items.map((x) => x.kind),
          ),
        );
      }),
    );
  });

  it('a length past the end of the input is refused as corrupt', () => {
    expectCorrupt(() => new Decoder(Uint8Array.from([5, 1, 2])).bytes());
    expectCorrupt(() => new Decoder(uintBytes(Number.MAX_SAFE_INTEGER)).bytes());
    expectCorrupt(() => new Decoder(new Uint8Array(0)).byte());
  });

  it('invalid UTF-8 is refused as corrupt', () => {
    for (const bad of [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80]]) {
      const enc = new Encoder().bytes(Uint8Array.from(bad)).finish();
      expectCorrupt(() => new Decoder(enc).string());
      expectCorrupt(() => fromUtf8(Uint8Array.from(bad)));
    }
  });

  it('random bytes decode or fail with a DbError, never anything else', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }),
        fc.array(fc.constantFrom('uint', 'bytes', 'string', 'byte')),
        (b, ops) => {
          onlyCorrupt(() => {
            const dec = new Decoder(b);
            for (const op of ops) {
              if (op === 'uint') dec.uint();
              else if (op === 'bytes') dec.bytes();
              else if (op === 'string') dec.string();
              else dec.byte();
            }
            dec.end();
          });
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('base64url', () => {
  it('round-trips any bytes and matches Node, without padding', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
        const s = toBase64Url(b);
        expect(s).toBe(Buffer.from(b).toString('base64url'));
        expect(s).toMatch(/^[A-Za-z0-9_-]*$/);
        expect(bytesEqual(fromBase64Url(s), b)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('any string over the alphabet either decodes to bytes that re-encode to it, or is refused as corrupt', () => {
    const alphabet = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...alphabet), { maxLength: 20 }), (chars) => {
        const s = chars.join('');
        let decoded: Uint8Array;
        try {
          decoded = fromBase64Url(s);
        } catch (e) {
          expect(e).toBeInstanceOf(DbError);
          expect((e as DbError).code).toBe(ErrorCode.corrupt);
          return;
        }
        expect(toBase64Url(decoded)).toBe(s);
      }),
      { numRuns: 1000 },
    );
  });

  it('padding is refused as corrupt', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 30 }), (b) => {
        const s = toBase64Url(b);
        if (s.length % 4 !== 0) expectCorrupt(() => fromBase64Url(s.padEnd(s.length + 4 - (s.length % 4), '=')));
        expectCorrupt(() => fromBase64Url(s + '='));
        expectCorrupt(() => fromBase64Url(s + '=='));
      }),
    );
    expectCorrupt(() => fromBase64Url('AA=='));
    expectCorrupt(() => fromBase64Url('AAA='));
  });

  it('characters outside the url-safe alphabet are refused as corrupt', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 3, maxLength: 30 }),
        fc.nat(),
        fc.constantFrom('+', '/', '=', ' ', '\n', '.', '*', '\u0000', 'é', '\u{1F600}', '\u00c1', '\u0141'),
        (b, at, bad) => {
          const s = toBase64Url(b);
          const i = at % s.length;
          expectCorrupt(() => fromBase64Url(s.slice(0, i) + bad + s.slice(i + 1)));
        },
      ),
    );
  });

  it('non-zero spare bits in the last character are refused as corrupt', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 30 }), fc.integer({ min: 1, max: 15 }), (b, noise) => {
        fc.pre(b.length % 3 !== 0);
        const s = toBase64Url(b);
        const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
        const spareBits = b.length % 3 === 1 ? 4 : 2;
        const last = alphabet.indexOf(s[s.length - 1] as string);
        const dirty = last | (noise & ((1 << spareBits) - 1));
        fc.pre(dirty !== last);
        expectCorrupt(() => fromBase64Url(s.slice(0, -1) + alphabet[dirty]));
      }),
    );
    // 'AB' carries 12 bits for one byte: the last 4 must be zero.
    expectCorrupt(() => fromBase64Url('AB'));
    expect([...fromBase64Url('AA')]).toEqual([0]);
  });

  it('a length of 1 mod 4 is refused as corrupt', () => {
    for (const s of ['A', 'AAAAA', 'AAAAAAAAA']) expectCorrupt(() => fromBase64Url(s));
  });

  it('the empty string is the empty byte array', () => {
    expect(toBase64Url(new Uint8Array(0))).toBe('');
    expect(fromBase64Url('').length).toBe(0);
  });

  it('random strings decode or fail with a DbError, never anything else', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme-ascii', maxLength: 40 }), fc.string({ maxLength: 10 }), (a, b) => {
        onlyCorrupt(() => fromBase64Url(a));
        onlyCorrupt(() => fromBase64Url(b));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('byte helpers', () => {
  it('compareBytes is lexicographic then by length, and agrees with bytesEqual', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6 }), fc.uint8Array({ maxLength: 6 }), (a, b) => {
        const expected = Buffer.compare(Buffer.from(a), Buffer.from(b));
        expect(Math.sign(compareBytes(a, b))).toBe(expected);
        expect(Math.sign(compareBytes(b, a))).toBe(0 - expected);
        expect(bytesEqual(a, b)).toBe(expected === 0);
      }),
    );
  });

  it('toHex matches Node', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
        expect(toHex(b)).toBe(Buffer.from(b).toString('hex'));
      }),
    );
  });
});
