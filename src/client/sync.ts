/**
 * db.sync(url): keeps one replication session with a server alive over a standard WebSocket,
 * redialling with exponential backoff and jitter whenever the link drops (error, close, or a
 * heartbeat timeout: a cut link stalls rather than errors). Time and randomness come from the
 * injected Env. Browser-safe: no Node built-ins, no `ws` (the Node entry registers it).
 * In a page it follows the browser's `online`/`offline` events, and counts the local changes
 * the server has not acknowledged yet (`pending`, status `syncing`).
 */
import type { Env, TimerHandle } from '../env/env.js';
import type { RefusedDoc } from '../protocol/index.js';
import type { SessionDriver, SessionOptions } from '../replication/session-driver.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { connectBrowserWebSocket } from '../transport/browser/index.js';
import type { BrowserConnection, WebSocketConstructor } from '../transport/browser/index.js';
import type { CloseInfo, Connection } from '../transport/index.js';

export type { WebSocketConstructor, WebSocketLike } from '../transport/browser/index.js';

/**
 * - `connecting`: dialling, or the session is saying hello.
 * - `syncing`: the session is open and the server has not yet acknowledged `detail.pending`
 *   local changes (`handle.pending`); heard again each time that count changes.
 * - `online`: the session is open and the server holds every local change: up to date.
 * - `offline`: the link is down; a redial is scheduled (`detail.retryInMs`).
 * - `closed`: `close()` was called (or the database closed); nothing more happens.
 */
export type SyncStatus = 'connecting' | 'syncing' | 'online' | 'offline' | 'closed';

/** What goes with a status change. */
export interface SyncStatusDetail {
  /** offline, closed: why the link went down (also `handle.lastError`). */
  error?: DbError;
  /** offline: the delay before the next dial. */
  retryInMs?: number;
  /** online, syncing: the server's replica id. */
  peer?: string;
  /** syncing: the local changes the server has not acknowledged yet (`handle.pending`). */
  pending?: number;
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
  /**
   * Where the platform announces connectivity: on `offline` the handle drops its socket (a
   * stalled one is not closed by the browser) and stops dialling; on `online` it dials at once.
   * Default: `globalThis` when it has `addEventListener` (a page or a worker), else none;
   * `null` ignores connectivity events.
   */
  network?: NetworkEvents | null;
}

/** The `online`/`offline` events of a page (`window`) or worker (`self`). */
export interface NetworkEvents {
  addEventListener(type: 'online' | 'offline', listener: () => void): void;
  removeEventListener(type: 'online' | 'offline', listener: () => void): void;
}

/**
 * Writes the server refused: its token may not write their collection. They are not applied
 * there and will not be offered again; they stay in this replica (see docs/sdk.md).
 * `omitted` counts refused documents past the list's limit (1,000 per batch).
 */
export interface SyncRefusal {
  docs: readonly RefusedDoc[];
  omitted: number;
}

/** Refused documents `handle.refused` keeps, newest last. */
const REFUSED_KEPT_MAX = 100;

