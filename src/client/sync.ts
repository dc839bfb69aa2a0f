/**
 * db.sync(url): keeps one replication session with a server alive over a standard WebSocket,
 * redialling with exponential backoff and jitter whenever the link drops (error, close, or a
 * heartbeat timeout: a cut link stalls rather than errors). Time and randomness come from the
 * injected Env. Browser-safe: no Node built-ins, no `ws` (the Node entry registers it).
 */
import type { Env, TimerHandle } from '../env/env.js';
import type { SessionDriver, SessionOptions } from '../replication/session-driver.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { connectBrowserWebSocket } from '../transport/browser/index.js';
import type { BrowserConnection, WebSocketConstructor } from '../transport/browser/index.js';
import type { CloseInfo, Connection } from '../transport/index.js';

export type { WebSocketConstructor, WebSocketLike } from '../transport/browser/index.js';

/**
 * - `connecting`: dialling, or the session is saying hello.
 * - `online`: the session is open; changes flow both ways, live.
 * - `offline`: the link is down; a redial is scheduled (`detail.retryInMs`).
 * - `closed`: `close()` was called (or the database closed); nothing more happens.
 */
export type SyncStatus = 'connecting' | 'online' | 'offline' | 'closed';

/** What goes with a status change. */
export interface SyncStatusDetail {
  /** offline, closed: why the link went down (also `handle.lastError`). */
  error?: DbError;
  /** offline: the delay before the next dial. */
  retryInMs?: number;
  /** online: the server's replica id. */
  peer?: string;
  /** connecting: dials since the last healthy session (1 for the first). */
  attempt?: number;
}

export interface SyncOptions {
  /**
   * A client token, sent as the `token` query parameter of the WebSocket upgrade request
   * (a browser WebSocket cannot set headers). Servers without tokens ignore it.
   */
  token?: string;
  /** The WebSocket class: default `globalThis.WebSocket`; in Node 20, `WebSocket` from `ws`. */
  WebSocket?: WebSocketConstructor;
  /** A ping every `heartbeatMs` (default 2000); silence for `deadAfterMs` (default 3x) drops the link. */
  heartbeatMs?: number;
  deadAfterMs?: number;
  /** Redial backoff: starts near `minBackoffMs` (default 250), doubles per failure, capped at `maxBackoffMs` (default 30000). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** The WebSocket handshake must finish within this (default 5000 ms). */
  connectTimeoutMs?: number;
  /** The server's cluster name (default `default`). */
  cluster?: string;
}

/** What the Database lends a sync handle. */
export interface SyncHost {
  env: Env;
  connect(connection: Connection, options: Omit<SessionOptions, 'env'>): SessionDriver;
  /** Called once when the handle closes, so the Database stops tracking it. */
  forget(handle: SyncHandle): void;
}

/** A session that caught up, or lasted this long, was healthy: the backoff starts over. */
const HEALTHY_SESSION_MS = 10_000;
/** How long close() waits for the socket's close handshake before it resolves anyway. */
const CLOSE_WAIT_MS = 1000;

let nodeDefaultWebSocket: WebSocketConstructor | undefined;

/**
 * Sets the WebSocket class `db.sync` uses when none is passed. The Node entry (`polyarch`)
 * registers `ws`'s class; browsers need nothing (they have `globalThis.WebSocket`).
 */
export function setDefaultWebSocket(ctor: WebSocketConstructor | undefined): void {
  nodeDefaultWebSocket = ctor;
}

/**
 * The WebSocket url for a server url: `http(s)://host:port` becomes `ws(s)://host:port/replicate`
 * (a path other than `/` is kept, for servers behind a proxy), with `token` as a query parameter.
 * Throws DbError `invalid_input` for anything else.
 */
