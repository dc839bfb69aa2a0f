/**
 * One leader on the network: the embedded replica, the HTTP API, the /replicate WebSocket
 * endpoint and the peer manager, started and stopped together. Shutdown stops accepting,
 * lets the requests and batches in flight finish, closes the sessions, then the store.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import { openReplica } from '../index.js';
import type { Database, MergeFunction } from '../client/database.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import type { Env } from '../env/env.js';
import { silentLogger } from '../env/env.js';
import { consoleLogger, realEnv } from '../env/real.js';
import { secretAuth } from '../replication/peer-auth.js';
import { WIRE_LIMITS } from '../protocol/index.js';
import { wrapWebSocket } from '../transport/websocket/index.js';
import { buildApp } from './app.js';
import type { ServerConfig } from './config.js';
import { PeerManager } from './peers.js';
import { TokenRegistry } from './client-tokens.js';
import { attachTriggers, loadTriggers } from './configured-triggers.js';
import type { Trigger } from '../replication/triggers.js';

export interface RunningServer {
  /** http://host:port of the HTTP API. */
  url: string;
  port: number;
  db: Database;
  peers: PeerManager;
  /** Graceful shutdown; safe to call more than once. */
  close(): Promise<void>;
}

/** Every function a module exports (or its default export holds), by name. */
export async function loadMergeFunctions(file: string): Promise<Record<string, MergeFunction>> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(path.resolve(file)).href)) as Record<string, unknown>;
  } catch (e) {
    throw new DbError(ErrorCode.invalidInput, `cannot load merge functions from ${file}: ${(e as Error).message}`);
  }
  const out: Record<string, MergeFunction> = {};
  const dflt = mod.default;
  const sources = [mod, typeof dflt === 'object' && dflt !== null ? (dflt as Record<string, unknown>) : {}];
  for (const src of sources) {
    for (const [name, fn] of Object.entries(src))
      if (typeof fn === 'function' && name !== 'default') out[name] = fn as MergeFunction;
  }
  if (Object.keys(out).length === 0) {
    throw new DbError(ErrorCode.invalidInput, `${file} exports no functions: export each merge function by name`);
  }
  return out;
}

export async function startServer(config: ServerConfig, options: { env?: Env } = {}): Promise<RunningServer> {
  const storage = config.data === ':memory:' ? 'memory' : path.join(config.data, 'polyarch.db');
  if (storage !== 'memory') mkdirSync(config.data, { recursive: true });
  let shuttingDown = false;
  const base = options.env ?? realEnv();
  const env: Env = options.env ?? {
    ...base,
    logger: config.logLevel === 'silent' ? silentLogger : consoleLogger(config.logLevel),
  };
  const mergeFunctions = config.mergeFunctions === undefined ? {} : await loadMergeFunctions(config.mergeFunctions);
  // Trigger modules load before the store opens: a broken one stops the start at once.
  const loadedTriggers = await loadTriggers(config.triggers ?? []);
  const db = await openReplica({ id: config.id, storage, env, mergeFunctions });
  // Attached before the app listens and peers connect, so the first write is captured.
  let triggers: Trigger[];
  try {
    triggers = await attachTriggers(db, loadedTriggers, env.logger);
  } catch (e) {
    await db.close();
    throw e;
  }
  const missing = db.replica.missingMerges();
  if (missing.length > 0) {
    env.logger.log('warn', 'collection settings name merge functions this leader lacks: their conflicts are kept', {
      missing,
    });
  }
  const tokens = new TokenRegistry(config.tokens ?? []);
  // The app reports on the peers and the peers count into the app's metrics: a late binding.
  const ref: { peers?: PeerManager } = {};
  let built: ReturnType<typeof buildApp>;
  try {
    built = buildApp({
      db,
      logger: config.logLevel === 'silent' ? false : { level: config.logLevel },
      peers: () => ref.peers?.status() ?? [],
      sessions: () => ref.peers?.sessions() ?? 0,
      isShuttingDown: () => shuttingDown,
      web: { cluster: config.cluster },
      tokens,
    });
  } catch (e) {
    for (const t of triggers) t.close();
    await db.close();
    throw e;
  }
  const { app, metrics } = built;
  const pm = new PeerManager({
    db,
    env,
    cluster: config.cluster,
    ...(config.secret === undefined ? {} : { auth: secretAuth(config.secret, config.cluster) }),
    heartbeatMs: config.heartbeatMs,
    deadAfterMs: config.deadAfterMs,
    onSent: (n) => metrics.changesSent.inc(n),
    onReceived: (n) => metrics.changesReceived.inc(n),
    onRead: (n) => metrics.feedRowsRead.inc(n),
  });
  ref.peers = pm;

  const wss = new WebSocketServer({ noServer: true, maxPayload: WIRE_LIMITS.frameBytesMax, perMessageDeflate: false });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname !== '/replicate' || shuttingDown) {
      const status = shuttingDown ? '503 Service Unavailable' : '404 Not Found';
      const body = JSON.stringify(
        shuttingDown
          ? { error: 'unavailable', message: 'this leader is shutting down' }
          : { error: 'not_found', message: `no WebSocket endpoint at ${url.pathname}` },
      );
      socket.end(
        `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
      return;
    }
    // A browser WebSocket cannot set headers: a client's token comes as ?token=. What it grants
    // applies only if the session does not prove the cluster secret (session.ts).
    const client = tokens.configured ? tokens.resolve(url.searchParams.get('token')) : undefined;
    wss.handleUpgrade(req, socket, head, (ws) => pm.accept(wrapWebSocket(ws), client));
  });

  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (e) {
    for (const t of triggers) t.close();
    await db.close();
    throw e;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  app.log.info({ replica: db.id, url, peers: config.peers }, 'polyarch leader listening');
  if (config.secret === undefined) {
    app.log.warn('no cluster secret: any peer may replicate with this leader (set --secret or POLYARCH_SECRET)');
  }
  if (tokens.configured) {
    app.log.info({ tokens: tokens.names }, 'client tokens configured: clients need one, with its rights');
    if (config.secret === undefined) {
      app.log.warn(
        'client tokens but no cluster secret: a leader that dials this one needs the secret to be told from a client; set --secret on every leader',
      );
    }
  } else {
    app.log.warn(
      'no client tokens: any client may read and write (bind to 127.0.0.1, the default, or put a proxy in front)',
    );
  }
  if (triggers.length > 0) {
    // Names only: a webhook's URL and headers may hold secrets.
    app.log.info({ triggers: triggers.map((t) => t.name) }, 'triggers attached');
  }
  pm.start(config.peers);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      shuttingDown = true;
      // Sessions end with a reason the peers see; give their sockets a moment to close cleanly.
      pm.close();
      const deadline = Date.now() + 1000;
      while (wss.clients.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      for (const client of wss.clients) client.terminate();
      wss.close();
      // Requests in flight finish; idle keep-alive sockets would hold close() open until they time out.
      const closed = app.close();
      app.server.closeIdleConnections();
      const timer = setTimeout(() => app.server.closeAllConnections(), 5000);
      await closed;
      clearTimeout(timer);
      for (const t of triggers) t.close();
      await db.close();
    })();
    return closing;
  };
  return { url, port, db, peers: pm, close };
}
