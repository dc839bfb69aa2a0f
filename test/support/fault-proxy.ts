/**
 * A fault-injecting TCP proxy for tests and benchmarks (this machine has no tc/netem): latency
 * with jitter, resets, partitions and a flaky link between clients and one target.
 * Invariant: each direction delivers its bytes unchanged and in order, or stops; never reorders.
 */
import net from 'node:net';
import type { AddressInfo, Server, Socket } from 'node:net';

export interface FaultProxyOptions {
  target: { host: string; port: number };
  /** Default 0: the system picks a free port. */
  listenPort?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Draws latency jitter (default Math.random); inject one to replay a run. */
  random?: () => number;
}

export interface FaultProxyStats {
  /** Client connections currently open through the proxy. */
  connections: number;
  /** Bytes handed to a destination socket, both directions, since start. */
  bytesForwarded: number;
}

export interface FaultProxy {
  readonly port: number;
  /** `http://<host>:<port><path>` (ws accepts http: urls). */
  url(path?: string): string;
  /** One-way delay on every chunk, both directions: `ms` plus up to `jitterMs` more. */
  setLatency(latency: { ms: number; jitterMs?: number }): void;
  /** Resets every current connection, both sides, as a dropped link would. */
  cut(): void;
  /** A black hole: nothing flows on old or new connections, and nothing is closed. */
  partition(): void;
  /** Ends a partition: the connections it stalled are reset, new ones flow. */
  heal(): void;
  /** A flaky link: each live connection is reset with this probability per second. */
  dropConnectionsRandomly(options: { probabilityPerSecond: number; random: () => number }): void;
  stopDropping(): void;
  stats(): FaultProxyStats;
  close(): Promise<void>;
}

/** A pipe stops reading its source once this much waits in its latency queue. */
const QUEUE_BYTES_MAX = 4 * 1024 * 1024;
const DROP_TICK_MS = 50;

const END = Symbol('end');
interface Queued {
  chunk: Buffer | typeof END;
  /** performance.now() at which the chunk may go. */
  at: number;
}

/** What pipes and links read from the proxy. */
interface ProxyState {
  partitioned: boolean;
  delayMs(): number;
  forwarded(bytes: number): void;
}

/**
 * One direction of one connection. Chunks leave in arrival order, each no earlier than its
 * arrival plus the delay: released at max(arrival + delay, previous release).
 */
class Pipe {
  private readonly queue: Queued[] = [];
  private queuedBytes = 0;
  private lastReleaseAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingDrain = false;
  private stopped = false;

  constructor(
    private readonly proxy: ProxyState,
    private readonly from: Socket,
    private readonly to: Socket,
  ) {
    from.on('data', (chunk: Buffer) => this.push(chunk));
    from.on('end', () => this.push(END));
    this.updateFlow();
  }

  /** Drops whatever waits; the link is going away. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }

  private push(chunk: Buffer | typeof END): void {
    if (this.stopped) return;
    const delay = this.proxy.delayMs();
    if (delay === 0 && this.queue.length === 0 && !this.proxy.partitioned) {
      this.deliver(chunk);
    } else {
      const at = Math.max(performance.now() + delay, this.lastReleaseAt);
      this.lastReleaseAt = at;
      this.queue.push({ chunk, at });
      if (chunk !== END) this.queuedBytes += chunk.length;
      this.schedule();
    }
    this.updateFlow();
  }

  private schedule(): void {
    const head = this.queue[0];
    if (this.timer !== undefined || head === undefined || this.proxy.partitioned || this.stopped) return;
    // Timers may fire a little early against performance.now(); release() checks and re-arms.
    const waitMs = Math.max(0, Math.ceil(head.at - performance.now()));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.release();
    }, waitMs);
  }

  private release(): void {
    if (this.stopped || this.proxy.partitioned) return;
    const now = performance.now();
    for (let head = this.queue[0]; head !== undefined && head.at <= now; head = this.queue[0]) {
      this.queue.shift();
      if (head.chunk !== END) this.queuedBytes -= head.chunk.length;
      this.deliver(head.chunk);
    }
    this.schedule();
    this.updateFlow();
  }

  private deliver(chunk: Buffer | typeof END): void {
    if (this.to.destroyed || this.to.writableEnded) return;
    if (chunk === END) {
      this.to.end();
      return;
    }
    this.proxy.forwarded(chunk.length);
    if (!this.to.write(chunk) && !this.waitingDrain) {
      this.waitingDrain = true;
      this.to.once('drain', () => {
        this.waitingDrain = false;
        this.updateFlow();
      });
    }
  }

  /** TCP-like backpressure: stop reading while the far side or the latency queue is full. */
  private updateFlow(): void {
    if (this.from.destroyed) return;
    const hold = this.proxy.partitioned || this.waitingDrain || this.queuedBytes > QUEUE_BYTES_MAX;
    if (hold) this.from.pause();
    else if (this.from.isPaused()) this.from.resume();
  }
}

