/**
 * The canonical binary codec: unsigned LEB128 varints, length-prefixed bytes and strings.
 * Canonical means one value has exactly one encoding (no overlong varints are accepted), so
 * encoded states can be compared and hashed byte for byte. Every write sits beside its read.
 * The decoder never reads past its input and throws a DbError('corrupt') on anything malformed.
 */
import { DbError, ErrorCode } from '../shared/errors.js';

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** UTF-8 bytes of `text`. Short ASCII strings (ids, names, most JSON) skip TextEncoder, which is slow for them. */
export function utf8(text: string): Uint8Array {
  const n = text.length;
  if (n > 1024) return utf8Encoder.encode(text);
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return utf8Encoder.encode(text);
    out[i] = c;
  }
  return out;
}

export function fromUtf8(bytes: Uint8Array): string {
  try {
    return utf8Decoder.decode(bytes);
  } catch (cause) {
    throw new DbError(ErrorCode.corrupt, 'invalid UTF-8', { cause });
  }
}

export class Encoder {
  private buf: Uint8Array;
  private pos = 0;

  constructor(initialBytes = 64) {
    this.buf = new Uint8Array(initialBytes);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  byte(b: number): this {
    this.ensure(1);
    this.buf[this.pos++] = b & 0xff;
    return this;
  }

  /** An unsigned integer up to Number.MAX_SAFE_INTEGER, as LEB128. */
  uint(n: number): this {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a safe unsigned integer: ${n}`);
    this.ensure(8);
    while (n >= 0x80) {
      this.buf[this.pos++] = n % 0x80 | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.buf[this.pos++] = n;
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  bytes(bytes: Uint8Array): this {
    return this.uint(bytes.length).raw(bytes);
  }

  string(text: string): this {
    const n = text.length;
    if (n < 128) {
      // ASCII fast path: length byte, then the characters themselves.
      this.ensure(n + 1);
      const start = this.pos;
      this.buf[this.pos++] = n;
      let i = 0;
      for (; i < n; i++) {
        const c = text.charCodeAt(i);
        if (c >= 0x80) break;
        this.buf[this.pos++] = c;
      }
      if (i === n) return this;
      this.pos = start;
    }
    return this.bytes(utf8Encoder.encode(text));
  }

  get length(): number {
    return this.pos;
  }

  /** A copy of the bytes written. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }

  /** The bytes written, without a copy: valid only until the next write or reset. */
  view(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  /** Starts over, keeping the buffer: hot paths reuse one scratch encoder instead of allocating. */
  reset(): this {
    this.pos = 0;
    return this;
  }
}

export class Decoder {
  private pos = 0;

  constructor(private readonly buf: Uint8Array) {}

  private fail(what: string): never {
    throw new DbError(ErrorCode.corrupt, `corrupt encoding: ${what} at byte ${this.pos}`);
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  get offset(): number {
    return this.pos;
  }

  byte(): number {
    if (this.pos >= this.buf.length) this.fail('unexpected end');
    return this.buf[this.pos++] as number;
  }

  uint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      if (i >= 8) this.fail('varint too long');
      const b = this.byte();
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (b === 0 && i > 0) this.fail('overlong varint');
        break;
      }
      scale *= 0x80;
    }
    if (!Number.isSafeInteger(result)) this.fail('integer out of range');
    return result;
  }

  raw(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) this.fail('length past end');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  bytes(): Uint8Array {
    return this.raw(this.uint());
  }

  string(): string {
    return fromUtf8(this.bytes());
  }

  /** Throws unless every byte was consumed: trailing garbage is corruption too. */
  end(): void {
    if (this.pos !== this.buf.length) this.fail('trailing bytes');
  }
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Lexicographic byte order, then length. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

const b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const b64Index = new Int16Array(128).fill(-1);
for (let i = 0; i < b64.length; i++) b64Index[b64.charCodeAt(i)] = i;

/** base64url without padding (RFC 4648 section 5). */
export function toBase64Url(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8) | (bytes[i + 2] as number);
    out += b64[n >> 18]! + b64[(n >> 12) & 63]! + b64[(n >> 6) & 63]! + b64[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = (bytes[i] as number) << 16;
    out += b64[n >> 18]! + b64[(n >> 12) & 63]!;
  } else if (rest === 2) {
    const n = ((bytes[i] as number) << 16) | ((bytes[i + 1] as number) << 8);
    out += b64[n >> 18]! + b64[(n >> 12) & 63]! + b64[(n >> 6) & 63]!;
  }
  return out;
}

/** Strict base64url decoding: rejects padding, foreign characters and non-zero spare bits. */
export function fromBase64Url(text: string): Uint8Array {
  if (text.length % 4 === 1) throw new DbError(ErrorCode.corrupt, 'invalid base64url length');
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let bits = 0;
  let acc = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const v = c < 128 ? (b64Index[c] as number) : -1;
    if (v < 0) throw new DbError(ErrorCode.corrupt, 'invalid base64url character');
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) throw new DbError(ErrorCode.corrupt, 'non-canonical base64url');
  return out;
}
