/**
 * The HTTP API of docs/http-api.md over one Database: documents, batches, the changes feed,
 * status and metrics. Routes validate their input with JSON schemas and leave every decision
 * to the engine; errors travel as DbError to errors.ts, the only place that picks a status.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { DbError, ErrorCode } from '../client/index.js';
import type { Database, FeedEntry, JsonValue, WriteOp, WriteResult } from '../client/index.js';
import { LiveFeeds, longpoll, streamChanges } from './changes-feed.js';
import type { FeedSource } from './changes-feed.js';
import type { ConflictEntry, PatchOp } from '../client/index.js';
import { HttpError, HttpErrorCode } from './errors.js';
import type { Metrics } from './metrics.js';
import type { PeerStatus } from './peer-status.js';
import {
  governingCollection,
  mayRead,
  readRefusal,
  readsEverything,
  writeRefusal,
} from '../replication/session-access.js';
import type { TokenGrant } from '../replication/session-access.js';
import type { TokenRegistry } from './client-tokens.js';

export interface HttpApiDeps {
  db: Database;
  metrics: Metrics;
  peers: () => PeerStatus[];
  /** While true, write routes answer 503 unavailable (reads and feeds go on). */
  isShuttingDown: () => boolean;
  /** Interval of the `: heartbeat` comment on event streams (default 15 s). */
  sseHeartbeatMs?: number;
  /** Client tokens: when configured, every route but /metrics needs one (see docs/http-api.md). */
  tokens?: TokenRegistry;
}

/**
 * The Ajv options these schemas need: an unknown property is an error rather than silently
 * dropped (Fastify's default), and querystrings and headers, which are text, are coerced to
 * the schema's numbers.
 */
export const ajvOptions = { removeAdditional: false, coerceTypes: 'array', useDefaults: true } as const;

const LONGPOLL_TIMEOUT_DEFAULT_MS = 30_000;
const LONGPOLL_TIMEOUT_MAX_MS = 60_000;
const HEARTBEAT_DEFAULT_MS = 15_000;
const STREAM_PAGE_SIZE = 1000;
/** A batch holds at most 16 MiB of values (the engine's limit); 1 MiB more for its ops' framing. */
export const BATCH_BODY_LIMIT_BYTES = 17 * 1024 * 1024;

// ---------------------------------------------------------------- schemas

const docParams = {
  type: 'object',
  required: ['collection', 'id'],
  additionalProperties: false,
  // Names are checked by the engine, whose messages say what a valid name is (invalid_name).
  properties: { collection: { type: 'string' }, id: { type: 'string' } },
} as const;

const collectionParams = {
  type: 'object',
  required: ['collection'],
  additionalProperties: false,
  properties: { collection: { type: 'string' } },
} as const;

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

const nameParams = {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: { name: { type: 'string' } },
} as const;

/** How long POST /sequences/:name/next may wait for a block (ms). */
const SEQUENCE_WAIT_MAX_MS = 30_000;
const nextQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { waitMs: { type: 'integer', minimum: 0, maximum: SEQUENCE_WAIT_MAX_MS } },
} as const;

/** The collection whose rights govern sequences (a system collection: only '*' rights reach it). */
const SEQUENCES_PSEUDO_COLLECTION = '_sequences';
/** Triggers, like sequences, need a right on every collection when tokens are configured. */
const TRIGGERS_PSEUDO_COLLECTION = '_triggers';

const writeHeaders = {
  type: 'object',
  properties: { 'if-match': { type: 'string' }, 'if-none-match': { type: 'string' } },
} as const;

const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: { after: { type: 'string' }, limit: { type: 'integer', minimum: 1 } },
} as const;

const changesQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    since: { type: 'integer', minimum: 0 },
    limit: { type: 'integer', minimum: 1 },
    feed: { type: 'string', enum: ['normal', 'longpoll', 'eventsource'] },
    timeout: { type: 'integer', minimum: 0 },
  },
} as const;

const changesHeaders = {
  type: 'object',
  properties: { 'last-event-id': { type: 'integer', minimum: 0 } },
} as const;

const conflictsQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    collection: { type: 'string' },
    after: { type: 'string' },
    since: { type: 'integer', minimum: 0 },
    limit: { type: 'integer', minimum: 1 },
    feed: { type: 'string', enum: ['normal', 'longpoll', 'eventsource'] },
    timeout: { type: 'integer', minimum: 0 },
  },
} as const;

// Operations are validated by the engine, whose messages name the operation at fault.
const patchBody = {
  type: 'object',
  required: ['ops'],
  additionalProperties: false,
  properties: { ops: { type: 'array' } },
} as const;

const batchOp = {
  type: 'object',
  required: ['op', 'collection', 'id'],
  additionalProperties: false,
  properties: {
    op: { type: 'string', enum: ['put', 'delete', 'patch'] },
    collection: { type: 'string' },
    id: { type: 'string' },
    value: {},
    ops: { type: 'array' },
    version: { type: 'string' },
  },
  allOf: [
    { if: { properties: { op: { const: 'put' } } }, then: { required: ['value'] } },
    { if: { properties: { op: { const: 'patch' } } }, then: { required: ['ops'] } },
  ],
} as const;

// The operation count is the engine's limit (413 too_large), not a schema's (400).
const batchBody = {
  type: 'object',
  required: ['ops'],
  additionalProperties: false,
  properties: { ops: { type: 'array', items: batchOp } },
} as const;

// ---------------------------------------------------------------- request types

interface DocParams {
  collection: string;
  id: string;
}
interface WriteHeaders {
  'if-match'?: string;
  'if-none-match'?: string;
}
interface ListQuery {
  after?: string;
  limit?: number;
}
interface ChangesQuery {
  since?: number;
  limit?: number;
  feed?: 'normal' | 'longpoll' | 'eventsource';
  timeout?: number;
}
interface BatchBody {
  ops: {
    op: 'put' | 'delete' | 'patch';
    collection: string;
    id: string;
    value?: unknown;
    ops?: unknown[];
    version?: string;
  }[];
}
interface ConflictsQuery {
  collection?: string;
  after?: string;
  since?: number;
  limit?: number;
  feed?: 'normal' | 'longpoll' | 'eventsource';
  timeout?: number;
}

// ---------------------------------------------------------------- helpers

/** The version in an `If-Match` header: `v`, `"v"` and `W/"v"` all name version `v`. */
export function versionOfIfMatch(header: string): string {
  let v = header.trim();
  if (v.startsWith('W/')) v = v.slice(2);
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
  if (v === '*') throw new DbError(ErrorCode.badVersion, 'If-Match: * is not supported: send the version of a GET');
  return v;
}

/** An ETag header value: the version, quoted. */
export function etagOf(version: string): string {
  return `"${version}"`;
}

function writeConditions(headers: WriteHeaders, allowIfNoneMatch: boolean): { version?: string; ifAbsent?: boolean } {
  const out: { version?: string; ifAbsent?: boolean } = {};
  const ifMatch = headers['if-match'];
  if (ifMatch !== undefined) out.version = versionOfIfMatch(ifMatch);
  const ifNoneMatch = headers['if-none-match'];
  if (!allowIfNoneMatch && ifNoneMatch !== undefined) {
    throw new DbError(ErrorCode.invalidInput, 'If-None-Match applies to PUT only (create if absent)');
  }
  if (allowIfNoneMatch && ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() !== '*') {
      throw new DbError(ErrorCode.invalidInput, 'If-None-Match takes only * (create the document if it is absent)');
    }
    out.ifAbsent = true;
  }
  return out;
}

const written = (r: WriteResult): { id: string; version: string } => ({ id: r.id, version: r.version });

/**
 * Ajv coerces scalars to a schema's type: right for querystrings, which are text, wrong for
 * a JSON body, where it would turn `"id": 5` into the id "5". So a batch's string fields are
 * checked for their JSON type before the schema runs.
 */
function checkBatchFieldTypes(body: unknown): void {
  const ops = (body as { ops?: unknown } | null | undefined)?.ops;
  if (!Array.isArray(ops)) return; // the schema reports it
  ops.forEach((op: unknown, i) => {
    if (op === null || typeof op !== 'object') return;
    for (const field of ['op', 'collection', 'id', 'version'] as const) {
      const v = (op as Record<string, unknown>)[field];
      if (v !== undefined && typeof v !== 'string') {
        throw new DbError(ErrorCode.invalidInput, `body/ops/${i}/${field} must be string`);
      }
    }
  });
}

