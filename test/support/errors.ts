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

/** Awaits `p` and returns the DbError it rejects with; fails on anything else, or on a result. */
export async function dbErrorOfPromise(p: Promise<unknown>): Promise<DbError> {
  const outcome = await p.then(
    () => new Error('expected a DbError, the promise resolved'),
    (e: unknown) => e,
  );
  if (outcome instanceof DbError) return outcome;
  throw outcome;
}
