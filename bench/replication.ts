/**
 * bench:replication: real `polyarch serve` processes (the compiled build) on loopback.
 *
 *   catch-up: a leader holding N small documents, and a fresh leader that dials it: documents
 *             per second until the fresh one holds all N, and the peak RSS of both processes,
 *             for two sizes of N (memory should not grow with N);
 *   live:     two linked leaders, a client writing to one at a fixed rate over HTTP; the lag
 *             from each write's request to its arrival in the other's change feed (SSE).
 *
 * Usage: npm run bench:replication [-- --docs 100000 --rate 2000 --seconds 10]
 */
import { execSync } from 'node:child_process';
import http from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openReplica } from '../src/index.js';
import type { WriteOp } from '../src/index.js';
import { Leader, freePort, until } from '../test/support/leader-process.js';
import { fmt, machine, percentile, printTable, writeResults } from './support.js';

const { values: args } = parseArgs({
  options: {
    docs: { type: 'string', default: '100000' },
    rate: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '3' },
    'no-build': { type: 'boolean', default: false },
  },
});
const DOCS = Number(args.docs);
const RATE = Number(args.rate);
const SECONDS = Number(args.seconds);
/** Seconds of writes at the same rate before measuring: fresh processes compile their hot paths. */
const WARMUP = Number(args.warmup);

function peakRssMiB(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]) / 1024;
}

async function seed(dir: string, n: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const db = await openReplica({ id: 'source', storage: path.join(dir, 'polyarch.db') });
  for (let i = 0; i < n; i += 1000) {
    const ops: WriteOp[] = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) {
      ops.push({
        type: 'put',
        collection: 'items',
        id: `item-${j}`,
        value: { n: j, title: `item ${j}`, done: j % 2 === 0 },
      });
    }
    await db.batch(ops);
  }
  await db.close();
}

/** How long a leader of this build takes from spawn to answering /status, with no peers. */
async function startupMs(root: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const l = new Leader({ id: `idle-${i}`, port: await freePort(), data: path.join(root, `idle-${i}`), built: true });
    const t0 = performance.now();
    await l.start();
    times.push(performance.now() - t0);
    await l.stop();
  }
  return Math.min(...times);
}

async function catchUp(root: string, n: number, startupMs: number) {
  const srcDir = path.join(root, `src-${n}`);
  await seed(srcDir, n);
  const source = await new Leader({ id: 'source', port: await freePort(), data: srcDir, built: true }).start();
  const fresh = new Leader({
    id: `fresh-${n}`,
    port: await freePort(),
    data: path.join(root, `fresh-${n}`),
    peers: [source.url],
    built: true,
  });
  // The fresh leader is busy catching up from its first moment, so it may answer its first
  // /status only at the end: time from the spawn, and subtract how long the same build takes
  // to start and answer with no peer (measured just before).
  const t0 = performance.now();
  await fresh.start();
  await until(
    'the fresh leader to hold every document',
    async () => ((await fresh.status()).docs === n ? true : undefined),
    600_000,
    2,
  );
  const seconds = (performance.now() - t0 - startupMs) / 1000;
  const timed = n;
  const [a, b] = await Promise.all([source.status(), fresh.status()]);
  if (a.digest !== b.digest) throw new Error('catch-up finished with different digests');
  const rss = { source: peakRssMiB(source.child?.pid), fresh: peakRssMiB(fresh.child?.pid) };
  await Promise.all([source.stop(), fresh.stop()]);
  return { n, seconds, perSec: timed / seconds, rss };
}

// node:http with keep-alive: fetch costs too much CPU per request to drive thousands a second
// from the same two cores the leaders run on.
const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });

