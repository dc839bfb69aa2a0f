/**
 * Time-sortable ids made without coordination (`replica.newId()`): the milliseconds and a
 * per-millisecond counter in fixed-width Crockford base32, then the replica id and its
 * incarnation. Lowercase Crockford base32 lists its digits in ASCII order, so comparing two
 * ids as strings compares their times first; the replica id and the incarnation (a number the
 * replica raises each time it opens its store) make ids of different replicas, and of one
 * replica before and after a crash, different even when their times are equal.
 *
 *   01hf7yat00 001 . eu-1 . 1      ->  '01hf7yat00001.eu-1.1' (ULID's time digits, lowercase)
 *   ms (10)   counter (3) replica incarnation
 */
import { checkReplicaId, ID_MAX_CHARS, REPLICA_PATTERN } from './names.js';
import { DbError, ErrorCode } from '../shared/errors.js';

export const TIME_ID_ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
/** Characters of the millisecond part: 50 bits, enough until the year 37648. */
export const TIME_ID_MS_CHARS = 10;
/** Characters of the counter part: 32768 ids per millisecond before the clock is pushed ahead. */
export const TIME_ID_COUNTER_CHARS = 3;
export const TIME_ID_MS_MAX = 32 ** TIME_ID_MS_CHARS - 1;
export const TIME_ID_COUNTER_MAX = 32 ** TIME_ID_COUNTER_CHARS - 1;
/** Between the time, the replica id and the incarnation; never in base32, so the last one splits. */
export const TIME_ID_SEPARATOR = '.';

export interface TimeIdParts {
  ms: number;
  counter: number;
  replica: string;
  incarnation: number;
}

const DIGIT_VALUE = new Map([...TIME_ID_ALPHABET].map((ch, i) => [ch, i]));

function base32(n: number, width?: number): string {
  let out = '';
  let rest = n;
  do {
    out = (TIME_ID_ALPHABET[rest % 32] as string) + out;
    rest = Math.floor(rest / 32);
  } while (rest > 0);
  return width === undefined ? out : out.padStart(width, '0');
}

function fromBase32(text: string): number | undefined {
  let n = 0;
  for (const ch of text) {
    const v = DIGIT_VALUE.get(ch);
    if (v === undefined) return undefined;
    n = n * 32 + v;
  }
  return n;
}

function checkPart(name: string, value: number, max: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > max) {
    throw new DbError(ErrorCode.invalidInput, `time id ${name} must be an integer in 0..${max}, not ${value}`);
  }
}

/** The id of (ms, counter) at `replica` in `incarnation`: a valid document id that sorts by time. */
export function encodeTimeId(parts: TimeIdParts): string {
  checkPart('ms', parts.ms, TIME_ID_MS_MAX);
  checkPart('counter', parts.counter, TIME_ID_COUNTER_MAX);
  checkPart('incarnation', parts.incarnation, Number.MAX_SAFE_INTEGER);
  checkReplicaId(parts.replica);
  return (
    base32(parts.ms, TIME_ID_MS_CHARS) +
    base32(parts.counter, TIME_ID_COUNTER_CHARS) +
    TIME_ID_SEPARATOR +
    parts.replica +
    TIME_ID_SEPARATOR +
    base32(parts.incarnation)
  );
}

const TIME_PREFIX = TIME_ID_MS_CHARS + TIME_ID_COUNTER_CHARS;

/** The parts of an id `encodeTimeId` made, or undefined for any other string. */
export function decodeTimeId(id: string): TimeIdParts | undefined {
  if (typeof id !== 'string' || id.length > ID_MAX_CHARS || id[TIME_PREFIX] !== TIME_ID_SEPARATOR) return undefined;
  const last = id.lastIndexOf(TIME_ID_SEPARATOR);
  if (last <= TIME_PREFIX) return undefined;
  const replica = id.slice(TIME_PREFIX + 1, last);
  const inc = id.slice(last + 1);
  if (!REPLICA_PATTERN.test(replica) || inc.length === 0 || (inc.length > 1 && inc.startsWith('0'))) return undefined;
  const ms = fromBase32(id.slice(0, TIME_ID_MS_CHARS));
  const counter = fromBase32(id.slice(TIME_ID_MS_CHARS, TIME_PREFIX));
  const incarnation = fromBase32(inc);
  if (ms === undefined || counter === undefined || incarnation === undefined) return undefined;
  if (!Number.isSafeInteger(incarnation)) return undefined;
  return { ms, counter, replica, incarnation };
}

/** When a time id was made (ms since the epoch, by its replica's clock), or undefined for other ids. */
export function timeOfId(id: string): number | undefined {
  return decodeTimeId(id)?.ms;
}
