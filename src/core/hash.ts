/**
 * Hashes. `hash128` (MurmurHash3 x86_128, Appleby, public domain) is the fast, platform-exact
 * hash of hot paths: per-document digest terms and version-token checksums. It detects
 * corruption and divergence, not malice. `sha256` (@noble/hashes: audited, pure JS) is for
 * where an adversary matters, such as authentication.
 */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

export function sha256(bytes: Uint8Array): Uint8Array {
  return nobleSha256(bytes);
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const rotl = (x: number, r: number): number => (x << r) | (x >>> (32 - r));

/** MurmurHash3_x86_128 of `data` with `seed`, as 16 bytes (little-endian words h1..h4). */
export function hash128(data: Uint8Array, seed = 0): Uint8Array {
  const out = new Uint8Array(16);
  hash128Into(data, seed, out, 0);
  return out;
}

/** Writes MurmurHash3_x86_128 of `data` into `out` at `offset`. */
export function hash128Into(data: Uint8Array, seed: number, out: Uint8Array, offset: number): void {
  const c1 = 0x239b961b;
  const c2 = 0xab0e9789;
  const c3 = 0x38b34ae5;
  const c4 = 0xa1e38b93;
  let h1 = seed >>> 0;
  let h2 = h1;
  let h3 = h1;
  let h4 = h1;
  const len = data.length;
  const blocks = len - (len % 16);
  for (let i = 0; i < blocks; i += 16) {
    let k1 = word(data, i);
    let k2 = word(data, i + 4);
    let k3 = word(data, i + 8);
    let k4 = word(data, i + 12);
    k1 = Math.imul(rotl(Math.imul(k1, c1), 15), c2);
    h1 ^= k1;
    h1 = rotl(h1, 19) + h2;
    h1 = (Math.imul(h1, 5) + 0x561ccd1b) | 0;
    k2 = Math.imul(rotl(Math.imul(k2, c2), 16), c3);
    h2 ^= k2;
    h2 = rotl(h2, 17) + h3;
    h2 = (Math.imul(h2, 5) + 0x0bcaa747) | 0;
    k3 = Math.imul(rotl(Math.imul(k3, c3), 17), c4);
    h3 ^= k3;
    h3 = rotl(h3, 15) + h4;
    h3 = (Math.imul(h3, 5) + 0x96cd1c35) | 0;
    k4 = Math.imul(rotl(Math.imul(k4, c4), 18), c1);
    h4 ^= k4;
    h4 = rotl(h4, 13) + h1;
    h4 = (Math.imul(h4, 5) + 0x32ac3b17) | 0;
  }
  // The tail: the last len % 16 bytes, mixed into the lanes they fill.
  const rem = len & 15;
  const t = blocks;
  if (rem > 12) {
    const k4 = tailByte(data, t, rem, 12) | (tailByte(data, t, rem, 13) << 8) | (tailByte(data, t, rem, 14) << 16);
    h4 ^= Math.imul(rotl(Math.imul(k4, c4), 18), c1);
  }
  if (rem > 8) {
    const k3 =
      tailByte(data, t, rem, 8) |
      (tailByte(data, t, rem, 9) << 8) |
      (tailByte(data, t, rem, 10) << 16) |
      (tailByte(data, t, rem, 11) << 24);
    h3 ^= Math.imul(rotl(Math.imul(k3, c3), 17), c4);
  }
  if (rem > 4) {
    const k2 =
      tailByte(data, t, rem, 4) |
      (tailByte(data, t, rem, 5) << 8) |
      (tailByte(data, t, rem, 6) << 16) |
      (tailByte(data, t, rem, 7) << 24);
    h2 ^= Math.imul(rotl(Math.imul(k2, c2), 16), c3);
  }
  if (rem > 0) {
    const k1 =
      tailByte(data, t, rem, 0) |
      (tailByte(data, t, rem, 1) << 8) |
      (tailByte(data, t, rem, 2) << 16) |
      (tailByte(data, t, rem, 3) << 24);
    h1 ^= Math.imul(rotl(Math.imul(k1, c1), 15), c2);
  }
  h1 ^= len;
  h2 ^= len;
  h3 ^= len;
  h4 ^= len;
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  h1 = fmix32(h1);
  h2 = fmix32(h2);
  h3 = fmix32(h3);
  h4 = fmix32(h4);
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  putWord(out, offset, h1);
  putWord(out, offset + 4, h2);
  putWord(out, offset + 8, h3);
  putWord(out, offset + 12, h4);
}

function word(data: Uint8Array, i: number): number {
  return (
    (data[i] as number) |
    ((data[i + 1] as number) << 8) |
    ((data[i + 2] as number) << 16) |
    ((data[i + 3] as number) << 24)
  );
}

function putWord(out: Uint8Array, at: number, h: number): void {
  out[at] = h & 0xff;
  out[at + 1] = (h >>> 8) & 0xff;
  out[at + 2] = (h >>> 16) & 0xff;
  out[at + 3] = (h >>> 24) & 0xff;
}

function tailByte(data: Uint8Array, t: number, rem: number, i: number): number {
  return i < rem ? (data[t + i] as number) : 0;
}
