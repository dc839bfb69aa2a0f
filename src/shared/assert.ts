/**
 * Programmer-error checks. A failed assertion means the code is wrong, not the input:
 * it throws an AssertionError that nothing should catch.
 */

export class AssertionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AssertionError';
  }
}

export function assert(condition: unknown, message = 'assertion failed'): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/** Returns `value`, asserting it is neither undefined nor null. */
export function must<T>(value: T | undefined | null, message = 'unexpected missing value'): T {
  if (value === undefined || value === null) throw new AssertionError(message);
  return value;
}

export function unreachable(value: never, message = 'unreachable'): never {
  throw new AssertionError(`${message}: ${JSON.stringify(value)}`);
}
