/** Test helpers for the typed errors every bad input must produce. */
import { DbError } from '../../src/shared/errors.js';

/** Runs `fn` and returns the DbError it throws; fails on anything else, or on no error. */
export function dbErrorOf(fn: () => unknown): DbError {
  try {
    fn();
  } catch (e) {
    if (e instanceof DbError) return e;
    throw e;
  }
  throw new Error('expected a DbError, nothing was thrown');
}
