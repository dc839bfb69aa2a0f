/**
 * Names and limits. Collection names and document ids appear in URLs, file-backed indexes
 * and logs, so they are checked at every entry point; names starting with `_` are reserved
 * for the system (`_config`, `_batch`).
 */
import { DbError, ErrorCode } from '../shared/errors.js';

export const COLLECTION_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
export const REPLICA_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
export const ID_MAX_CHARS = 256;

export const DEFAULT_LIMITS = {
  /** Largest JSON text of one document value, in bytes. */
  docBytesMax: 1024 * 1024,
  /** Most documents in one atomic batch. */
  batchDocsMax: 10_000,
  /** Most bytes of values in one atomic batch (it must fit one replication frame). */
  batchBytesMax: 16 * 1024 * 1024,
  /** Deepest nesting of arrays and objects in a value. */
  valueDepthMax: 64,
} as const;
export type Limits = { docBytesMax: number; batchDocsMax: number; batchBytesMax: number; valueDepthMax: number };

/** A short, safe rendering of any value for an error message (JSON.stringify throws on some). */
function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  return typeof value === 'object' ? (value === null ? 'null' : 'an object') : `a ${typeof value}`;
}

export function checkCollection(name: unknown): string {
  if (typeof name !== 'string' || !COLLECTION_PATTERN.test(name)) {
    throw new DbError(
      ErrorCode.invalidName,
      `invalid collection name ${describe(name)}: use 1-64 letters, digits, '_', '.', '-', starting with a letter`,
    );
  }
  return name;
}

export function checkReplicaId(name: unknown): string {
  if (typeof name !== 'string' || !REPLICA_PATTERN.test(name)) {
    throw new DbError(
      ErrorCode.invalidName,
      `invalid replica id ${describe(name)}: use 1-64 letters, digits, '_', '.', ':', '-', starting with a letter or digit`,
    );
  }
  return name;
}

// Control characters (C0, DEL, C1) and lone surrogates cannot round-trip through URLs and UTF-8.
const BAD_ID_CHARS =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u001f\u007f-\u009f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export function checkDocId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0 || id.length > ID_MAX_CHARS) {
    throw new DbError(ErrorCode.invalidName, `invalid document id: use 1-${ID_MAX_CHARS} characters`);
  }
  if (id.startsWith('_')) {
    throw new DbError(
      ErrorCode.invalidName,
      `invalid document id ${JSON.stringify(id)}: ids starting with '_' are reserved`,
    );
  }
  if (BAD_ID_CHARS.test(id)) {
    throw new DbError(
      ErrorCode.invalidName,
      'invalid document id: control characters and lone surrogates are not allowed',
    );
  }
  return id;
}
