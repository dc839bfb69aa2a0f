/**
 * The one place that turns errors into HTTP: DbError codes to statuses, and Fastify's own
 * errors (validation, body parsing, routing) to the same `{ error, message }` body.
 * Never sends a stack trace or an unknown error's message to the client; logs every 5xx.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DbError, ErrorCode } from '../client/index.js';
import { redactUrl } from './client-tokens.js';

/** Codes the HTTP layer adds: they describe a request's bytes or a server fault, never the engine's decisions. */
export const HttpErrorCode = {
  invalidJson: 'invalid_json',
  unsupportedMediaType: 'unsupported_media_type',
  /** An error that is not a DbError: a bug. Its message stays in the log. */
  internal: 'internal',
} as const;
export type HttpErrorCode = (typeof HttpErrorCode)[keyof typeof HttpErrorCode];

/** An error about the request itself, raised before the engine sees it (a body that is not JSON). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: HttpErrorCode | ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The status of each DbError code, and the code the client sees (`closed` reads as `unavailable`). */
export const httpStatusOf: Readonly<Record<ErrorCode, { status: number; code: ErrorCode }>> = {
  invalid_name: { status: 400, code: ErrorCode.invalidName },
  invalid_input: { status: 400, code: ErrorCode.invalidInput },
  bad_version: { status: 400, code: ErrorCode.badVersion },
  unauthorized: { status: 401, code: ErrorCode.unauthorized },
  forbidden: { status: 403, code: ErrorCode.forbidden },
  not_found: { status: 404, code: ErrorCode.notFound },
  conflict: { status: 409, code: ErrorCode.conflict },
  constraint_violation: { status: 409, code: ErrorCode.constraint },
  precondition_failed: { status: 412, code: ErrorCode.preconditionFailed },
  too_large: { status: 413, code: ErrorCode.tooLarge },
  // Our clock or the If-Match version's is far off: not the client's fault, and it may pass.
  clock_skew: { status: 503, code: ErrorCode.clockSkew },
  // The replica closed under the request: the server is going down.
  closed: { status: 503, code: ErrorCode.unavailable },
  unavailable: { status: 503, code: ErrorCode.unavailable },
  // Not the client's fault: the leader cannot reach the sequence's allocator for a new block.
  sequence_exhausted: { status: 503, code: ErrorCode.sequenceExhausted },
  // Bytes in our own storage do not decode, or a broken invariant surfaced as an operating error.
  corrupt: { status: 500, code: ErrorCode.corrupt },
  protocol: { status: 500, code: ErrorCode.protocol },
};

export interface ErrorBody {
  error: string;
  message: string;
  /** For constraint_violation: the kind, field, value and the other document (see constraints.ts). */
  details?: Readonly<Record<string, unknown>>;
}

/** The code a client sees for a status Fastify chose (body parsing, routing, limits). */
function codeOfStatus(status: number): string {
  switch (status) {
    case 404:
      return ErrorCode.notFound;
    case 413:
      return ErrorCode.tooLarge;
    case 415:
      return HttpErrorCode.unsupportedMediaType;
    default:
      return ErrorCode.invalidInput;
  }
}

function isFastifyError(e: unknown): e is FastifyError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === 'string';
}

/** Status and body for any thrown value. Only DbError, HttpError and Fastify's 4xx errors keep their message. */
export function describeError(e: unknown): { status: number; body: ErrorBody } {
  if (e instanceof DbError) {
    const { status, code } = httpStatusOf[e.code];
    // Only a refused constraint's details are for the client: it needs them to resolve it.
    if (e.code === ErrorCode.constraint && e.details !== undefined) {
      return { status, body: { error: code, message: e.message, details: e.details } };
    }
    return { status, body: { error: code, message: e.message } };
  }
  if (e instanceof HttpError) return { status: e.status, body: { error: e.code, message: e.message } };
  if (isFastifyError(e)) {
    if (e.validation !== undefined) {
      // Path parameters are names (collection, id); everything else is input.
      const code = e.validationContext === 'params' ? ErrorCode.invalidName : ErrorCode.invalidInput;
      return { status: 400, body: { error: code, message: e.message } };
    }
    switch (e.code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return { status: 413, body: { error: ErrorCode.tooLarge, message: 'the request body is over its limit' } };
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return {
          status: 415,
          body: {
            error: HttpErrorCode.unsupportedMediaType,
            message: 'send the body as content-type: application/json',
          },
        };
      // Path segments carry names: a malformed or over-long one is a bad name.
      case 'FST_ERR_BAD_URL':
        return {
          status: 400,
          body: { error: ErrorCode.invalidName, message: 'a path segment is not valid percent-encoded UTF-8' },
        };
      case 'FST_ERR_MAX_PARAM_LENGTH':
        return { status: 400, body: { error: ErrorCode.invalidName, message: 'a path parameter is too long' } };
    }
    const status = e.statusCode;
    if (status !== undefined && status >= 400 && status < 500) {
      return { status, body: { error: codeOfStatus(status), message: e.message } };
    }
  }
  return { status: 500, body: { error: HttpErrorCode.internal, message: 'internal error' } };
}

/** Sends `e` as `{ error, message }`; a 5xx is logged with its stack (a 503 as a warning: it is expected at shutdown). */
export function sendError(e: unknown, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const { status, body } = describeError(e);
  if (status === 503) request.log.warn({ err: e }, body.message);
  else if (status >= 500) request.log.error({ err: e }, `${request.method} ${redactUrl(request.url)} failed`);
  return reply.code(status).type('application/json; charset=utf-8').send(body);
}

/** Routes every error and unknown route through `sendError`. */
export function registerErrorHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => sendError(error, request, reply));
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    return reply.code(404).send({ error: ErrorCode.notFound, message: `no route ${request.method} ${path}` });
  });
}

/** For Fastify's `frameworkErrors` option: a malformed URL or an over-long path parameter, both found before routing. */
export function frameworkErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  void sendError(error, request, reply);
}
