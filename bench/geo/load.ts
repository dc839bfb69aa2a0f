/**
 * Load and observation for bench:geo: writers that send `_batch` requests at a fixed rate (or
 * single PUTs, timed) over keep-alive node:http agents, and watchers that read each leader's
 * change feed as server-sent events and stamp the arrival of every write.
 */
import http from 'node:http';

/** One request's outcome: its HTTP status (0: no answer) and its round trip. */
export interface Outcome {
  status: number;
  ms: number;
}

export function newAgent(): http.Agent {
  // fetch costs too much CPU per request to drive thousands a second on two shared cores.
  return new http.Agent({ keepAlive: true, maxSockets: 16 });
}

function request(agent: http.Agent, url: string, method: string, body: string, timeoutMs: number): Promise<Outcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (status: number) => {
      if (done) return;
      done = true;
      resolve({ status, ms: performance.now() - t0 });
    };
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => finish(res.statusCode ?? 0));
        res.on('error', () => finish(0));
      },
    );
    // A hung request (a partitioned or dead peer) counts as a failed write, not a stall.
    req.setTimeout(timeoutMs, () => req.destroy());
    req.on('error', () => finish(0));
    req.end(body);
  });
}

export function putDoc(agent: http.Agent, base: string, collection: string, id: string, value: unknown) {
  return request(agent, `${base}/db/${collection}/${id}`, 'PUT', JSON.stringify(value), 5000);
}

export interface BatchOp {
  collection: string;
  id: string;
  value: unknown;
}

export function postBatch(agent: http.Agent, base: string, ops: BatchOp[], timeoutMs = 3000) {
  const body = JSON.stringify({ ops: ops.map((o) => ({ op: 'put', ...o })) });
  return request(agent, `${base}/db/_batch`, 'POST', body, timeoutMs);
}

/** Per-write bookkeeping shared by writers and watchers: when each id was sent and by whom. */
export class Ledger {
  /** id -> [origin dc, send time (performance.now())] */
  readonly sent = new Map<string, { origin: string; at: number; acked: boolean }>();
  /** Every arrival of a write at a leader other than its origin. */
  readonly arrivals: { origin: string; at: string; sentAt: number; lagMs: number }[] = [];
  /** Latest arrival time per (leader, id), for catch-up questions. */
  readonly seenAt = new Map<string, Map<string, number>>();

  arrive(leader: string, id: string, now: number): void {
    const s = this.sent.get(id);
    if (s === undefined || s.origin === leader) return;
    let seen = this.seenAt.get(leader);
    if (seen === undefined) this.seenAt.set(leader, (seen = new Map()));
    if (seen.has(id)) return;
    seen.set(id, now);
    this.arrivals.push({ origin: s.origin, at: leader, sentAt: s.at, lagMs: now - s.at });
  }
}

export interface WriterStats {
  attempted: number;
  succeeded: number;
  /** Per request: [send time, ops, ok]. */
  requests: { at: number; ops: number; ok: boolean }[];
}

/**
 * Writes `rate` documents a second to `base` as `_batch` requests every 10 ms (the ops due since
 * the last tick), until stop(). At most `maxInflight` requests at once; ops due while all are
 * busy go into the next batch, so the offered rate holds as long as the leader keeps up.
 */
export class Writer {
  readonly stats: WriterStats = { attempted: 0, succeeded: 0, requests: [] };
  private stopped = false;
  private loop: Promise<void> | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private n = 0;

  constructor(
    private readonly o: {
      dc: string;
      base: () => string;
      collection: string;
      rate: number;
      ledger: Ledger;
      /** The id of the n-th write (default `${dc}-${n}`). */
      idOf?: (n: number) => string;
      maxInflight?: number;
      /** Stop after this many writes. */
      limit?: number;
    },
  ) {}

  start(): this {
    this.loop = this.run();
    return this;
  }

  private async run(): Promise<void> {
    const agent = newAgent();
    const t0 = performance.now();
    const maxInflight = this.o.maxInflight ?? 8;
    const idOf = this.o.idOf ?? ((n: number) => `${this.o.dc}-${n}`);
    while (!this.stopped) {
      let due = Math.floor(((performance.now() - t0) / 1000) * this.o.rate);
      if (this.o.limit !== undefined) due = Math.min(due, this.o.limit);
      if (this.o.limit !== undefined && this.n >= this.o.limit) break;
      if (due > this.n && this.inflight.size < maxInflight) {
        const count = Math.min(500, due - this.n);
        const ops: BatchOp[] = [];
        const at = performance.now();
        for (let i = 0; i < count; i++) {
          const id = idOf(this.n++);
          ops.push({ collection: this.o.collection, id, value: { dc: this.o.dc, n: this.n } });
          this.o.ledger.sent.set(id, { origin: this.o.dc, at, acked: false });
        }
        this.stats.attempted += count;
        const p = postBatch(agent, this.o.base(), ops).then(({ status }) => {
          const ok = status === 200;
          this.stats.requests.push({ at, ops: count, ok });
          if (ok) {
            this.stats.succeeded += count;
            for (const op of ops) {
              const s = this.o.ledger.sent.get(op.id);
              if (s !== undefined) s.acked = true;
            }
          } else {
            // A write that failed may still have landed (a timeout after the commit); it is
            // not counted as a success, and its arrivals are not counted as lag.
            for (const op of ops) this.o.ledger.sent.delete(op.id);
          }
        });
        const tracked = p.finally(() => this.inflight.delete(tracked));
        this.inflight.add(tracked);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(this.inflight);
    agent.destroy();
  }

  async stop(): Promise<WriterStats> {
    this.stopped = true;
    await this.loop;
    return this.stats;
  }

  /** Resolves once the writer reached its limit (only with `limit`). */
  async done(): Promise<WriterStats> {
    await this.loop;
    return this.stats;
  }
}

/**
 * Reads a leader's change feed (SSE) from its current head and tells the ledger of each entry,
 * reconnecting from the last seen seq when the leader goes away (it may be killed and restarted).
 */
export class FeedWatcher {
  private stopped = false;
  private lastSeq = 0;
  private abort = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly dc: string,
    private readonly url: string,
    private readonly ledger: Ledger,
  ) {}

  async start(): Promise<this> {
    const res = await fetch(`${this.url}/status`);
    this.lastSeq = ((await res.json()) as { seq: number }).seq;
    this.loop = this.run();
    return this;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.readOnce();
      } catch {
        // The leader is down, or the stream broke: retry from the last entry seen.
      }
      if (!this.stopped) await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async readOnce(): Promise<void> {
    this.abort = new AbortController();
    const res = await fetch(`${this.url}/changes?feed=eventsource&since=${this.lastSeq}`, {
      signal: this.abort.signal,
    });
    if (!res.ok || res.body === null) throw new Error(`feed ${res.status}`);
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const now = performance.now();
      buf += decoder.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = event.split('\n').find((l) => l.startsWith('data: '));
        if (data === undefined) continue;
        const entry = JSON.parse(data.slice(6)) as { id: string; seq: number };
        if (typeof entry.seq === 'number') this.lastSeq = Math.max(this.lastSeq, entry.seq);
        this.ledger.arrive(this.dc, entry.id, now);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.loop;
  }
}
