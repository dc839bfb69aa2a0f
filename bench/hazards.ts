/**
 * bench:hazards: what the tools of docs/keys-constraints-triggers.md cost a durable write on
 * the SQLite leader, as a ratio to the same writes into a collection without them:
 *
 *   plain        single puts of small JSON documents (the baseline)
 *   unique       the same into a collection with `unique: ['email']` (every value distinct)
 *   reference    the same into a collection whose `owner` references 100 existing users
 *   trigger      the same with an `origin` trigger attached (no-op handler): each write also
 *                stores an outbox event, and each delivery deletes it
 *   newId        ids made per second (in memory, no write)
 *   nextval      sequence numbers per second at the allocator (one durable position write each)
 *
 * Fixed sizes; the variants run interleaved, `rounds` times, and the table shows medians.
 * Usage: npm run bench:hazards [-- --writes N --rounds R]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openReplica } from '../src/index.js';
import type { Database } from '../src/index.js';
import { fmt, machine, printTable, writeResults } from './support.js';

const { values: args } = parseArgs({
  options: { writes: { type: 'string', default: '3000' }, rounds: { type: 'string', default: '3' } },
});
const WRITES = Number(args.writes);
const ROUNDS = Number(args.rounds);

type Variant = 'plain' | 'unique' | 'reference' | 'trigger';
const VARIANTS: readonly Variant[] = ['plain', 'unique', 'reference', 'trigger'];

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};

/** Puts per second into a collection set up for `variant`, in a fresh store. */
async function writes(dir: string, variant: Variant, round: number): Promise<number> {
  const db: Database = await openReplica({
    id: 'bench',
    storage: path.join(dir, `${variant}-${round}.db`),
    collections: {
      accounts: variant === 'unique' ? { unique: ['email'] } : {},
      tasks: variant === 'reference' ? { references: { owner: 'users' } } : {},
    },
  });
  try {
    const collection = variant === 'reference' ? 'tasks' : 'accounts';
    if (variant === 'reference') {
      await db.batch(
        Array.from({ length: 100 }, (_, i) => ({ type: 'put', collection: 'users', id: `u${i}`, value: {} })),
      );
    }
    let delivered = 0;
    const trigger =
      variant === 'trigger'
        ? db.on('change', () => void delivered++, { where: 'origin', name: 'bench', collection })
        : undefined;
    await trigger?.ready;
    const docs = db.collection(collection);
    const t0 = performance.now();
    for (let i = 0; i < WRITES; i++) {
      await docs.put(`d${i}`, { email: `user${i}@example.com`, owner: `u${i % 100}`, n: i });
    }
    // A trigger's cost includes delivering (and deleting) every event.
    while (trigger !== undefined && delivered < WRITES) await new Promise((r) => setImmediate(r));
    const seconds = (performance.now() - t0) / 1000;
    if (db.status().docs < WRITES) throw new Error(`${variant}: expected ${WRITES} documents`);
    if (trigger !== undefined && trigger.status().pending !== 0) throw new Error('trigger: events left pending');
    return WRITES / seconds;
  } finally {
    await db.close();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'polyarch-bench-hazards-'));
  try {
    const perSec: Record<Variant, number[]> = { plain: [], unique: [], reference: [], trigger: [] };
    const ids: number[] = [];
    const numbers: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (const v of VARIANTS) perSec[v].push(await writes(dir, v, round));
      const db = await openReplica({ id: 'alloc', storage: path.join(dir, `seq-${round}.db`) });
      try {
        const seen = new Set<string>();
        let t0 = performance.now();
        for (let i = 0; i < 200_000; i++) seen.add(db.newId());
        ids.push(200_000 / ((performance.now() - t0) / 1000));
        if (seen.size !== 200_000) throw new Error('newId repeated an id');
        const seq = db.sequence('invoice');
        await seq.configure({ allocator: 'alloc', blockSize: 1000 });
        let last = 0;
        t0 = performance.now();
        for (let i = 0; i < WRITES; i++) {
          const n = await seq.next();
          if (n <= last) throw new Error('nextval went backwards');
          last = n;
        }
        numbers.push(WRITES / ((performance.now() - t0) / 1000));
      } finally {
        await db.close();
      }
    }
    const base = median(perSec.plain);
    const rows = VARIANTS.map((v) => ({
      work: `${v} puts (${fmt(WRITES)})`,
      'per second': fmt(median(perSec[v])),
      'vs plain': `${fmt(median(perSec[v]) / base, 2)}x`,
    }));
    rows.push({ work: 'newId (in memory)', 'per second': fmt(median(ids)), 'vs plain': '' });
    rows.push({
      work: `nextval at the allocator (${fmt(WRITES)})`,
      'per second': fmt(median(numbers)),
      'vs plain': '',
    });
    printTable(rows);
    const file = writeResults('hazards', {
      bench: 'hazards',
      date: new Date().toISOString(),
      machine: machine(),
      writes: WRITES,
      rounds: ROUNDS,
      putsPerSec: Object.fromEntries(VARIANTS.map((v) => [v, median(perSec[v])])),
      newIdPerSec: median(ids),
      nextvalPerSec: median(numbers),
    });
    console.log(`results: ${file}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
