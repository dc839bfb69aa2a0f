/**
 * Document values are JSON: plain objects, arrays, strings, finite numbers, booleans, null.
 * Anything else (undefined, NaN, a Date, a Map, a cycle) is refused with a clear error
 * instead of being silently changed by JSON.stringify.
 */
import { utf8 } from './codec.js';
import type { Limits } from './names.js';
import { DbError, ErrorCode } from '../shared/errors.js';

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

function invalid(path: readonly (string | number)[], what: string): DbError {
  const where = path.map((k) => (typeof k === 'number' ? `[${k}]` : `.${k}`)).join('');
  return new DbError(ErrorCode.invalidInput, `value${where} is not JSON: ${what}`);
}

/**
 * Walks the value; `path` is a stack of keys, turned into text only for an error message,
 * because building a path string per key would dominate the cost of a write.
 */
function check(v: unknown, path: (string | number)[], depth: number, maxDepth: number, seen: Set<object>): void {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(v)) throw invalid(path, `${v} is not a finite number`);
      return;
    case 'object': {
      if (v === null) return;
      if (depth >= maxDepth) throw invalid(path, `nested deeper than ${maxDepth} levels`);
      if (seen.has(v)) throw invalid(path, 'it contains a cycle');
      seen.add(v);
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          path.push(i);
          check(v[i], path, depth + 1, maxDepth, seen);
          path.pop();
        }
      } else {
        const proto = Object.getPrototypeOf(v) as unknown;
        if (proto !== Object.prototype && proto !== null) {
          throw invalid(path, `${(v as object).constructor?.name ?? 'object'} is not a plain object`);
        }
        if (Object.getOwnPropertySymbols(v).length > 0) throw invalid(path, 'it has symbol keys');
        for (const k of Object.keys(v)) {
          path.push(k);
          check((v as Record<string, unknown>)[k], path, depth + 1, maxDepth, seen);
          path.pop();
        }
      }
      seen.delete(v);
      return;
    }
    default:
      throw invalid(path, `${typeof v} is not allowed`);
  }
}

/** Validates a value and returns its JSON text as UTF-8 bytes, within the size limit. */
export function encodeJsonValue(value: unknown, limits: Pick<Limits, 'docBytesMax' | 'valueDepthMax'>): Uint8Array {
  check(value, [], 0, limits.valueDepthMax, new Set());
  const bytes = utf8(JSON.stringify(value));
  if (bytes.length > limits.docBytesMax) {
    throw new DbError(ErrorCode.tooLarge, `document is ${bytes.length} bytes; the limit is ${limits.docBytesMax}`, {
      details: { bytes: bytes.length, limit: limits.docBytesMax },
    });
  }
  return bytes;
}
