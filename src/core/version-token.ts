/**
 * Version tokens: the opaque, URL-safe strings a reader gets back with a document and hands
 * back with its next write (`If-Match`). A token encodes what the reader saw: the document's
 * whole context, or the dot of one sibling. It is bound to its document and checksummed, so a
 * corrupt, truncated or tampered token, or one taken from another document, is refused with
 * DbError('bad_version') rather than silently misread. Tokens are not secret.
 *
 *   byte 0     format (1)
 *   byte 1     kind: 0 = document context, 1 = sibling dot
 *   bytes 2-5  first 4 bytes of hash128(collection NUL id)
 *   payload    version vector (kind 0) or replica + counter (kind 1), then an HLC
 *   last 4     first 4 bytes of hash128(everything before)
 */
import { Decoder, Encoder, bytesEqual, fromBase64Url, toBase64Url } from './codec.js';
import type { Dot } from './dot.js';
import { hash128 } from './hash.js';
import type { Hlc } from './hlc.js';
import type { WriteBasis } from './record.js';
import type { VersionVector } from './version-vector.js';
import { decodeVv, encodeVv } from './version-vector.js';
import { DbError, ErrorCode } from '../shared/errors.js';

const FORMAT = 1;
const TAG_SEED = 0x70617263;
const SUM_SEED = 0x746f6b6e;
const MAX_TOKEN_CHARS = 8192;

const scratch = new Encoder(256);
const tagScratch = new Encoder(512);

/** The first 4 bytes of hash128(collection NUL id), as one little-endian word. */
function docTag(collection: string, id: string): number {
  const key = tagScratch.reset().string(collection).byte(0).string(id).view();
  const h = hash128(key, TAG_SEED);
  return ((h[0] as number) | ((h[1] as number) << 8) | ((h[2] as number) << 16) | ((h[3] as number) << 24)) >>> 0;
}

function putTag(enc: Encoder, tag: number): Encoder {
  return enc
    .byte(tag)
    .byte(tag >>> 8)
    .byte(tag >>> 16)
    .byte(tag >>> 24);
}

function readTag(dec: Decoder): number {
  const b = dec.raw(4);
  return ((b[0] as number) | ((b[1] as number) << 8) | ((b[2] as number) << 16) | ((b[3] as number) << 24)) >>> 0;
}

/** Appends the checksum and renders the token. */
function seal(enc: Encoder): string {
  const sum = hash128(enc.view(), SUM_SEED);
  enc.raw(sum.subarray(0, 4));
  return toBase64Url(enc.view());
}

/** A whole-document version: the document's context and the latest timestamp of its siblings. */
export function contextToken(collection: string, id: string, context: VersionVector, hlc: Hlc): string {
  const enc = putTag(scratch.reset().byte(FORMAT).byte(0), docTag(collection, id));
  encodeVv(enc, context);
  enc.uint(hlc.ms).uint(hlc.c);
  return seal(enc);
}

/** One sibling's version: its dot and timestamp. */
export function dotToken(collection: string, id: string, dot: Dot, hlc: Hlc): string {
  const enc = putTag(scratch.reset().byte(FORMAT).byte(1), docTag(collection, id));
  enc.string(dot.replica).uint(dot.counter);
  enc.uint(hlc.ms).uint(hlc.c);
  return seal(enc);
}

function bad(message: string, cause?: unknown): DbError {
  return new DbError(ErrorCode.badVersion, message, cause === undefined ? {} : { cause });
}

/** Decodes a token for (collection, id). Throws DbError('bad_version') on anything wrong. */
export function parseToken(collection: string, id: string, token: string): WriteBasis {
  if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_CHARS) {
    throw bad('version token is empty or too long');
  }
  let bytes: Uint8Array;
  try {
    bytes = fromBase64Url(token);
  } catch (cause) {
    throw bad('version token is not valid base64url', cause);
  }
  if (bytes.length < 10) throw bad('version token is truncated');
  const body = bytes.subarray(0, bytes.length - 4);
  if (!bytesEqual(hash128(body, SUM_SEED).subarray(0, 4), bytes.subarray(bytes.length - 4))) {
    throw bad('version token is corrupt (checksum mismatch)');
  }
  const dec = new Decoder(body);
  try {
    if (dec.byte() !== FORMAT) throw bad('unknown version token format');
    const kind = dec.byte();
    if (readTag(dec) !== docTag(collection, id)) {
      throw bad(`version token belongs to another document than ${collection}/${id}`);
    }
    let basis: WriteBasis;
    if (kind === 0) {
      const context = decodeVv(dec);
      basis = { kind: 'context', context, hlc: { ms: dec.uint(), c: dec.uint() } };
    } else if (kind === 1) {
      const replica = dec.string();
      const counter = dec.uint();
      if (counter < 1) throw bad('version token names an invalid write');
      basis = { kind: 'dot', dot: { replica, counter }, hlc: { ms: dec.uint(), c: dec.uint() } };
    } else throw bad('unknown version token kind');
    dec.end();
    return basis;
  } catch (e) {
    if (e instanceof DbError && e.code === ErrorCode.badVersion) throw e;
    throw bad('version token is malformed', e);
  }
}
