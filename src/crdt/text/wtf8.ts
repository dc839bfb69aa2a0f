/**
 * Text content as WTF-8: UTF-8, except that a lone surrogate (a text edited by UTF-16 index can
 * split a pair) is kept as its own three-byte sequence instead of being replaced. Well-formed text
 * takes the native TextEncoder/TextDecoder paths. Decoding is strict: one string, one encoding.
 */
import { DbError, ErrorCode } from '../../shared/errors.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const surrogate = /[\uD800-\uDFFF]/;

function hasLoneSurrogate(s: string): boolean {
  if (!surrogate.test(s)) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    if (c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        i++;
        continue;
      }
    }
    return true;
  }
  return false;
}

/** The WTF-8 bytes of `s`. */
export function encodeWtf8(s: string): Uint8Array {
  if (!hasLoneSurrogate(s)) return encoder.encode(s);
  const out = new Uint8Array(s.length * 3);
  let o = 0;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) out[o++] = c;
    else if (c < 0x800) {
      out[o++] = 0xc0 | (c >> 6);
      out[o++] = 0x80 | (c & 63);
    } else {
      if (c >= 0xd800 && c <= 0xdbff) {
        const d = s.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
          out[o++] = 0xf0 | (c >> 18);
          out[o++] = 0x80 | ((c >> 12) & 63);
          out[o++] = 0x80 | ((c >> 6) & 63);
          out[o++] = 0x80 | (c & 63);
          continue;
        }
      }
      out[o++] = 0xe0 | (c >> 12);
      out[o++] = 0x80 | ((c >> 6) & 63);
      out[o++] = 0x80 | (c & 63);
    }
  }
  return out.subarray(0, o);
}

function corrupt(): never {
  throw new DbError(ErrorCode.corrupt, 'corrupt encoding: invalid text content');
}

/** Decodes WTF-8 bytes; throws DbError('corrupt') on anything but the canonical encoding. */
export function decodeWtf8(bytes: Uint8Array): string {
  try {
    return decoder.decode(bytes);
  } catch {
    return decodeSlow(bytes);
  }
}

function decodeSlow(b: Uint8Array): string {
  const units = new Uint16Array(b.length);
  let n = 0;
  let prevHigh = false; // the previous unit was a high surrogate encoded on its own
  for (let i = 0; i < b.length; ) {
    const x = b[i] as number;
    let c: number;
    if (x < 0x80) {
      c = x;
      i += 1;
    } else if (x >= 0xc2 && x < 0xe0) {
      const y = b[i + 1] ?? 0;
      if ((y & 0xc0) !== 0x80) corrupt();
      c = ((x & 31) << 6) | (y & 63);
      i += 2;
    } else if (x >= 0xe0 && x < 0xf0) {
      const y = b[i + 1] ?? 0;
      const z = b[i + 2] ?? 0;
      if ((y & 0xc0) !== 0x80 || (z & 0xc0) !== 0x80) corrupt();
      c = ((x & 15) << 12) | ((y & 63) << 6) | (z & 63);
      if (c < 0x800) corrupt();
      // A pair must take the four-byte form: a low surrogate right after a lone high one is not canonical.
      if (prevHigh && c >= 0xdc00 && c <= 0xdfff) corrupt();
      i += 3;
      units[n++] = c;
      prevHigh = c >= 0xd800 && c <= 0xdbff;
      continue;
    } else if (x >= 0xf0 && x < 0xf5) {
      const y = b[i + 1] ?? 0;
      const z = b[i + 2] ?? 0;
      const w = b[i + 3] ?? 0;
      if ((y & 0xc0) !== 0x80 || (z & 0xc0) !== 0x80 || (w & 0xc0) !== 0x80) corrupt();
      const cp = ((x & 7) << 18) | ((y & 63) << 12) | ((z & 63) << 6) | (w & 63);
      if (cp < 0x10000 || cp > 0x10ffff) corrupt();
      units[n++] = 0xd800 + ((cp - 0x10000) >> 10);
      units[n++] = 0xdc00 + ((cp - 0x10000) & 1023);
      i += 4;
      prevHigh = false;
      continue;
    } else corrupt();
    units[n++] = c;
    prevHigh = false;
  }
  return unitsToString(units, 0, n);
}

/** A string from UTF-16 code units `a[from..to)`, lone surrogates kept. */
export function unitsToString(a: Uint16Array, from: number, to: number): string {
  const CHUNK = 8192;
  if (to - from <= CHUNK) return String.fromCharCode.apply(null, a.subarray(from, to) as unknown as number[]);
  const parts: string[] = [];
  for (let i = from; i < to; i += CHUNK) {
    parts.push(String.fromCharCode.apply(null, a.subarray(i, Math.min(to, i + CHUNK)) as unknown as number[]));
  }
  return parts.join('');
}
