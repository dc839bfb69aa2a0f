/**
 * polyarch's side of bench:compare: real `polyarch serve` processes on loopback, as in
 * bench/replication.ts, on SQLite (a directory) or in memory (`--data :memory:`).
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { openReplica } from '../../src/index.js';
import type { WriteOp } from '../../src/index.js';
import { Leader, freePort, until } from '../../test/support/leader-process.js';
import { fixedRateLag, item, peakRssMiB, request } from './shared.js';
import type { LiveOptions, LiveResult } from './shared.js';

export type PolyarchStorage = 'sqlite' | 'memory';

export interface CatchUpResult {
  docs: number;
  seconds: number;
  perSec: number;
  /** Peak RSS in MiB of the process holding the documents and of the one pulling them. */
  rss: { source: number; replica: number };
  /** polyarch only: false when the time includes the fresh leader's start (see polyarchCatchUp). */
  startupSubtracted?: boolean;
}

interface Where {
  root: string;
  storage: PolyarchStorage;
  /** Run dist/ (after a build) rather than the sources through tsx. */
  built: boolean;
}

function leader(where: Where, id: string, port: number, peers: string[] = []): Leader {
  const data = where.storage === 'memory' ? ':memory:' : path.join(where.root, id);
  return new Leader({ id, port, data, peers, built: where.built });
}

/** How long a leader takes from spawn to answering /status with no peer (the best of `runs`; 0 for none). */
export async function polyarchStartupMs(where: Where, runs: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const l = leader(where, `idle-${where.storage}-${i}`, await freePort());
    const t0 = performance.now();
    await l.start();
    times.push(performance.now() - t0);
    await l.stop();
  }
  return times.length === 0 ? 0 : Math.min(...times);
}

async function seedOnDisk(dir: string, id: string, n: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const db = await openReplica({ id, storage: path.join(dir, 'polyarch.db') });
  for (let i = 0; i < n; i += 1000) {
    const ops: WriteOp[] = [];
    for (let j = i; j < Math.min(n, i + 1000); j++)
      ops.push({ type: 'put', collection: 'items', id: `item-${j}`, value: item(j) });
    await db.batch(ops);
  }
  await db.close();
}

async function seedOverHttp(url: string, n: number): Promise<void> {
  for (let i = 0; i < n; i += 1000) {
    const ops = [];
    for (let j = i; j < Math.min(n, i + 1000); j++)
      ops.push({ op: 'put', collection: 'items', id: `item-${j}`, value: item(j) });
    const status = await request('POST', `${url}/db/_batch`, { ops });
    if (status !== 200) throw new Error(`seeding polyarch: POST /db/_batch answered ${status}`);
  }
}

/**
 * A leader holding `n` documents, and a fresh one dialing it: the time from the fresh one's
 * spawn until it holds all `n`, less `startupMs` (a leader's start with no peer).
 */
export async function polyarchCatchUp(where: Where, n: number, startupMs: number): Promise<CatchUpResult> {
  const sourceId = `source-${where.storage}-${n}`;
  if (where.storage === 'sqlite') await seedOnDisk(path.join(where.root, sourceId), sourceId, n);
  const source = await leader(where, sourceId, await freePort()).start();
  const fresh = leader(where, `fresh-${where.storage}-${n}`, await freePort(), [source.url]);
  try {
    if (where.storage === 'memory') await seedOverHttp(source.url, n);
    const t0 = performance.now();
    await fresh.start();
    await until(
      'the fresh leader to hold every document',
      async () => ((await fresh.status()).docs === n ? true : undefined),
      600_000,
      2,
    );
    const elapsed = performance.now() - t0;
    // Below a few thousand documents the catch-up is shorter than the noise in a start's time
    // (through tsx above all), and the difference can come out negative: then keep the whole
    // time, start included, an upper bound (so docs/s is a lower bound), and say so.
    const startupSubtracted = elapsed - startupMs > 0.2 * elapsed;
    const seconds = (startupSubtracted ? elapsed - startupMs : elapsed) / 1000;
    const [a, b] = await Promise.all([source.status(), fresh.status()]);
    if (a.digest !== b.digest) throw new Error('polyarch catch-up finished with different digests');
    const rss = { source: peakRssMiB(source.child?.pid), replica: peakRssMiB(fresh.child?.pid) };
    return { docs: n, seconds, perSec: n / seconds, rss, startupSubtracted };
  } finally {
    await Promise.all([source.stop(), fresh.stop()]);
  }
}

/** Two linked leaders; writes over HTTP to one, arrivals read from the other's change feed (SSE). */
export async function polyarchLive(where: Where, options: LiveOptions): Promise<LiveResult> {
  const a = await leader(where, `live-a-${where.storage}`, await freePort()).start();
  const b = leader(where, `live-b-${where.storage}`, await freePort(), [a.url]);
  const abort = new AbortController();
  try {
    await b.start();
    await until('the link to be live', async () => ((await b.status()).peers[0]?.state === 'live' ? true : undefined));
    const since = (await b.status()).seq;
    const res = await fetch(`${b.url}/changes?feed=eventsource&since=${since}`, { signal: abort.signal });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    return await fixedRateLag(
      options,
      async (id, n) => (await request('PUT', `${a.url}/db/live/${id}`, { n })) === 201,
      (onArrive) => {
        const decoder = new TextDecoder();
        let buf = '';
        void (async () => {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            buf += decoder.decode(value, { stream: true });
            let i: number;
            while ((i = buf.indexOf('\n\n')) >= 0) {
              const data = buf
                .slice(0, i)
                .split('\n')
                .find((l) => l.startsWith('data: '));
              buf = buf.slice(i + 2);
              if (data !== undefined) onArrive((JSON.parse(data.slice(6)) as { id: string }).id);
            }
          }
        })().catch(() => {});
      },
    );
  } finally {
    abort.abort();
    await Promise.all([a.stop(), b.stop()]);
  }
}