function toWriteOps(body: BatchBody): WriteOp[] {
  return body.ops.map((op, i): WriteOp => {
    const version = op.version === undefined ? {} : { version: op.version };
    if (op.op === 'put') {
      if (op.ops !== undefined)
        throw new DbError(ErrorCode.invalidInput, `body/ops/${i}: a put takes a value, not ops`);
      return { type: 'put', collection: op.collection, id: op.id, value: op.value, ...version };
    }
    if (op.op === 'patch') {
      if (op.value !== undefined)
        throw new DbError(ErrorCode.invalidInput, `body/ops/${i}: a patch takes ops, not a value`);
      return { type: 'patch', collection: op.collection, id: op.id, ops: op.ops as PatchOp[], ...version };
    }
    if (op.value !== undefined || op.ops !== undefined) {
      throw new DbError(ErrorCode.invalidInput, `body/ops/${i}: a delete takes no value`);
    }
    return { type: 'delete', collection: op.collection, id: op.id, ...version };
  });
}

// ---------------------------------------------------------------- access

/** Routes open without a token: metrics are for operators (no document data; bind or proxy them). */
const OPEN_ROUTES: ReadonlySet<string> = new Set(['/metrics']);

/**
 * Removes `?token=` from the query, before validation (the routes' querystring schemas know
 * nothing of it), and returns it. Only a GET may carry it: EventSource sets no headers, and
 * anything else has no excuse to put a token where proxies log it.
 */
function takeQueryToken(request: FastifyRequest): unknown {
  const query = request.query as Record<string, unknown> | undefined;
  const fromQuery = query?.['token'];
  if (fromQuery === undefined) return undefined;
  delete query?.['token'];
  if (request.method !== 'GET') {
    throw new DbError(
      ErrorCode.invalidInput,
      '?token= is accepted on GET only (for EventSource): send Authorization: Bearer TOKEN',
    );
  }
  return fromQuery;
}

/** The token of a request: `Authorization: Bearer TOKEN`, or `?token=` on a GET. */
function presentedToken(request: FastifyRequest, fromQuery: unknown): string | undefined {
  const header = request.headers.authorization;
  if (header !== undefined) {
    const m = /^Bearer +(\S+) *$/i.exec(header);
    if (m === null) throw new DbError(ErrorCode.unauthorized, 'the Authorization header must be "Bearer TOKEN"');
    if (fromQuery !== undefined) {
      throw new DbError(ErrorCode.invalidInput, 'send the token once: in the Authorization header or in ?token=');
    }
    return m[1];
  }
  if (Array.isArray(fromQuery)) throw new DbError(ErrorCode.invalidInput, 'send ?token= once');
  return typeof fromQuery === 'string' ? fromQuery : undefined;
}

/** Throws forbidden unless `grant` (null: no tokens, anything goes) may read, or write, `collection`. */
function need(grant: TokenGrant | null, right: 'read' | 'write', collection: string): void {
  if (grant === null) return;
  const why = right === 'read' ? readRefusal(grant, collection) : writeRefusal(grant, collection);
  if (why !== null) throw new DbError(ErrorCode.forbidden, why);
}

/** Entries of collections `grant` may not read are left out (their documents' settings too). */
function readableBy<T extends { collection: string; id: string }>(grant: TokenGrant | null, entries: T[]): T[] {
  if (grant === null || readsEverything(grant)) return entries;
  return entries.filter((e) => mayRead(grant, governingCollection(e.collection, e.id)));
}

/** Every route of this API, for the token check; other routes (the web pages) are static and open. */
const API_ROUTES: ReadonlySet<string> = new Set([
  '/db/:collection/_config',
  '/db/:collection/:id',
  '/db/:collection',
  '/db/_batch',
  '/sequences/:name',
  '/sequences/:name/next',
  '/triggers',
  '/triggers/:name',
  '/conflicts',
  '/changes',
  '/status',
]);