/** What the Database lends a sync handle. */
export interface SyncHost {
  env: Env;
  connect(connection: Connection, options: Omit<SessionOptions, 'env'>): SessionDriver;
  /** Called once when the handle closes, so the Database stops tracking it. */
  forget(handle: SyncHandle): void;
  /** The replica's feed head (its latest seq); without it, `pending` counts only what a live session reports. */
  head?(): number;
  /** Calls `listener` after each committed change (local or remote); returns an unsubscribe function. */
  watch?(listener: (change: { seq: number; origin: 'local' | 'remote' }) => void): () => void;
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
  network: NetworkEvents | null;
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
      'db.sync: this runtime has no WebSocket (Node 20 has none): pass the WebSocket class of the "ws" ' +
        'package as the WebSocket option, or use the Node entry of polyarch, which passes it itself',
    );
  }
  const network = o['network'];
  if (
    network !== undefined &&
    network !== null &&
    (typeof (network as NetworkEvents).addEventListener !== 'function' ||
      typeof (network as NetworkEvents).removeEventListener !== 'function')
  ) {
    throw new DbError(ErrorCode.invalidInput, 'db.sync: network must have addEventListener and removeEventListener');
  }
  const ambient = globalThis as Partial<NetworkEvents>;
  return {
    network:
      network === undefined
        ? typeof ambient.addEventListener === 'function' && typeof ambient.removeEventListener === 'function'
          ? (ambient as NetworkEvents)
          : null
        : (network as NetworkEvents | null),
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
  private readonly refusedDocs: RefusedDoc[] = [];
  private readonly refusalListeners = new Set<(refusal: SyncRefusal) => void>();
  /** The feed head when sync began: what the server lacks of it is known once a session says. */
  private readonly baseline: number;
  /** Our feed seq through which the server has acknowledged, as far as known. */
  private ackedSeq: number;
  /** Seqs of this replica's own commits since sync began, not yet acknowledged, ascending. */
  private readonly localSeqs: number[] = [];
  /** The `pending` last reported with `syncing`, so a new count is heard and the same one is not. */
  private reportedPending = -1;
  private readonly unwatch: (() => void) | undefined;
  /** Between the platform's `offline` and `online` events: nothing is dialled meanwhile. */
  private networkDown = false;

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
    this.baseline = host.head?.() ?? 0;
    this.ackedSeq = this.baseline;
    this.unwatch = host.watch?.((change) => this.noteCommit(change));
    resolved.network?.addEventListener('offline', this.networkGone);
    resolved.network?.addEventListener('online', this.networkBack);
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

  /**
   * Local changes the server has not acknowledged yet: this replica's own writes since `sync()`
   * was called, plus the changes stored before then that the server turned out to lack (known
   * once a session opens: until then they count as held). 0 when `online`.
   * @example
   * badge.textContent = handle.pending > 0 ? `${handle.pending} to sync` : 'up to date';
   */
  get pending(): number {
    if (this.host.head === undefined) return this.driver?.info().lag.changes ?? 0;
    return Math.max(0, this.baseline - this.ackedSeq) + this.localSeqs.length;
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

  /** The latest documents the server refused (at most 100, newest last); `onRefused` hears each refusal. */
  get refused(): readonly RefusedDoc[] {
    return this.refusedDocs;
  }

  /**
   * Calls `listener({ docs, omitted })` each time the server refuses writes this replica sent
   * (its token may not write their collection: `code` is `forbidden`, `message` says why). The
   * session stays online and the other writes are applied. Returns a function that unsubscribes.
   * @example
   * handle.onRefused(({ docs }) => docs.forEach((d) => console.warn(`${d.collection}/${d.id}: ${d.message}`)));
   */
  onRefused(listener: (refusal: SyncRefusal) => void): () => void {
    if (typeof listener !== 'function') throw new DbError(ErrorCode.invalidInput, 'onRefused takes a function');
    this.refusalListeners.add(listener);
    return () => this.refusalListeners.delete(listener);
  }

  private noteRefused(refusal: SyncRefusal): void {
    this.refusedDocs.push(...refusal.docs);
    if (this.refusedDocs.length > REFUSED_KEPT_MAX)
      this.refusedDocs.splice(0, this.refusedDocs.length - REFUSED_KEPT_MAX);
    for (const listener of [...this.refusalListeners]) {
      try {
        listener(refusal);
      } catch (e) {
        this.host.env.logger.log('error', 'a sync refusal listener threw', {
          error: e instanceof Error ? e.message : String(e),
        });
      }
    }
  }

  /**
   * Dials now when offline, skipping the rest of the backoff (and starting it over); does
   * nothing while connecting or online (a dead link is noticed by heartbeats), or once closed.
   * @example
   * window.addEventListener('online', () => handle.reconnect());
   */
  reconnect(): void {
    if (this.current !== 'offline' || this.closing !== null) return;
    this.retryTimer?.cancel();
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
    this.unwatch?.();
    this.options.network?.removeEventListener('offline', this.networkGone);
    this.options.network?.removeEventListener('online', this.networkBack);
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
        onRefused: (m) => this.noteRefused({ docs: m.docs, omitted: m.omitted }),
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
      if (this.driver === driver) this.refresh();
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
    if (this.networkDown) {
      // The platform says there is no network: its `online` event dials again.
      this.setStatus('offline', { error });
      return;
    }
    this.retryTimer = this.host.env.timers.setTimeout(() => {
      this.retryTimer = null;
      if (this.closing === null) this.dial();
    }, delay);
    this.setStatus('offline', { error, retryInMs: delay });
  }

  /** A local commit: one more change the server lacks. */
  private noteCommit(change: { seq: number; origin: 'local' | 'remote' }): void {
    // Remote changes are not ours to send (those from this server would only flicker `syncing`
    // until it acks their echo); one commit of several documents is heard once per document.
    if (change.origin !== 'local' || change.seq <= this.baseline) return;
    if (this.localSeqs.at(-1) === change.seq) return;
    this.localSeqs.push(change.seq);
    this.refresh();
  }

  /** `online` or `syncing`, by what the server has acknowledged (after each frame and local commit). */
  private refresh(): void {
    const driver = this.driver;
    if (driver === null) return;
    const info = driver.info();
    if (info.phase !== 'open') return;
    // Until the server pulls, `acked` is 0 with no lag: what it lacks is unknown, so the status
    // stays `connecting` (rather than `online` for a moment, then `syncing`).
    const pulled = info.acked > 0 || info.lag.changes > 0;
    if (!pulled && (this.host.head?.() ?? 0) > 0) return;
    if (pulled) {
      this.ackedSeq = info.acked;
      let held = 0;
      while (held < this.localSeqs.length && (this.localSeqs[held] as number) <= info.acked) held++;
      if (held > 0) this.localSeqs.splice(0, held);
    }
    const pending = this.pending;
    const peer = info.peer === null ? {} : { peer: info.peer };
    if (pending > 0) this.setStatus('syncing', { ...peer, pending });
    else this.setStatus('online', peer);
  }

  /** The platform went offline: a socket on a dead route would stall, so drop it now. */
  private readonly networkGone = (): void => {
    this.networkDown = true;
    if (this.closing !== null) return;
    this.retryTimer?.cancel();
    this.retryTimer = null;
    if (this.driver !== null) {
      // Its close is heard by run()'s onClose, which takes the link down.
      this.driver.close('offline', 'the browser went offline');
    } else if (this.dialing !== null) {
      this.dialing.abort();
      this.dialing = null;
      this.linkDown(
        new DbError(ErrorCode.unavailable, `sync with ${this.url}: the browser is offline`, {
          details: { url: this.url, reason: 'offline' },
        }),
      );
    }
  };

  /** The platform is back online: dial at once, even over a dial stalled on the old route. */
  private readonly networkBack = (): void => {
    this.networkDown = false;
    if (this.closing !== null || this.driver !== null) return;
    this.retryTimer?.cancel();
    this.retryTimer = null;
    this.dialing?.abort();
    this.dialing = null;
    this.failures = 0;
    this.dial();
  };

  private setStatus(status: SyncStatus, detail: SyncStatusDetail): void {
    if (this.current === status && (status !== 'syncing' || detail.pending === this.reportedPending)) return;
    this.current = status;
    if (status === 'syncing') this.reportedPending = detail.pending ?? 0;
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
