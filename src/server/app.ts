/**
 * Builds the Fastify app of one leader: body limits, error handling, metrics and the HTTP
 * API, wired to a Database. Never listens: the caller chooses host and port, and tests
 * use app.inject().
 */
import Fastify from 'fastify';
import type { FastifyBaseLogger, FastifyInstance, FastifyServerOptions } from 'fastify';
import type { Database } from '../client/index.js';
import { ID_MAX_CHARS } from '../core/index.js';
import { frameworkErrorHandler, registerErrorHandlers } from './errors.js';
import { ajvOptions, registerHttpApi } from './http-api.js';
import { createMetrics } from './metrics.js';
import type { Metrics } from './metrics.js';
import type { PeerStatus } from './peer-status.js';
import { registerWebPages } from './web-pages.js';
import { redactUrl } from './client-tokens.js';
import type { TokenRegistry } from './client-tokens.js';
import type { WebPagesOptions } from './web-pages.js';

const MiB = 1024 * 1024;

/** A document is at most 1 MiB of JSON by default; the rest is room for framing and escapes.
 *  POST /db/_batch has its own, larger limit (http-api.ts). */
export const DEFAULT_BODY_LIMIT_BYTES = MiB + 64 * 1024;
/**
 * Fastify refuses longer path parameters before routing (we answer invalid_name). An id of
 * 256 characters percent-encodes to at most 9 characters each (3 UTF-8 bytes as %XX%XX%XX).
 */
const PARAM_CHARS_MAX = ID_MAX_CHARS * 9;

export interface AppDeps {
  db: Database;
  /** A logger instance, Fastify's logger options (`{ level: 'info' }`), `true` for its defaults, or `false`/absent for none. */
  logger?: FastifyBaseLogger | FastifyServerOptions['logger'];
  bodyLimitBytes?: number;
  peers?: () => PeerStatus[];
  /** Open replication sessions, for the polyarch_sessions gauge. */
  sessions?: () => number;
  isShuttingDown?: () => boolean;
  /** Interval of the `: heartbeat` comment on event streams (default 15 s). */
  sseHeartbeatMs?: number;
  /** The browser pages (web-pages.ts): the built directory (null: none) and the cluster they sync in. */
  web?: WebPagesOptions;
  /** Client tokens; absent or empty: any client may read and write. */
  tokens?: TokenRegistry;
}

export function buildApp(deps: AppDeps): { app: FastifyInstance; metrics: Metrics } {
  const peers = deps.peers ?? ((): PeerStatus[] => []);
  const logger = deps.logger ?? false;
  const app: FastifyInstance = Fastify({
    ...(isLoggerInstance(logger) ? { loggerInstance: logger } : { logger: withRedactedUrls(logger) }),
    bodyLimit: deps.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
    routerOptions: { maxParamLength: PARAM_CHARS_MAX },
    ajv: { customOptions: { ...ajvOptions } },
    frameworkErrors: frameworkErrorHandler,
    // Fastify's own 503 during close has another body shape: we refuse writes ourselves.
    return503OnClosing: false,
  });

  const metrics = createMetrics({
    status: () => deps.db.status(),
    mergeWriteBacks: () => deps.db.replica.mergeWriteBacks,
    presencePublishers: () => deps.db.presenceHub.publishers(),
    triggers: () => deps.db.replica.triggerStatus(),
    // A peer is labelled by its replica id, or by its URL until its handshake names it.
    peers: () =>
      peers().flatMap((p) => {
        const id = p.id ?? p.url;
        return id === null ? [] : [{ id, lag: p.lag }];
      }),
    sessions: deps.sessions ?? ((): number => 0),
  });

  registerErrorHandlers(app);
  registerHttpApi(app, {
    db: deps.db,
    metrics,
    peers,
    isShuttingDown: deps.isShuttingDown ?? ((): boolean => false),
    ...(deps.sseHeartbeatMs === undefined ? {} : { sseHeartbeatMs: deps.sseHeartbeatMs }),
    ...(deps.tokens === undefined ? {} : { tokens: deps.tokens }),
  });
  registerWebPages(app, deps.web);
  return { app, metrics };
}

/**
 * Fastify logs each request's url: a `?token=` (EventSource's way to send one) is masked. A
 * logger instance passed in keeps its own serializers.
 */
function withRedactedUrls(
  logger: Exclude<FastifyServerOptions['logger'], undefined>,
): Exclude<FastifyServerOptions['logger'], undefined> {
  if (logger === false) return logger;
  const options = logger === true ? {} : logger;
  return {
    ...options,
    serializers: {
      ...options.serializers,
      // Fastify's own serializer, the url masked.
      req: (req) => ({
        method: req.method,
        url: redactUrl(req.url),
        host: req.host,
        remoteAddress: req.ip,
        ...(req.socket?.remotePort === undefined ? {} : { remotePort: req.socket.remotePort }),
      }),
    },
  };
}

function isLoggerInstance(logger: AppDeps['logger']): logger is FastifyBaseLogger {
  return typeof logger === 'object' && typeof (logger as { child?: unknown }).child === 'function';
}
