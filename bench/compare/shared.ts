/** What both sides of bench:compare share: the documents, HTTP writes, child processes, the live writer. */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { percentile } from '../support.js';

/** The document both databases hold: small, three fields, the same as bench:replication's. */
export function item(j: number): { n: number; title: string; done: boolean } {
  return { n: j, title: `item ${j}`, done: j % 2 === 0 };
}

/** Peak resident set (VmHWM) of a live process, in MiB. */
export function peakRssMiB(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

// node:http with keep-alive: fetch costs too much CPU per request to drive hundreds of writes
// a second from the same two cores the databases run on.
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

/** Sends one request with a JSON body and resolves with the status code. */
export function request(method: string, url: string, value?: unknown): Promise<number> {
  const body = value === undefined ? '' : JSON.stringify(value);
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A child process that speaks in lines on stdout: JSON messages, or anything else to `onLine`. */
export class LineProcess {
  readonly child: ChildProcess;
  output = '';
  private messages: Record<string, unknown>[] = [];
  private waiters: (() => void)[] = [];
  private exited: number | null = null;
  onLine: (line: string) => void = () => {};

  constructor(argv: string[], cwd: string) {
    this.child = spawn(process.execPath, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stderr?.on('data', (d: Buffer) => (this.output = (this.output + d.toString()).slice(-4000)));
    this.child.on('exit', (code) => {
      this.exited = code ?? -1;
      this.wake();
    });
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      if (line.startsWith('{')) {
        this.messages.push(JSON.parse(line) as Record<string, unknown>);
        this.wake();
      } else this.onLine(line);
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** The first message with `key` set, waiting up to `timeoutMs` for it. */
  async message(key: string, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.find((x) => x[key] !== undefined);
      if (m !== undefined) return m;
      if (this.exited !== null) throw new Error(`process exited with ${this.exited}: ${this.output}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for "${key}" from a child process: ${this.output}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async stop(): Promise<void> {
    if (this.exited !== null) return;
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    await done;
  }
}

export interface LiveOptions {
  rate: number;
  seconds: number;
  warmup: number;
}

export interface LiveResult {
  writes: number;
  /** Writes a second the writer achieved sending. */
  achievedRate: number;
  /** Writes a second seen at the other replica: the measured writes over the time from the first's request to the last's arrival. */
  deliveredRate: number;
  failed: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * Writes `rate` documents a second for `warmup` then `seconds` seconds through `write` (true when
 * the write succeeded), and times each measured one from its request until `arrivals` reports
 * its id seen at the other replica. Warm-up writes (ids `warm…`) are not measured: fresh
 * processes compile their hot paths on them.
 */
export async function fixedRateLag(
  options: LiveOptions,
  write: (id: string, n: number) => Promise<boolean>,
  arrivals: (onArrive: (id: string) => void) => void,
): Promise<LiveResult> {
  const total = Math.round(options.rate * options.seconds);
  const warm = Math.round(options.rate * options.warmup);
  const sentAt = new Map<string, number>();
  const lags: number[] = [];
  let lastArrival = 0;
  arrivals((id) => {
    const t = sentAt.get(id);
    if (t === undefined) return;
    lastArrival = performance.now();
    lags.push(lastArrival - t);
    sentAt.delete(id);
  });
  // A tick every 10 ms sends what is due by then.
  const perTick = options.rate / 100;
  let sent = 0;
  let failed = 0;
  const t0 = performance.now();
  let measuredFrom = t0;
  const inflight = new Set<Promise<void>>();
  while (sent < warm + total) {
    const due = Math.min(warm + total, Math.floor(((performance.now() - t0) / 10) * perTick) + 1);
    while (sent < due) {
      if (sent === warm) measuredFrom = performance.now();
      const measured = sent >= warm;
      const id = measured ? `w${sent}` : `warm${sent}`;
      sent++;
      if (measured) sentAt.set(id, performance.now());
      // A write refused or lost counts as failed rather than ending the run: the table reports it.
      const p = write(id, sent)
        .then(
          (ok) => {
            if (!ok) failed++;
          },
          () => {
            failed++;
          },
        )
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const writeSeconds = (performance.now() - measuredFrom) / 1000;
  await Promise.all(inflight);
  const deadline = Date.now() + 60_000;
  while (lags.length < total - failed) {
    if (Date.now() > deadline) throw new Error(`only ${lags.length} of ${total} writes arrived within 60 s`);
    await new Promise((r) => setTimeout(r, 20));
  }
  lags.sort((x, y) => x - y);
  return {
    writes: total,
    achievedRate: total / writeSeconds,
    deliveredRate: lags.length / ((lastArrival - measuredFrom) / 1000),
    failed,
    p50: percentile(lags, 50),
    p99: percentile(lags, 99),
    max: lags[lags.length - 1] ?? NaN,
  };
}
