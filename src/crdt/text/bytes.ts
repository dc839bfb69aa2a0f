/**
 * The byte reader and writer of the text formats (snapshot.ts, delta.ts), with core/codec's
 * rules: unsigned LEB128 varints of at most 8 bytes, no overlong form, safe integers only, and
 * length-prefixed bytes. They are module state and plain functions rather than objects, unlike
 * core's Decoder and Encoder: optimized code that embeds a short-lived object is thrown away at
 * the next GC, which left every load and every merge after a GC running cold. Neither is
 * reentrant: a format reads (or writes) one buffer from start to finish, then lets go of it.
 */
import { fromUtf8 } from '../../core/codec.js';
import { DbError, ErrorCode } from '../../shared/errors.js';

const NO_BYTES = new Uint8Array(0);

function fail(what: string): never {
  throw new DbError(ErrorCode.corrupt, `corrupt encoding: ${what} at byte ${rPos}`);
}

// ---- reading ----

let rBuf: Uint8Array = NO_BYTES;
let rPos = 0;

/** Starts reading `bytes` from the start. */
export function readStart(bytes: Uint8Array): void {
  rBuf = bytes;
  rPos = 0;
}

/** Lets go of the bytes read (call it in a finally). */
export function readStop(): void {
  rBuf = NO_BYTES;
}

/** The read position, for loops that read one-byte varints inline (see readUint). */
export function readPos(): number {
  return rPos;
}

export function setReadPos(pos: number): void {
  rPos = pos;
}

export function readByte(): number {
  if (rPos >= rBuf.length) fail('unexpected end');
  return rBuf[rPos++] as number;
}

/**
 * An unsigned varint. Hot loops read the one-byte form inline: `v = bytes[pos]; if (v < 0x80)
 * pos++; else { setReadPos(pos); v = readUint(); pos = readPos(); }` (past the end `v` is
 * undefined, and readUint fails).
 */
export function readUint(): number {
  const buf = rBuf;
  let pos = rPos;
  if (pos >= buf.length) fail('unexpected end');
  let b = buf[pos++] as number;
  if (b < 0x80) {
    rPos = pos;
    return b;
  }
  let result = b & 0x7f;
  let scale = 0x80;
  for (let i = 1; ; i++) {
    if (i >= 8) fail('varint too long');
    if (pos >= buf.length) fail('unexpected end');
    b = buf[pos++] as number;
    result += (b & 0x7f) * scale;
    if (b < 0x80) {
      if (b === 0) fail('overlong varint');
      break;
    }
    scale *= 0x80;
  }
  if (!Number.isSafeInteger(result)) fail('integer out of range');
  rPos = pos;
  return result;
}

/** Length-prefixed bytes (a view into the input). */
export function readBytes(): Uint8Array {
  const n = readUint();
  if (n > rBuf.length - rPos) fail('length past end');
  const out = rBuf.subarray(rPos, rPos + n);
  rPos += n;
  return out;
}

/** A length-prefixed UTF-8 string. */
export function readString(): string {
  return fromUtf8(readBytes());
}

/** Throws unless every byte was read. */
export function readEnd(): void {
  if (rPos !== rBuf.length) fail('trailing bytes');
}

// ---- writing ----

let wBuf: Uint8Array = NO_BYTES;
let wPos = 0;

/** Starts writing into a fresh buffer of `capacity` bytes (it grows as needed). */
export function writeStart(capacity: number): void {
  wBuf = new Uint8Array(Math.max(16, capacity));
  wPos = 0;
}

/** The bytes written (a copy of their exact length); lets go of the buffer. */
export function writeFinish(): Uint8Array {
  const out = wBuf.slice(0, wPos);
  wBuf = NO_BYTES;
  return out;
}

/** Bytes written so far. */
export function writeLength(): number {
  return wPos;
}

function ensure(n: number): void {
  if (wPos + n <= wBuf.length) return;
  let size = wBuf.length * 2;
  while (size < wPos + n) size *= 2;
  const next = new Uint8Array(size);
  next.set(wBuf.subarray(0, wPos));
  wBuf = next;
}

export function writeByte(b: number): void {
  if (wPos >= wBuf.length) ensure(1);
  wBuf[wPos++] = b & 0xff;
}

/** An unsigned integer up to Number.MAX_SAFE_INTEGER, as LEB128. */
export function writeUint(n: number): void {
  if (wPos + 8 > wBuf.length) ensure(8);
  if (n < 0x80 && n >= 0 && (n | 0) === n) {
    wBuf[wPos++] = n;
    return;
  }
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a safe unsigned integer: ${n}`);
  while (n >= 0x80) {
    wBuf[wPos++] = n % 0x80 | 0x80;
    n = Math.floor(n / 0x80);
  }
  wBuf[wPos++] = n;
}

export function writeRaw(bytes: Uint8Array): void {
  ensure(bytes.length);
  wBuf.set(bytes, wPos);
  wPos += bytes.length;
}

/** Length-prefixed bytes. */
export function writeBytes(bytes: Uint8Array): void {
  writeUint(bytes.length);
  writeRaw(bytes);
}

/**
 * A length-prefixed string whose bytes are `encode(text)` (UTF-8 or WTF-8, which agree on
 * ASCII): ASCII text is copied straight in, anything else goes through `encode`.
 */
export function writeText(text: string, encode: (s: string) => Uint8Array): void {
  const n = text.length;
  if (n < 0x4000) {
    const start = wPos;
    writeUint(n);
    ensure(n);
    const buf = wBuf;
    let pos = wPos;
    let i = 0;
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) break;
      buf[pos++] = c;
    }
    if (i === n) {
      wPos = pos;
      return;
    }
    wPos = start;
  }
  writeBytes(encode(text));
}
