/**
 * bench:writes: durable writes into the SQLite leader, against raw better-sqlite3 inserts
 * of the same bytes with the same settings (WAL, synchronous=NORMAL) as the physical limit.
 *
 *   single:  one document per transaction (each write acknowledged after its commit)
 *   batched: batches of 1,000 small JSON documents, one transaction each
 *
 * Fixed seed and sizes; every run checks what it wrote before it reports.
 * Usage: npm run bench:writes [-- --single N --batches B]
 */
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openReplica } from '../src/index.js';
import type { WriteOp } from '../src/index.js';
import { SeededRandom } from '../src/env/index.js';
import { fmt, machine, percentile, printTable, writeResults } from './support.js';

const { values: args } = parseArgs({
  options: { single: { type: 'string', default: '10000' }, batches: { type: 'string', default: '100' } },
});
const SINGLE = Number(args.single);
const BATCHES = Number(args.batches);
const BATCH = 1000;

function makeDocs(n: number, seed: number): { id: string; value: Record<string, unknown>; bytes: Buffer }[] {
  const rng = new SeededRandom(seed);
  return Array.from({ length: n }, (_, i) => {
    const value = {
      title: `task ${i}`,
      done: rng.next() < 0.5,
      priority: rng.int(5),
      tags: ['work', `t${rng.int(20)}`],
    };
    return { id: `doc-${i.toString().padStart(8, '0')}`, value, bytes: Buffer.from(JSON.stringify(value)) };
  });
}

function rawSqlite(dir: string) {
  const db = new Database(path.join(dir, 'raw.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.exec(
    'CREATE TABLE docs (collection TEXT NOT NULL, id TEXT NOT NULL, state BLOB NOT NULL, PRIMARY KEY (collection, id)) WITHOUT ROWID',
  );
  const insert = db.prepare('INSERT INTO docs (collection, id, state) VALUES (?, ?, ?)');
  return { db, insert };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polyarch-bench-'));
  try {
    const singleDocs = makeDocs(SINGLE, 1);
    const batchDocs = makeDocs(BATCHES * BATCH, 2);

    // Raw better-sqlite3: single-row commits, then 1,000-row transactions.
    const raw = rawSqlite(dir);
    const rawLat: number[] = [];
    let t0 = performance.now();
    for (const d of singleDocs) {
      const t = performance.now();
      raw.insert.run('single', d.id, d.bytes);
      rawLat.push(performance.now() - t);
    }
    const rawSingleS = (performance.now() - t0) / 1000;
    const rawBatch = raw.db.transaction((docs: typeof batchDocs) => {
      for (const d of docs) raw.insert.run('batch', d.id, d.bytes);
    });
    t0 = performance.now();
    for (let b = 0; b < BATCHES; b++) rawBatch(batchDocs.slice(b * BATCH, (b + 1) * BATCH));
    const rawBatchS = (performance.now() - t0) / 1000;
    const rawCount = (raw.db.prepare('SELECT count(*) AS n FROM docs').get() as { n: number }).n;
    if (rawCount !== SINGLE + BATCHES * BATCH) throw new Error('raw baseline lost rows');
    raw.db.close();

    // polyarch: the SQLite leader through the public SDK.
    const db = await openReplica({ id: 'bench', storage: path.join(dir, 'polyarch.db') });
    const todos = db.collection('single');
    const lat: number[] = [];
    t0 = performance.now();
    for (const d of singleDocs) {
      const t = performance.now();
      await todos.put(d.id, d.value as never);
      lat.push(performance.now() - t);
    }
    const singleS = (performance.now() - t0) / 1000;
    t0 = performance.now();
    for (let b = 0; b < BATCHES; b++) {
      const ops: WriteOp[] = batchDocs
        .slice(b * BATCH, (b + 1) * BATCH)
        .map((d) => ({ type: 'put', collection: 'batch', id: d.id, value: d.value }));
      await db.batch(ops);
    }
    const batchS = (performance.now() - t0) / 1000;
    // Check inside the run: every document is there, with its value.
    if (db.status().docs !== SINGLE + BATCHES * BATCH)
      throw new Error(`expected ${SINGLE + BATCHES * BATCH} docs, found ${db.status().docs}`);
    const probe = batchDocs[batchDocs.length - 1];
    const got = await db.collection('batch').get(probe?.id as string);
    if (JSON.stringify(got?.value) !== JSON.stringify(probe?.value))
      throw new Error('a batched document reads back wrong');
    await db.close();

    lat.sort((a, b) => a - b);
    rawLat.sort((a, b) => a - b);
    const rows = [
      {
        work: `single writes (${fmt(SINGLE)})`,
        'polyarch /s': fmt(SINGLE / singleS),
        'raw sqlite /s': fmt(SINGLE / rawSingleS),
        ratio: `${fmt((100 * rawSingleS) / singleS)}%`,
        'p50 ms': `${fmt(percentile(lat, 50), 3)} (raw ${fmt(percentile(rawLat, 50), 3)})`,
        'p99 ms': `${fmt(percentile(lat, 99), 3)} (raw ${fmt(percentile(rawLat, 99), 3)})`,
      },
      {
        work: `batched writes (${BATCHES} x ${fmt(BATCH)})`,
        'polyarch /s': fmt((BATCHES * BATCH) / batchS),
        'raw sqlite /s': fmt((BATCHES * BATCH) / rawBatchS),
        ratio: `${fmt((100 * rawBatchS) / batchS)}%`,
        'p50 ms': '',
        'p99 ms': '',
      },
    ];
    printTable(rows);
    console.log('targets: batched >= 50% of raw, single >= 30% of raw');
    const file = writeResults('writes', {
      bench: 'writes',
      date: new Date().toISOString(),
      machine: machine(),
      single: {
        n: SINGLE,
        perSec: SINGLE / singleS,
        rawPerSec: SINGLE / rawSingleS,
        p50Ms: percentile(lat, 50),
        p99Ms: percentile(lat, 99),
        rawP50Ms: percentile(rawLat, 50),
        rawP99Ms: percentile(rawLat, 99),
      },
      batched: {
        batches: BATCHES,
        size: BATCH,
        perSec: (BATCHES * BATCH) / batchS,
        rawPerSec: (BATCHES * BATCH) / rawBatchS,
      },
    });
    console.log(`results: ${file}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
