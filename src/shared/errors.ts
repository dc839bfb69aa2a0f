/**
 * Operating errors: bad input, conflicts, corrupt data, peers that break the protocol.
 * Every one carries a stable `code`; only server/ maps codes to HTTP statuses.
 * Programmer errors (broken invariants) use `assert` instead and are never caught.
 */

export const ErrorCode = {
  /** A name (collection, id, replica) does not match the documented pattern. */
  invalidName: 'invalid_name',
  /** A value or argument is malformed (not JSON, wrong type, missing field). */
  invalidInput: 'invalid_input',
  /** A document or batch exceeds a configured limit. */
  tooLarge: 'too_large',
  /** A version token is corrupt, forged, or belongs to another document. */
  badVersion: 'bad_version',
  /** The write's version does not cover the document's current state. */
  conflict: 'conflict',
  /** Bytes from storage or a peer do not decode. */
  corrupt: 'corrupt',
  /** A peer broke the replication protocol. */
  protocol: 'protocol',
  /** A remote clock is further ahead than the configured bound allows. */
  clockSkew: 'clock_skew',
  /** The replica or storage was closed. */
  closed: 'closed',
  /** Not found. */
  notFound: 'not_found',
  /** Credentials are missing or wrong. */
  unauthorized: 'unauthorized',
  /** Credentials do not allow this. */
  forbidden: 'forbidden',
  /** A create-only write found the document already there. */
  preconditionFailed: 'precondition_failed',
  /** The replica is shutting down or not ready. */
  unavailable: 'unavailable',
  /** A local write would break a declared constraint (a unique field, a reference). */
  constraint: 'constraint_violation',
  /** A sequence's numbers granted to this leader are used up and no new block can be had now. */
  sequenceExhausted: 'sequence_exhausted',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class DbError extends Error {
  readonly code: ErrorCode;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'DbError';
    this.code = code;
    this.details = options.details;
  }
}

/** Conflict on write: the given version does not cover every current sibling. */
export class ConflictError extends DbError {
  constructor(message: string, details?: Record<string, unknown>) {
    super(ErrorCode.conflict, message, details === undefined ? {} : { details });
    this.name = 'ConflictError';
  }
}

export function isDbError(e: unknown, code?: ErrorCode): e is DbError {
  return e instanceof DbError && (code === undefined || e.code === code);
}
