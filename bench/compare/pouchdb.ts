/**
 * PouchDB's side of bench:compare, in shapes parallel to polyarch's: an express-pouchdb server
 * process holding the documents (polyarch's source leader), and a PouchDB process replicating
 * from it (polyarch's fresh leader dialing the source). Both on one adapter: `leveldb` on disk
 * (against polyarch on SQLite) or `memory` (against polyarch in memory).
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { freePort } from '../../test/support/leader-process.js';
import { pouchWith } from './pouch-setup.js';
import type { PouchAdapter } from './pouch-setup.js';
import { LineProcess, fixedRateLag, item, peakRssMiB, request } from './shared.js';
import type { LiveOptions, LiveResult } from './shared.js';
import type { CatchUpResult } from './polyarch.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
let compiled: string | undefined;

/**
 * pouch-node.ts as plain JavaScript, so PouchDB's processes run on bare Node as polyarch's
 * (from dist/) do: through tsx each would carry its loader (about 30 MiB more RSS, measured). Written
 * under node_modules/.cache so that its imports of the PouchDB packages resolve.
 */
function pouchScript(): string {
  if (compiled !== undefined) return compiled;
  const out = path.join(repoRoot, 'node_modules/.cache/polyarch-bench-compare');
  mkdirSync(out, { recursive: true });
  for (const name of ['pouch-node', 'pouch-setup']) {
    const source = readFileSync(path.join(repoRoot, `bench/compare/${name}.ts`), 'utf8');
    const js = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
    }).outputText;
    // Renamed into place: another run (the smoke test beside a full run) may be reading it.
    const tmp = path.join(out, `${name}.${process.pid}.tmp`);
    writeFileSync(tmp, js);
    renameSync(tmp, path.join(out, `${name}.js`));
  }
  compiled = path.join(out, 'pouch-node.js');
  return compiled;
}

interface Where {
  root: string;
  adapter: PouchAdapter;
}

function spawnPouch(args: string[]): LineProcess {
  return new LineProcess([pouchScript(), ...args], repoRoot);
}

async function startServer(where: Where, name: string): Promise<{ proc: LineProcess; url: string }> {
  const port = await freePort();
  const proc = spawnPouch([
    'server',
    '--port',
    String(port),
    '--adapter',
    where.adapter,
    '--dir',
    path.join(where.root, name),
  ]);
  await proc.message('ready', 30_000);
  return { proc, url: `http://127.0.0.1:${port}` };
}

async function createDb(url: string): Promise<void> {
  const status = await request('PUT', url);
  // 412: it exists already (a store seeded on disk).
  if (status !== 201 && status !== 412) throw new Error(`PUT ${url} answered ${status}`);
}

async function seedOnDisk(where: Where, name: string, n: number): Promise<void> {
  const db = new (pouchWith('leveldb', path.join(where.root, name)))('items');
  for (let i = 0; i < n; i += 1000) {
    const docs = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) docs.push({ _id: `item-${j}`, ...item(j) });
    await db.bulkDocs(docs);
  }
  await db.close();
}

async function seedOverHttp(db: string, n: number): Promise<void> {
  for (let i = 0; i < n; i += 1000) {
    const docs = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) docs.push({ _id: `item-${j}`, ...item(j) });
    const status = await request('POST', `${db}/_bulk_docs`, { docs });
    if (status !== 201) throw new Error(`seeding PouchDB: _bulk_docs answered ${status}`);
  }
}

/**
 * An express-pouchdb server holding `n` documents and a PouchDB process that replicates them
 * all once (`PouchDB.replicate(remote, local)`, default options): the time of that call, as the
 * replicating process measures it (so without its own start).
 */
export async function pouchCatchUp(where: Where, n: number): Promise<CatchUpResult> {
  const name = `pouch-source-${where.adapter}-${n}`;
  if (where.adapter === 'leveldb') await seedOnDisk(where, name, n);
  const server = await startServer(where, name);
  let replica: LineProcess | undefined;
  try {
    const db = `${server.url}/items`;
    await createDb(db);
    if (where.adapter === 'memory') await seedOverHttp(db, n);
    const dir = path.join(where.root, `pouch-fresh-${where.adapter}-${n}`);
    replica = spawnPouch(['replica', '--remote', db, '--adapter', where.adapter, '--dir', dir, '--mode', 'catchup']);
    const done = await replica.message('done', 600_000);
    if (done.docs !== n) throw new Error(`PouchDB replica holds ${String(done.docs)} documents, not ${n}`);
    const seconds = (done.ms as number) / 1000;
    const rss = { source: peakRssMiB(server.proc.child.pid), replica: peakRssMiB(replica.child.pid) };
    return { docs: n, seconds, perSec: n / seconds, rss };
  } finally {
    await Promise.all([server.proc.stop(), replica?.stop()]);
  }
}

/**
 * An express-pouchdb server and a PouchDB process in live two-way sync with it (`PouchDB.sync`,
 * `live: true`); writes over HTTP to the server, arrivals from the replica's
 * `changes({ live: true, since: 'now' })`, printed on its stdout.
 */
export async function pouchLive(where: Where, options: LiveOptions): Promise<LiveResult> {
  const server = await startServer(where, `pouch-live-a-${where.adapter}`);
  let replica: LineProcess | undefined;
  try {
    const db = `${server.url}/items`;
    await createDb(db);
    const dir = path.join(where.root, `pouch-live-b-${where.adapter}`);
    replica = spawnPouch(['replica', '--remote', db, '--adapter', where.adapter, '--dir', dir, '--mode', 'live']);
    await replica.message('ready', 30_000);
    const r = replica;
    return await fixedRateLag(
      options,
      // 201, or 202 where CouchDB's API allows it (written, quorum not yet confirmed).
      async (id, n) => [201, 202].includes(await request('PUT', `${db}/${id}`, { n })),
      (onArrive) => (r.onLine = onArrive),
    );
  } finally {
    await Promise.all([server.proc.stop(), replica?.stop()]);
  }
}
