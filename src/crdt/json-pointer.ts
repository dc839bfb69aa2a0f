/**
 * JSON pointers (RFC 6901) name the fields of a map document: '' is the document itself,
 * '/title' a field, '/address/city' a nested one; '~1' stands for '/' in a key and '~0'
 * for '~'. Pointers stay in their escaped form everywhere, so one path has one spelling and
 * "is under" is a prefix test.
 */
import { DbError, ErrorCode } from '../shared/errors.js';
import { isJsonPointer } from '../core/index.js';

export const ROOT = '';

/** Throws invalid_input unless `path` is a JSON pointer within `maxDepth` keys. */
export function checkPointer(path: unknown, maxDepth: number): string {
  if (typeof path !== 'string') throw new DbError(ErrorCode.invalidInput, 'path must be a JSON pointer string');
  if (!isJsonPointer(path)) {
    throw new DbError(
      ErrorCode.invalidInput,
      `path ${JSON.stringify(path)} is not a JSON pointer ('' or '/key/key', with ~0 for ~ and ~1 for /)`,
    );
  }
  if (path.length > 1024) throw new DbError(ErrorCode.invalidInput, 'path is longer than 1024 characters');
  if (segments(path).length > maxDepth) {
    throw new DbError(ErrorCode.invalidInput, `path ${path} is nested deeper than ${maxDepth} levels`);
  }
  return path;
}

/** The escaped keys of a pointer: '/a/b~1c' -> ['a', 'b~1c']. */
export function segments(path: string): string[] {
  return path === ROOT ? [] : path.slice(1).split('/');
}

export function escapeKey(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

export function unescapeKey(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}

export function child(path: string, key: string): string {
  return `${path}/${escapeKey(key)}`;
}

/** True when `path` is `base` or lies inside it. */
export function atOrUnder(path: string, base: string): boolean {
  return base === ROOT || path === base || path.startsWith(`${base}/`);
}

/** The pointers of every strict ancestor of `path`, outermost first, without the root. */
export function ancestors(path: string): string[] {
  const out: string[] = [];
  const segs = segments(path);
  let p = ROOT;
  for (let i = 0; i < segs.length - 1; i++) {
    p = `${p}/${segs[i] as string}`;
    out.push(p);
  }
  return out;
}
