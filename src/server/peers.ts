/**
 * The peer manager: one replication link per `--peer` URL, dialled and re-dialled forever
 * with exponential backoff and jitter, plus the sessions peers open to us on /replicate.
 * Each link replicates both ways; a leader forwards what it learned from one peer to the
 * others because its feed records remote changes too. It holds no replication logic itself.
 */
import type { Database } from '../client/database.js';
import type { Env, TimerHandle } from '../env/env.js';
import type { PeerAuth } from '../replication/peer-auth.js';
import type { ClientCredential } from '../replication/session-access.js';
import type { SessionDriver } from '../replication/session-driver.js';
import { connectWebSocket } from '../transport/websocket/index.js';
import type { Connection } from '../transport/index.js';
import type { PeerStatus } from './peer-status.js';

export interface PeerManagerOptions {
  db: Database;
  env: Env;
  cluster: string;
  auth?: PeerAuth;
  /** Backoff after a failed or broken session: base, doubling per attempt, capped (ms). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  heartbeatMs?: number;
  deadAfterMs?: number;
  connectTimeoutMs?: number;
  onSent?: (docs: number) => void;
  onReceived?: (docs: number) => void;
  onRead?: (rows: number) => void;
}

interface Link {
  url: string | null;
  direction: 'outgoing' | 'incoming';
  driver: SessionDriver | null;
  state: 'connecting' | 'session' | 'backoff';
  lastError: string | null;
  lastPeer: string | null;
  wake: (() => void) | null;
}

/** `http://host:port` (or ws://...) to the peer's replication endpoint. */
export function replicationUrl(peer: string): string {
  const u = new URL(peer);
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/replicate';
  return u.toString();
}

export class PeerManager {
  private readonly links = new Set<Link>();
  private closed = false;
  private readonly timers = new Set<TimerHandle>();

  constructor(private readonly options: PeerManagerOptions) {}

  /** Starts dialling every peer URL; each link retries forever until close(). */
  start(urls: readonly string[]): void {
    for (const url of urls) {
      const link: Link = {
        url,
        direction: 'outgoing',
        driver: null,
        state: 'connecting',
        lastError: null,
        lastPeer: null,
        wake: null,
      };
      this.links.add(link);
      void this.dial(link);
    }
  }

  /**
   * Runs a session a peer or a client opened to us; it ends when the connection does.
   * `client`: what the connection presented, when this server has client tokens.
   */
  accept(conn: Connection, client?: ClientCredential): void {
    if (this.closed) {
      conn.close('unavailable', 'this leader is shutting down');
      return;
    }
    const link: Link = {
      url: null,
      direction: 'incoming',
      driver: null,
      state: 'session',
      lastError: null,
      lastPeer: null,
      wake: null,
    };
    this.links.add(link);
    const driver = this.connect(conn, client);
    link.driver = driver;
    driver.onClose((info) => {
      this.options.env.logger.log(
        info.code === 'unauthorized' ? 'warn' : 'info',
        'incoming replication session ended',
        {
          peer: driver.info().peer,
          ...(driver.info().client === null ? {} : { token: driver.info().client }),
          code: info.code,
          reason: info.message,
        },
      );
      this.links.delete(link);
    });
  }

  private connect(conn: Connection, client?: ClientCredential): SessionDriver {
    const o = this.options;
    return o.db.connect(conn, {
      cluster: o.cluster,
      ...(o.auth === undefined ? {} : { auth: o.auth }),
      ...(client === undefined ? {} : { client }),
      ...(o.heartbeatMs === undefined ? {} : { heartbeatMs: o.heartbeatMs }),
      ...(o.deadAfterMs === undefined ? {} : { deadAfterMs: o.deadAfterMs }),
      observer: {
        sent: (n) => o.onSent?.(n),
        received: (n) => o.onReceived?.(n),
        read: (n) => o.onRead?.(n),
      },
    });
  }

  private async dial(link: Link): Promise<void> {
    const { env } = this.options;
    const base = this.options.backoffBaseMs ?? 250;
    const max = this.options.backoffMaxMs ?? 30_000;
    let attempt = 0;
    while (!this.closed) {
      link.state = 'connecting';
      let healthy = false;
      try {
        const conn = await connectWebSocket(replicationUrl(link.url as string), {
          timeoutMs: this.options.connectTimeoutMs ?? 5000,
        });
        if (this.closed) {
          conn.close('unavailable', 'this leader is shutting down');
          return;
        }
        const driver = this.connect(conn);
        link.driver = driver;
        link.state = 'session';
        const openedAt = env.clock.nowMs();
        const info = await new Promise<{ code: string; message: string }>((resolve) => driver.onClose(resolve));
        link.lastPeer = driver.info().peer ?? link.lastPeer;
        link.driver = null;
        link.lastError = `${info.code}: ${info.message}`;
        // A session that caught up, or ran a while, was healthy: start the backoff over.
        healthy = driver.info().caughtUp || env.clock.nowMs() - openedAt > 10_000;
        env.logger.log(info.code === 'unauthorized' ? 'error' : 'warn', 'replication session ended', {
          peer: link.url,
          code: info.code,
          reason: info.message,
        });
      } catch (e) {
        link.lastError = e instanceof Error ? e.message : String(e);
      }
      if (this.closed) return;
      if (healthy) attempt = 0;
      // Exponential backoff with jitter, so a fleet does not reconnect in lockstep.
      const delay = Math.min(max, base * 2 ** Math.min(attempt, 20)) * (0.5 + env.random.next() / 2);
      attempt++;
      link.state = 'backoff';
      await this.sleep(link, delay);
    }
  }

  private sleep(link: Link, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const handle = this.options.env.timers.setTimeout(() => {
        this.timers.delete(handle);
        link.wake = null;
        resolve();
      }, ms);
      this.timers.add(handle);
      link.wake = () => {
        handle.cancel();
        this.timers.delete(handle);
        resolve();
      };
    });
  }

  status(): PeerStatus[] {
    return [...this.links].map((link) => {
      const info = link.driver?.info();
      let state: PeerStatus['state'] = link.state === 'backoff' ? 'backoff' : 'connecting';
      if (info !== undefined && info.phase === 'open') state = info.caughtUp ? 'live' : 'syncing';
      return {
        id: info?.peer ?? link.lastPeer,
        url: link.url,
        direction: link.direction,
        state,
        lag: info?.lag ?? { changes: 0, ms: 0 },
        // A live link has recovered: an old failure would only mislead.
        lastError: state === 'live' ? null : link.lastError,
      };
    });
  }

  /** Sessions currently open. */
  sessions(): number {
    let n = 0;
    for (const l of this.links) if (l.driver?.info().phase === 'open') n++;
    return n;
  }

  /** Stops dialling and closes every session (peers see code `unavailable`). */
  close(): void {
    this.closed = true;
    for (const t of this.timers) t.cancel();
    for (const link of this.links) {
      link.wake?.();
      link.driver?.close('unavailable', 'this leader is shutting down');
    }
  }
}