export function syncUrl(url: unknown, token?: string): string {
  if (typeof url !== 'string' || url.trim() === '') {
    throw new DbError(ErrorCode.invalidInput, 'db.sync needs a server url, such as "https://db.example.com"');
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch (e) {
    throw new DbError(ErrorCode.invalidInput, `db.sync: ${JSON.stringify(url)} is not an absolute url`, { cause: e });
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new DbError(
      ErrorCode.invalidInput,
      `db.sync: a server url starts with http:, https:, ws: or wss:, not ${u.protocol} (${JSON.stringify(url)})`,
    );
  }
  if (u.hostname === '') throw new DbError(ErrorCode.invalidInput, `db.sync: ${JSON.stringify(url)} names no host`);
  // A WebSocket url cannot carry a fragment (the constructor throws).
  if (u.hash !== '') throw new DbError(ErrorCode.invalidInput, `db.sync: a server url has no #fragment`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/replicate';
  if (token !== undefined) {
    if (u.searchParams.has('token')) {
      throw new DbError(ErrorCode.invalidInput, 'db.sync: pass the token either in the url or as `token`, not both');
    }
    u.searchParams.set('token', token);
  }
  return u.toString();
}

interface ResolvedOptions {
  WebSocket: WebSocketConstructor;
  heartbeatMs: number;
  deadAfterMs: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  connectTimeoutMs: number;
  cluster: string | undefined;
}

function resolveOptions(options: unknown): ResolvedOptions & { token: string | undefined } {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new DbError(ErrorCode.invalidInput, 'db.sync options must be an object');
  }
  const o = options as Record<string, unknown>;
  const ms = (name: string, fallback: number): number => {
    const v = o[name];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new DbError(ErrorCode.invalidInput, `db.sync: ${name} must be a positive number of milliseconds`);
    }
    return v;
  };
  const token = o['token'];
  if (token !== undefined && (typeof token !== 'string' || token === '')) {
    throw new DbError(ErrorCode.invalidInput, 'db.sync: token must be a non-empty string');
  }
  const cluster = o['cluster'];
  if (cluster !== undefined && (typeof cluster !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(cluster))) {
    throw new DbError(ErrorCode.invalidInput, 'db.sync: cluster must be 1-64 letters, digits, _ . -');
  }
  const heartbeatMs = ms('heartbeatMs', 2000);
  const deadAfterMs = ms('deadAfterMs', 3 * heartbeatMs);
  if (deadAfterMs <= heartbeatMs) {
    throw new DbError(ErrorCode.invalidInput, 'db.sync: deadAfterMs must be longer than heartbeatMs');
  }
  const minBackoffMs = ms('minBackoffMs', 250);
  const maxBackoffMs = ms('maxBackoffMs', Math.max(30_000, minBackoffMs));
  if (maxBackoffMs < minBackoffMs) {
    throw new DbError(ErrorCode.invalidInput, 'db.sync: maxBackoffMs must be at least minBackoffMs');
  }
  const given = o['WebSocket'];
  if (given !== undefined && typeof given !== 'function') {
    throw new DbError(ErrorCode.invalidInput, 'db.sync: WebSocket must be a WebSocket class');
  }
  const ctor =
    (given as WebSocketConstructor | undefined) ??
    nodeDefaultWebSocket ??
    (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof ctor !== 'function') {
    throw new DbError(
      ErrorCode.invalidInput,
      'db.sync: this runtime has no WebSocket (Node 20 has none): pass `WebSocket` from the "ws" package, ' +
        "as in db.sync(url, { WebSocket }) after import { WebSocket } from 'ws', or import from 'polyarch', which does",
    );
  }
  return {
    token: token as string | undefined,
    WebSocket: ctor,
    heartbeatMs,
    deadAfterMs,
    minBackoffMs,
    maxBackoffMs,
    connectTimeoutMs: ms('connectTimeoutMs', 5000),
    cluster: cluster as string | undefined,
  };
}

/**
 * A live link between this replica and a server, kept up until `close()`. Create it with
 * `db.sync(url, options)`.
 *
 * @example
 * const handle = db.sync('https://db.example.com', { token });
 * handle.subscribe((status, detail) => render(status, detail?.error?.message));
 * window.addEventListener('online', () => handle.reconnect());
 */