/** A client connection and, unless it arrived during a partition, its upstream twin. */
class Link {
  private upstream: Socket | undefined;
  private pipes: Pipe[] = [];
  private torn = false;

  constructor(
    private readonly proxy: ProxyState,
    private readonly client: Socket,
    target: { host: string; port: number },
    private readonly onGone: (link: Link) => void,
  ) {
    client.setNoDelay(true);
    client.on('error', () => {});
    client.on('close', (hadError) => this.socketClosed(hadError));
    // A connection that arrives during a partition reaches nobody: it stays paused (as the
    // server socket was created) and is reset at heal, like a SYN lost in the void.
    if (proxy.partitioned) return;
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('error', () => {});
    upstream.on('close', (hadError) => this.socketClosed(hadError));
    this.pipes = [new Pipe(proxy, client, upstream), new Pipe(proxy, upstream, client)];
  }

  stall(): void {
    this.client.pause();
    this.upstream?.pause();
  }

  /** Both sides get an RST (or are dropped, if still connecting). */
  reset(): void {
    if (this.torn) return;
    this.torn = true;
    for (const pipe of this.pipes) pipe.stop();
    resetSocket(this.client);
    if (this.upstream !== undefined) resetSocket(this.upstream);
    this.onGone(this);
  }

  private socketClosed(hadError: boolean): void {
    if (this.torn) return;
    const clientGone = this.client.destroyed;
    const upstreamGone = this.upstream === undefined || this.upstream.destroyed;
    if (clientGone && upstreamGone) {
      this.torn = true;
      for (const pipe of this.pipes) pipe.stop();
      this.onGone(this);
      return;
    }
    // During a partition the other side cannot hear about it; heal resets it.
    if (this.proxy.partitioned) return;
    // A reset (or a failed upstream connect) reaches the other side as a reset. A clean close
    // needs nothing: its FIN is already queued behind the data in its pipe.
    if (hadError) this.reset();
  }
}

function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  if (socket.connecting) {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/**
 * Starts a proxy on `host:listenPort` forwarding to `target`.
 *
 * @example
 * const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: serverPort } });
 * proxy.setLatency({ ms: 40, jitterMs: 10 });
 * const conn = await connectWebSocket(proxy.url('/sync'));
 * proxy.partition(); // ...then proxy.heal()
 */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const host = options.host ?? '127.0.0.1';
  const random = options.random ?? Math.random;
  const links = new Set<Link>();
  let latency = { ms: 0, jitterMs: 0 };
  let bytesForwarded = 0;
  let dropTimer: NodeJS.Timeout | undefined;

  const state: ProxyState = {
    partitioned: false,
    delayMs: () => (latency.jitterMs > 0 ? latency.ms + random() * latency.jitterMs : latency.ms),
    forwarded: (bytes) => {
      bytesForwarded += bytes;
    },
  };

  // allowHalfOpen: a FIN is forwarded in order behind the data, not answered by our own FIN.
  // pauseOnConnect: nothing is read before the link decides whether it may flow.
  const server: Server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    links.add(new Link(state, client, options.target, (link) => links.delete(link)));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.listenPort ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => {});
  const port = (server.address() as AddressInfo).port;

  const resetAll = (): void => {
    for (const link of [...links]) link.reset();
  };
  const stopDropping = (): void => {
    clearInterval(dropTimer);
    dropTimer = undefined;
  };

  return {
    port,
    url: (path = '') => {
      const where = host.includes(':') ? `[${host}]` : host;
      return `http://${where}:${port}${path === '' || path.startsWith('/') ? path : `/${path}`}`;
    },
    setLatency: ({ ms, jitterMs = 0 }) => {
      if (!(ms >= 0 && jitterMs >= 0 && Number.isFinite(ms + jitterMs))) {
        throw new RangeError(`latency must be finite and non-negative, got ms=${ms} jitterMs=${jitterMs}`);
      }
      latency = { ms, jitterMs };
    },
    cut: resetAll,
    partition: () => {
      state.partitioned = true;
      for (const link of links) link.stall();
    },
    heal: () => {
      if (!state.partitioned) return;
      state.partitioned = false;
      // Every live link was stalled by the partition (old ones) or born stalled (new ones).
      resetAll();
    },
    dropConnectionsRandomly: ({ probabilityPerSecond, random: draw }) => {
      stopDropping();
      const p = Math.min(1, Math.max(0, probabilityPerSecond));
      // Per tick, so that ticks compound to p per second.
      const perTick = 1 - Math.pow(1 - p, DROP_TICK_MS / 1000);
      dropTimer = setInterval(() => {
        for (const link of [...links]) if (draw() < perTick) link.reset();
      }, DROP_TICK_MS);
      dropTimer.unref();
    },
    stopDropping,
    stats: () => ({ connections: links.size, bytesForwarded }),
    close: async () => {
      stopDropping();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        resetAll();
      });
    },
  };
}
