/**
 * bench:compare: polyarch against PouchDB on the same replication work, in one run, as ratios.
 *
 *   catch-up: a store holding N small documents and a fresh, empty replica pulling them all:
 *             documents per second, and the peak RSS of both processes;
 *   live:     two linked replicas, writes at a fixed rate over HTTP to one; the lag until each
 *             is seen at the other, and the write rate achieved.
 *
 * polyarch: `polyarch serve` processes (like bench:replication). PouchDB: an express-pouchdb
 * server process and a PouchDB process replicating with it. Two storage pairs: polyarch on
 * SQLite against PouchDB on LevelDB, and both in memory.
 *
 * Usage: npm run bench:compare [-- --docs 100000 --rate 500 --seconds 10 --storage durable,memory
 *        --warmup 2 --startup-runs 3 --quick --no-build --source --out file.json]
 *   --quick: 10,000 documents, 3 s of live writes; --source: polyarch from its sources (tsx), no build;
 *   --startup-runs: idle starts timed to take a leader's start off its catch-up (0: none).
 */
import { execSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { printTable } from './support.js';
import { runCompare, tableOf } from './compare/run.js';
import type { StoragePair } from './compare/run.js';

const { values: args } = parseArgs({
  options: {
    docs: { type: 'string' },
    rate: { type: 'string', default: '500' },
    seconds: { type: 'string' },
    warmup: { type: 'string', default: '2' },
    storage: { type: 'string', default: 'durable,memory' },
    quick: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    // Run polyarch from its sources through tsx, with no build (the smoke test's way).
    source: { type: 'boolean', default: false },
    out: { type: 'string' },
    'startup-runs': { type: 'string', default: '3' },
  },
});

function positive(name: string, value: string, orZero = false): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !orZero)) {
    throw new Error(`--${name} must be a ${orZero ? 'non-negative' : 'positive'} number, not "${value}"`);
  }
  return n;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const docs = Math.round(positive('docs', args.docs ?? (args.quick === true ? '10000' : '100000')));
const live = {
  rate: positive('rate', args.rate ?? '500'),
  seconds: positive('seconds', args.seconds ?? (args.quick === true ? '3' : '10')),
  warmup: positive('warmup', args.warmup ?? '2', true),
};
const storages = (args.storage ?? '').split(',').map((s) => s.trim());
for (const s of storages) {
  if (s !== 'durable' && s !== 'memory') throw new Error(`--storage takes durable and/or memory, not "${s}"`);
}
const out = args.out ?? path.join(here, 'results/compare.json');

const built = args.source !== true;
if (built && args['no-build'] !== true)
  execSync('npx tsc -p tsconfig.build.json', { cwd: path.join(here, '..'), stdio: 'inherit' });
const result = await runCompare({
  docs,
  live,
  storages: storages as StoragePair[],
  built,
  startupRuns: Math.round(positive('startup-runs', args['startup-runs'] ?? '3', true)),
  log: (line) => console.log(`  ${line}`),
});
console.log();
printTable(tableOf(result.rows));
console.log();
console.log(
  'ratio = polyarch / PouchDB; "better" says which way is good (docs/s and writes/s: higher; memory and lag: lower)',
);
mkdirSync(path.dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
console.log(`results: ${out}`);
