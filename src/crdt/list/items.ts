/**
 * The items of a list: JSON values, checked and made canonical when inserted, frozen once held
 * (a doc hands them out without copying, so a caller can never change what it holds), and read
 * back from a peer's bytes only after the bytes are checked as JSON text within the depth bound.
 */
import { DEFAULT_LIMITS, encodeJsonValue, fromUtf8, isJsonText, utf8, type JsonValue } from '../../core/index.js';
import { DbError, ErrorCode } from '../../shared/errors.js';
import { readBytes, writeText } from '../text/bytes.js';
import { canonicalJson } from '../canonical-json.js';

/** Freezes a value and everything in it (values are trees: JSON has no cycles). */
function deepFreeze(v: JsonValue): JsonValue {
  if (typeof v !== 'object' || v === null || Object.isFrozen(v)) return v;
  if (Array.isArray(v)) for (const x of v) deepFreeze(x);
  else for (const k of Object.keys(v)) deepFreeze(v[k] as JsonValue);
  return Object.freeze(v) as JsonValue;
}

/**
 * The item to hold for a value given to insert: a frozen copy with its object keys in canonical
 * order (so equal values are equal items on every replica), and -0 as 0 (JSON has no -0).
 * Throws DbError('invalid_input') when the value is not JSON or nests deeper than a document
 * value may, DbError('too_large') when its JSON text is larger than a document value may be.
 */
export function toItem(value: unknown): JsonValue {
  switch (typeof value) {
    case 'string':
      // Only a string that might be too long pays for measuring it.
      if (value.length * 3 > DEFAULT_LIMITS.docBytesMax) encodeJsonValue(value, DEFAULT_LIMITS);
      return value;
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) encodeJsonValue(value, DEFAULT_LIMITS); // throws the usual error
      return value === 0 ? 0 : value;
    default:
      if (value === null) return null;
      encodeJsonValue(value, DEFAULT_LIMITS);
      return deepFreeze(JSON.parse(canonicalJson(value as JsonValue)) as JsonValue);
  }
}

/** Writes items, each as length-prefixed JSON text (UTF-8); the count is the reader's to know. */
export function writeItems(items: readonly JsonValue[]): void {
  for (const item of items) writeText(JSON.stringify(item), utf8);
}

/** Reads `count` items written by writeItems. Throws DbError('corrupt'). */
export function readItems(count: number): JsonValue[] {
  const out: JsonValue[] = [];
  // No array of `count` up front: a corrupt count must fail at the end of the bytes, not allocate.
  for (let i = 0; i < count; i++) out.push(readItem(readBytes()));
  return out;
}

function readItem(bytes: Uint8Array): JsonValue {
  if (!isJsonText(bytes, DEFAULT_LIMITS.valueDepthMax)) corrupt('not JSON text');
  return settle(JSON.parse(fromUtf8(bytes)) as JsonValue);
}

function corrupt(what: string): never {
  throw new DbError(ErrorCode.corrupt, `corrupt list item: ${what}`);
}

/**
 * A parsed item made what toItem would have made of it: numbers JSON cannot carry (1e999 parses
 * as Infinity) are refused, -0 becomes 0, and the whole is frozen. Replicas that read an item
 * and replicas that read it re-encoded must hold the same value.
 */
function settle(v: JsonValue): JsonValue {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) corrupt('number out of range');
    return v === 0 ? 0 : v;
  }
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) for (let i = 0; i < v.length; i++) v[i] = settle(v[i] as JsonValue);
  else for (const k of Object.keys(v)) v[k] = settle(v[k] as JsonValue);
  return Object.freeze(v) as JsonValue;
}