export class SyncHandle {
  /** The server's WebSocket url, without the token. */
  readonly url: string;
  private readonly wireUrl: string;
  private readonly options: ResolvedOptions;
  private current: SyncStatus = 'connecting';
  private error: DbError | null = null;
  private readonly listeners = new Set<(status: SyncStatus, detail?: SyncStatusDetail) => void>();
  /** Failed dials since the last healthy session; drives the backoff. */
  private failures = 0;
  private retryTimer: TimerHandle | null = null;
  private dialing: AbortController | null = null;
  private conn: BrowserConnection | null = null;
  private driver: SessionDriver | null = null;
  private closing: Promise<void> | null = null;

  /** Use `db.sync(url, options)`; validates synchronously and dials at once. */
  constructor(
    url: string,
    options: SyncOptions,
    private readonly host: SyncHost,
  ) {
    const resolved = resolveOptions(options);
    this.wireUrl = syncUrl(url, resolved.token);
    const shown = new URL(this.wireUrl);
    shown.searchParams.delete('token');
    this.url = shown.toString();
    this.options = resolved;
    this.dial();
  }

  /** The link's state now; `subscribe` to hear every change. */
  get status(): SyncStatus {
    return this.current;
  }

  /** Why the link last went down (null until it has), for display; kept while online. */
  get lastError(): DbError | null {
    return this.error;
  }

  /** The server's replica id, once a session has opened. */
  get peer(): string | null {
    return this.driver?.info().peer ?? null;
  }