function put(base: string, collection: string, id: string, value: unknown): Promise<number> {
  const body = JSON.stringify(value);
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${base}/db/${collection}/${id}`,
      {
        method: 'PUT',
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

async function live(root: string) {
  const a = await new Leader({ id: 'a', port: await freePort(), data: path.join(root, 'live-a'), built: true }).start();
  const b = await new Leader({
    id: 'b',
    port: await freePort(),
    data: path.join(root, 'live-b'),
    peers: [a.url],
    built: true,
  }).start();
  await until('the link to be live', async () => ((await b.status()).peers[0]?.state === 'live' ? true : undefined));
  const sentAt = new Map<string, number>();
  const lags: number[] = [];
  const total = RATE * SECONDS;
  // Watch b's feed as server-sent events.
  const abort = new AbortController();
  const since = (await b.status()).seq;
  const res = await fetch(`${b.url}/changes?feed=eventsource&since=${since}`, { signal: abort.signal });
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let arrived = 0;
  const reading = (async () => {
    let buf = '';
    while (arrived < total) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = event.split('\n').find((l) => l.startsWith('data: '));
        if (data === undefined) continue;
        const entry = JSON.parse(data.slice(6)) as { id: string };
        const t = sentAt.get(entry.id);
        if (t !== undefined) {
          lags.push(performance.now() - t);
          sentAt.delete(entry.id);
          arrived++;
        }
      }
    }
  })().catch(() => {});
  // Write at a fixed rate: a tick every 10 ms sends RATE/100 writes.
  const perTick = Math.max(1, Math.round(RATE / 100));
  const warm = RATE * WARMUP;
  let sent = 0;
  let failed = 0;
  let t0 = performance.now();
  let measuredFrom = performance.now();
  const inflight = new Set<Promise<void>>();
  while (sent < warm + total) {
    const due = Math.min(warm + total, Math.floor(((performance.now() - t0) / 10) * perTick) + perTick);
    while (sent < due) {
      if (sent === warm) measuredFrom = performance.now();
      const measured = sent >= warm;
      const id = measured ? `w${sent++}` : `warm${sent++}`;
      if (measured) sentAt.set(id, performance.now());
      const p = put(a.url, 'live', id, { n: sent })
        .then((status) => {
          if (status !== 201) failed++;
        })
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  const writeSeconds = (performance.now() - measuredFrom) / 1000;
  t0 = measuredFrom;
  await Promise.all(inflight);
  await until('every write to reach b', () => (arrived >= total ? true : undefined), 60_000, 20);
  abort.abort();
  await reading;
  await Promise.all([a.stop(), b.stop()]);
  lags.sort((x, y) => x - y);
  return {
    writes: total,
    achievedRate: total / writeSeconds,
    failed,
    p50: percentile(lags, 50),
    p99: percentile(lags, 99),
    max: lags[lags.length - 1] ?? NaN,
  };
}

async function main(): Promise<void> {
  if (args['no-build'] !== true) execSync('npm run build', { stdio: 'ignore' });
  const root = mkdtempSync(path.join(os.tmpdir(), 'polyarch-bench-repl-'));
  try {
    const startup = await startupMs(root);
    const small = await catchUp(root, Math.max(1000, Math.floor(DOCS / 5)), startup);
    const big = await catchUp(root, DOCS, startup);
    const l = await live(root);
    printTable(
      [small, big].map((c) => ({
        work: `catch-up of ${fmt(c.n)} documents`,
        'docs/s': fmt(c.perSec),
        seconds: fmt(c.seconds, 2),
        'peak RSS source MiB': fmt(c.rss.source),
        'peak RSS fresh MiB': fmt(c.rss.fresh),
      })),
    );
    console.log();
    printTable([
      {
        work: `live: ${fmt(l.writes)} writes at ${fmt(RATE)}/s (achieved ${fmt(l.achievedRate)}/s), after ${WARMUP} s of warm-up`,
        'lag p50 ms': fmt(l.p50, 1),
        'lag p99 ms': fmt(l.p99, 1),
        'lag max ms': fmt(l.max, 1),
        'failed writes': l.failed,
      },
    ]);
    console.log(
      `catch-up time excludes the ${fmt(startup)} ms a leader of this build takes to start and answer (measured with no peer)`,
    );
    console.log('targets: catch-up >= 100,000 docs/s; live lag p99 < 50 ms; memory flat in the number of documents');
    const file = writeResults('replication', {
      bench: 'replication',
      date: new Date().toISOString(),
      machine: machine(),
      catchUp: [small, big],
      live: l,
    });
    console.log(`results: ${file}`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