/** Pages the changes feed scanned per read when a token's filter keeps nothing: a bound on one request's work. */
const FILTERED_PAGES_MAX = 100;

// ---------------------------------------------------------------- routes

/**
 * Registers the routes and the JSON body parser on `app`, which must use `ajvOptions` (as
 * buildApp's does) and route errors through errors.ts.
 */
export function registerHttpApi(app: FastifyInstance, deps: HttpApiDeps): void {
  const { db, metrics } = deps;
  const feeds = new LiveFeeds();
  let closing = false;
  const shuttingDown = (): boolean => closing || deps.isShuttingDown();
  const heartbeatMs = deps.sseHeartbeatMs ?? HEARTBEAT_DEFAULT_MS;
  const tokens = deps.tokens?.configured === true ? deps.tokens : undefined;
  /** Each request's grant; absent: no tokens configured, or an open route. */
  const grants = new WeakMap<FastifyRequest, TokenGrant>();
  const grantOf = (request: FastifyRequest): TokenGrant | null => grants.get(request) ?? null;

  // First of every request's hooks, so a request without a valid token learns nothing else
  // (not even that the server is shutting down).
  app.addHook('onRequest', async (request, reply) => {
    const fromQuery = takeQueryToken(request);
    const route = request.routeOptions.url;
    if (tokens === undefined || route === undefined || OPEN_ROUTES.has(route) || !API_ROUTES.has(route)) return;
    const credential = tokens.resolve(presentedToken(request, fromQuery));
    if (typeof credential === 'object') {
      grants.set(request, credential);
      return;
    }
    reply.header('www-authenticate', 'Bearer realm="polyarch"');
    throw new DbError(
      ErrorCode.unauthorized,
      credential === 'none'
        ? 'this server needs a client token: send Authorization: Bearer TOKEN (or ?token= on a GET)'
        : 'the client token is not valid',
    );
  });
  const changesFor = async (
    grant: TokenGrant | null,
    since: number,
    limit: number | undefined,
  ): Promise<{ results: FeedEntry[]; last_seq: number }> => {
    const page = limit === undefined ? {} : { limit };
    let read = await db.changes({ since, ...page });
    if (grant === null || readsEverything(grant)) return read;
    // A page all of other collections says little: read on, so a live form has something to wake for.
    let results = readableBy(grant, read.results);
    for (let pages = 1; results.length === 0 && read.results.length > 0 && pages < FILTERED_PAGES_MAX; pages++) {
      read = await db.changes({ since: read.last_seq, ...page });
      results = readableBy(grant, read.results);
    }
    return { results, last_seq: read.last_seq };
  };

  // A closing server ends its live feeds instead of waiting out their timeouts.
  app.addHook('preClose', async () => {
    closing = true;
    feeds.stopAll();
  });

  // Any JSON value is a document, `null` and `"text"` included; bad JSON is invalid_json and
  // any other content type is refused with 415 (no parser matches it).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, JSON.parse(body as string) as unknown);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      done(new HttpError(400, HttpErrorCode.invalidJson, `the body is not JSON: ${why}`), undefined);
    }
  });

  const refuseWhileShuttingDown = async (): Promise<void> => {
    if (shuttingDown()) throw new DbError(ErrorCode.unavailable, 'this leader is shutting down: write to another');
  };

  // Settings: a static segment, so it wins over /db/:collection/:id.
  app.get<{ Params: { collection: string } }>(
    '/db/:collection/_config',
    { schema: { params: collectionParams, querystring: noQuery } },
    async (request) => {
      const { collection } = request.params;
      need(grantOf(request), 'read', collection);
      return { collection, ...db.collection(collection).config() };
    },
  );

  app.put<{ Params: { collection: string }; Body: unknown }>(
    '/db/:collection/_config',
    { onRequest: refuseWhileShuttingDown, schema: { params: collectionParams, querystring: noQuery, body: {} } },
    async (request) => {
      const { collection } = request.params;
      need(grantOf(request), 'write', collection);
      const config = await db.collection(collection).configure(bodyOf(request, 'settings need') as never);
      metrics.writes.inc();
      return { collection, ...config, replicated: true };
    },
  );

  app.patch<{ Params: DocParams; Headers: WriteHeaders; Body: { ops: PatchOp[] } }>(
    '/db/:collection/:id',
    {
      onRequest: refuseWhileShuttingDown,
      schema: { params: docParams, querystring: noQuery, headers: writeHeaders, body: patchBody },
    },
    async (request, reply) => {
      const { collection, id } = request.params;
      need(grantOf(request), 'write', collection);
      const { version } = writeConditions(request.headers, false);
      const result = await db
        .collection(collection)
        .patch(id, request.body.ops, version === undefined ? {} : { version });
      metrics.writes.inc();
      return reply.header('etag', etagOf(result.version)).send(written(result));
    },
  );

  app.get<{ Querystring: ConflictsQuery; Headers: { 'last-event-id'?: number } }>(
    '/conflicts',
    { schema: { querystring: conflictsQuery, headers: changesHeaders } },
    async (request, reply) => {
      const { collection, after, limit, feed = 'normal' } = request.query;
      const scope = collection === undefined ? {} : { collection };
      const grant = grantOf(request);
      if (collection !== undefined) need(grant, 'read', collection);
      if (feed === 'normal') {
        if (request.query.since !== undefined) {
          throw new DbError(
            ErrorCode.invalidInput,
            'since applies to the live forms (feed=longpoll|eventsource); page with after',
          );
        }
        const page = await db.conflicts({
          ...scope,
          ...(after === undefined ? {} : { after }),
          ...(limit === undefined ? {} : { limit }),
        });
        return { results: readableBy(grant, page.results), next: page.next };
      }
      if (after !== undefined) throw new DbError(ErrorCode.invalidInput, 'the live forms take since, not after');
      if (closing) throw new DbError(ErrorCode.unavailable, 'this server is closing');
      const source: FeedSource<ConflictEntry> = {
        read: async (since, max) => {
          const page = await db.conflicts({
            ...scope,
            after: String(since),
            ...(max === undefined ? {} : { limit: max }),
          });
          return { results: readableBy(grant, page.results), last_seq: page.last_seq };
        },
        subscribe: (l) => {
          const offConflict = db.onConflict((e) =>
            (collection === undefined || e.collection === collection) && readableBy(grant, [e]).length > 0
              ? l(e)
              : undefined,
          );
          // A change can break a unique field or a reference without a sibling conflict (and in
          // another collection: deleting a user flags the tasks naming it): while any is broken,
          // every change wakes the stream to read again; the read filters what it shows.
          const offChange = db.subscribe((e) => {
            if (!e.conflict && db.replica.violations > 0) l(e);
          });
          return () => {
            offConflict();
            offChange();
          };
        },
      };
      const since = request.query.since ?? 0;
      if (feed === 'longpoll') {
        const timeoutMs = Math.min(request.query.timeout ?? LONGPOLL_TIMEOUT_DEFAULT_MS, LONGPOLL_TIMEOUT_MAX_MS);
        const aborted = new AbortController();
        const untrack = feeds.add(() => aborted.abort());
        const onClose = (): void => aborted.abort();
        reply.raw.once('close', onClose);
        try {
          return await longpoll(db, {
            since,
            timeoutMs,
            signal: aborted.signal,
            source,
            ...(limit === undefined ? {} : { limit }),
          });
        } finally {
          untrack();
          reply.raw.off('close', onClose);
        }
      }
      streamChanges(db, reply, {
        since: request.headers['last-event-id'] ?? since,
        source,
        pageSize: limit ?? 100,
        heartbeatMs,
        feeds,
        log: request.log,
      });
      return reply;
    },
  );

  app.put<{ Params: DocParams; Headers: WriteHeaders; Body: unknown }>(
    '/db/:collection/:id',
    {
      // Checked before the body is read: a closing server need not parse a megabyte.
      onRequest: refuseWhileShuttingDown,
      schema: { params: docParams, querystring: noQuery, headers: writeHeaders, body: {} },
    },
    async (request, reply) => {
      const { collection, id } = request.params;
      need(grantOf(request), 'write', collection);
      const value = bodyOf(request, 'a PUT needs');
      const options = writeConditions(request.headers, true);
      const result = await db.collection(collection).put(id, value, options);
      metrics.writes.inc();
      return reply.code(201).header('etag', etagOf(result.version)).send(written(result));
    },
  );

  app.get<{ Params: DocParams }>(
    '/db/:collection/:id',
    { schema: { params: docParams, querystring: noQuery } },
    async (request, reply) => {
      const { collection, id } = request.params;
      need(grantOf(request), 'read', collection);
      const doc = await db.collection(collection).get(id);
      if (doc === null) throw new DbError(ErrorCode.notFound, `${collection}/${id} does not exist`);
      return reply.header('etag', etagOf(doc.version)).send(doc);
    },
  );

  app.delete<{ Params: DocParams; Headers: WriteHeaders }>(
    '/db/:collection/:id',
    { onRequest: refuseWhileShuttingDown, schema: { params: docParams, querystring: noQuery, headers: writeHeaders } },
    async (request) => {
      const { collection, id } = request.params;
      need(grantOf(request), 'write', collection);
      const result = await db.collection(collection).delete(id, writeConditions(request.headers, false));
      metrics.writes.inc();
      return written(result);
    },
  );

  app.get<{ Params: { collection: string }; Querystring: ListQuery }>(
    '/db/:collection',
    { schema: { params: collectionParams, querystring: listQuery } },
    async (request) => {
      const { after, limit } = request.query;
      need(grantOf(request), 'read', request.params.collection);
      return db.collection(request.params.collection).list({
        ...(after === undefined ? {} : { after }),
        ...(limit === undefined ? {} : { limit }),
      });
    },
  );

  app.post<{ Body: BatchBody }>(
    '/db/_batch',
    {
      // Never below the server's own limit, should that be raised past it.
      bodyLimit: Math.max(BATCH_BODY_LIMIT_BYTES, app.initialConfig.bodyLimit ?? 0),
      onRequest: refuseWhileShuttingDown,
      preValidation: async (request) => checkBatchFieldTypes(request.body),
      schema: { querystring: noQuery, body: batchBody },
    },
    async (request) => {
      const ops = toWriteOps(request.body);
      // All or nothing, like the batch itself: one op the token may not write refuses it whole.
      for (const op of ops) need(grantOf(request), 'write', governingCollection(op.collection, op.id));
      const results = await db.batch(ops);
      metrics.writes.inc(results.length);
      return { results: results.map((r) => ({ collection: r.collection, id: r.id, version: r.version })) };
    },
  );

  // A document under an id the server makes (time-sortable, unique: db.newId()).
  app.post<{ Params: { collection: string }; Body: unknown }>(
    '/db/:collection',
    { onRequest: refuseWhileShuttingDown, schema: { params: collectionParams, querystring: noQuery, body: {} } },
    async (request, reply) => {
      const { collection } = request.params;
      need(grantOf(request), 'write', collection);
      const value = bodyOf(request, 'a POST needs');
      // Create-only: a fresh id names no document, and this keeps it so should that ever fail.
      const result = await db.collection(collection).put(db.newId(), value, { ifAbsent: true });
      metrics.writes.inc();
      return reply.code(201).header('etag', etagOf(result.version)).send(written(result));
    },
  );

  // Sequences: their documents live in the system collection _sequences, so with client tokens
  // they need a right on every collection ('*'): read to see a status, read-write to configure
  // or take numbers.
  app.put<{ Params: { name: string }; Body: unknown }>(
    '/sequences/:name',
    { onRequest: refuseWhileShuttingDown, schema: { params: nameParams, querystring: noQuery, body: {} } },
    async (request) => {
      need(grantOf(request), 'write', SEQUENCES_PSEUDO_COLLECTION);
      const config = await db
        .sequence(request.params.name)
        .configure(bodyOf(request, 'sequence settings (like { "allocator": "eu-1" }) need') as never);
      return { name: request.params.name, ...config };
    },
  );

  app.get<{ Params: { name: string } }>(
    '/sequences/:name',
    { schema: { params: nameParams, querystring: noQuery } },
    async (request) => {
      need(grantOf(request), 'read', SEQUENCES_PSEUDO_COLLECTION);
      return db.sequence(request.params.name).status();
    },
  );

  app.post<{ Params: { name: string }; Querystring: { waitMs?: number } }>(
    '/sequences/:name/next',
    { onRequest: refuseWhileShuttingDown, schema: { params: nameParams, querystring: nextQuery } },
    async (request) => {
      need(grantOf(request), 'write', SEQUENCES_PSEUDO_COLLECTION);
      const { waitMs } = request.query;
      const value = await db.sequence(request.params.name).next(waitMs === undefined ? {} : { waitMs });
      return { name: request.params.name, value };
    },
  );

  app.get<{ Querystring: ChangesQuery; Headers: { 'last-event-id'?: number } }>(
    '/changes',
    { schema: { querystring: changesQuery, headers: changesHeaders } },
    async (request, reply) => {
      const { limit, feed = 'normal' } = request.query;
      const since = request.query.since ?? 0;
      const page = limit === undefined ? {} : { limit };
      const grant = grantOf(request);
      const source: FeedSource<FeedEntry> = {
        read: (from, max) => changesFor(grant, from, max),
        subscribe: (l) => db.subscribe(l),
      };
      if (feed === 'normal') return changesFor(grant, since, limit);
      if (closing) throw new DbError(ErrorCode.unavailable, 'this server is closing');
      if (feed === 'longpoll') {
        const timeoutMs = Math.min(request.query.timeout ?? LONGPOLL_TIMEOUT_DEFAULT_MS, LONGPOLL_TIMEOUT_MAX_MS);
        const aborted = new AbortController();
        const untrack = feeds.add(() => aborted.abort());
        const onClose = (): void => aborted.abort();
        reply.raw.once('close', onClose);
        try {
          return await longpoll(db, { since, timeoutMs, signal: aborted.signal, source, ...page });
        } finally {
          untrack();
          reply.raw.off('close', onClose);
        }
      }
      // A reconnecting EventSource sends the last id it saw; it wins over the URL's since.
      streamChanges(db, reply, {
        since: request.headers['last-event-id'] ?? since,
        source,
        pageSize: limit ?? STREAM_PAGE_SIZE,
        heartbeatMs,
        feeds,
        log: request.log,
      });
      return reply;
    },
  );

  // Triggers the store declares. One the config no longer names keeps collecting events until
  // it is dropped here (its queue goes with it); one a handler runs must leave the config first.
  app.get('/triggers', { schema: { querystring: noQuery } }, async (request) => {
    need(grantOf(request), 'read', TRIGGERS_PSEUDO_COLLECTION);
    return { triggers: db.replica.triggerStatus() };
  });

  app.delete<{ Params: { name: string } }>(
    '/triggers/:name',
    { onRequest: refuseWhileShuttingDown, schema: { params: nameParams, querystring: noQuery } },
    async (request) => {
      need(grantOf(request), 'write', TRIGGERS_PSEUDO_COLLECTION);
      const { name } = request.params;
      const status = db.replica.triggerStatus().find((t) => t.name === name);
      if (status?.attached === true) {
        throw new DbError(
          ErrorCode.conflict,
          `trigger ${name} runs here (this leader's config names it): remove it from the config and restart first`,
        );
      }
      await db.dropTrigger(name);
      return { name, dropped: true, pending: status?.pending ?? 0 };
    },
  );

  app.get('/status', { schema: { querystring: noQuery } }, async () => ({
    ...db.status(),
    peers: deps.peers(),
    triggers: db.replica.triggerStatus(),
  }));

  app.get('/metrics', { schema: { querystring: noQuery } }, async (_request: FastifyRequest, reply: FastifyReply) => {
    const text = await metrics.registry.metrics();
    return reply.type(metrics.registry.contentType).send(text);
  });
}

/** The request's JSON body; `what` starts the message when there is none ("a PUT needs"). */
function bodyOf(request: { body: unknown }, what: string): JsonValue {
  if (request.body === undefined) {
    throw new HttpError(400, HttpErrorCode.invalidJson, `${what} a JSON body (content-type: application/json)`);
  }
  return request.body as JsonValue;
}