  /**
   * Calls `listener(status, detail)` on every status change (not for the current one: read
   * `handle.status`). Returns a function that unsubscribes.
   * @example
   * const stop = handle.subscribe((status) => (badge.textContent = status));
   */
  subscribe(listener: (status: SyncStatus, detail?: SyncStatusDetail) => void): () => void {
    if (typeof listener !== 'function') throw new DbError(ErrorCode.invalidInput, 'subscribe takes a function');
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Dials now when offline, skipping the rest of the backoff (and starting it over); does
   * nothing while connecting or online (a dead link is noticed by heartbeats), or once closed.
   * @example
   * window.addEventListener('online', () => handle.reconnect());
   */
  reconnect(): void {
    if (this.current !== 'offline' || this.retryTimer === null) return;
    this.retryTimer.cancel();
    this.retryTimer = null;
    this.failures = 0;
    this.dial();
  }

  /**
   * Stops redialling and closes the session and its socket; status becomes `closed`. Resolves
   * once the socket has closed (or after a second, if the server does not answer the close).
   * Local data stays; a later `db.sync` picks up from the stored checkpoints.
   * @example
   * await handle.close();
   */
  close(): Promise<void> {
    return this.stop(null);
  }

  private stop(error: DbError | null): Promise<void> {
    if (this.closing !== null) return this.closing;
    if (error !== null) this.error = error;
    this.retryTimer?.cancel();
    this.retryTimer = null;
    this.dialing?.abort();
    this.dialing = null;
    const conn = this.conn;
    this.conn = null;
    const driver = this.driver;
    this.driver = null;
    driver?.close(ErrorCode.closed, 'the client stopped syncing');
    this.setStatus('closed', error === null ? {} : { error });
    this.host.forget(this);
    this.closing = conn === null ? Promise.resolve() : this.waitForSocket(conn);
    return this.closing;
  }

  private waitForSocket(conn: BrowserConnection): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.host.env.timers.setTimeout(resolve, CLOSE_WAIT_MS);
      void conn.socketClosed.then(() => {
        timer.cancel();
        resolve();
      });
    });
  }

  private dial(): void {
    const abort = new AbortController();
    this.dialing = abort;
    this.setStatus('connecting', { attempt: this.failures + 1 });
    const o = this.options;
    connectBrowserWebSocket(this.wireUrl, {
      WebSocket: o.WebSocket,
      timeoutMs: o.connectTimeoutMs,
      timers: this.host.env.timers,
      signal: abort.signal,
    }).then(
      (conn) => {
        if (this.dialing !== abort) {
          conn.close(ErrorCode.closed, 'the client stopped syncing');
          return;
        }
        this.dialing = null;
        this.run(conn);
      },
      (e: unknown) => {
        if (this.dialing !== abort) return;
        this.dialing = null;
        this.linkDown(asDbError(e));
      },
    );
  }

  private run(conn: BrowserConnection): void {
    const o = this.options;
    let driver: SessionDriver;
    try {
      driver = this.host.connect(conn, {
        heartbeatMs: o.heartbeatMs,
        deadAfterMs: o.deadAfterMs,
        ...(o.cluster === undefined ? {} : { cluster: o.cluster }),
      });
    } catch (e) {
      const error = asDbError(e);
      conn.close(error.code, error.message);
      // The replica closed under us: nothing left to sync.
      if (error.code === ErrorCode.closed) void this.stop(error);
      else this.linkDown(error);
      return;
    }
    this.conn = conn;
    this.driver = driver;
    const openedAt = this.host.env.clock.nowMs();
    // The driver listens first (it registered in connect), so its phase is current here.
    conn.onFrame(() => {
      if (this.driver !== driver || this.current === 'online') return;
      const info = driver.info();
      if (info.phase === 'open') this.setStatus('online', info.peer === null ? {} : { peer: info.peer });
    });
    driver.onClose((info) => {
      if (this.driver !== driver) return;
      this.driver = null;
      this.conn = null;
      const healthy = driver.info().caughtUp || this.host.env.clock.nowMs() - openedAt >= HEALTHY_SESSION_MS;
      if (healthy) this.failures = 0;
      this.linkDown(closeError(info, this.url));
    });
  }

  /** The link is down: note why, and schedule the next dial. */
  private linkDown(error: DbError): void {
    if (this.closing !== null) return;
    this.error = error;
    const { minBackoffMs, maxBackoffMs } = this.options;
    // Exponential backoff with jitter (half to all of the step), so that many clients cut
    // off together (a server restart) do not come back in lockstep.
    const step = Math.min(maxBackoffMs, minBackoffMs * 2 ** Math.min(this.failures, 30));
    const delay = Math.round(step * (0.5 + this.host.env.random.next() / 2));
    this.failures++;
    this.retryTimer = this.host.env.timers.setTimeout(() => {
      this.retryTimer = null;
      if (this.closing === null) this.dial();
    }, delay);
    this.setStatus('offline', { error, retryInMs: delay });
  }

  private setStatus(status: SyncStatus, detail: SyncStatusDetail): void {
    if (this.current === status) return;
    this.current = status;
    for (const listener of [...this.listeners]) {
      try {
        listener(status, detail);
      } catch (e) {
        // A listener's bug must not stop the sync loop.
        this.host.env.logger.log('error', 'a sync status listener threw', {
          error: e instanceof Error ? e.message : String(e),
        });
      }
    }
  }
}

function asDbError(e: unknown): DbError {
  if (e instanceof DbError) return e;
  return new DbError(ErrorCode.unavailable, e instanceof Error ? e.message : String(e), { cause: e });
}

/**
 * A session's close reason as a DbError. Codes of ErrorCode keep their code (an `unauthorized`
 * stays one); the transport's own (`disconnected`, `timeout`, a peer's plain `closed`) become
 * `unavailable`: the server is out of reach for now. `details.reason` keeps the original code.
 */
function closeError(info: CloseInfo, url: string): DbError {
  const known = (Object.values(ErrorCode) as string[]).includes(info.code) && info.code !== ErrorCode.closed;
  return new DbError(
    known ? (info.code as ErrorCode) : ErrorCode.unavailable,
    `sync with ${url}: ${info.code}: ${info.message}`,
    { details: { url, reason: info.code } },
  );
}
