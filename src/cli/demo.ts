/**
 * `polyarch demo`: three leaders, eu, us and ap, replicating all-to-all on loopback, each
 * with its own SQLite store in a temporary folder (or --dir). It seeds a few documents,
 * prints each leader's URL and commands to try, and runs until interrupted, then cleans up.
 * `--in-process` runs the scripted scenario of concurrent writes in one process instead.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { openReplica, memoryConnectionPair } from '../index.js';
import type { Database } from '../index.js';
import { resolveConfig } from '../server/config.js';
import { startServer } from '../server/serve.js';
import type { RunningServer } from '../server/serve.js';
import { DEFAULT_WEB_DIR, hasWebBuild } from '../server/web-pages.js';
import { closeOnSignals } from './serve-command.js';

type Print = (line: string) => void;

const WELCOME_TEXT =
  'Welcome to polyarch!\n\nThis text lives on three leaders. Open it from two of them and type in both:\n' +
  'edits merge as you type, and so do edits made while a page is offline.\n';

async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('the demo leaders did not converge in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts eu, us and ap on `basePort`..+2 (0: free ports), linked all-to-all. */
export async function startDemoCluster(options: {
  dir: string;
  basePort: number;
  logLevel?: 'silent' | 'warn';
}): Promise<RunningServer[]> {
  const names = ['eu', 'us', 'ap'] as const;
  const servers: RunningServer[] = [];
  for (const [i, id] of names.entries()) {
    // Each pair is linked once: a leader dials the ones started before it.
    const config = resolveConfig({
      id,
      port: options.basePort === 0 ? 0 : options.basePort + i,
      data: path.join(options.dir, id),
      peers: servers.map((s) => s.url),
      logLevel: options.logLevel ?? 'error',
      cluster: 'demo',
    });
    servers.push(await startServer(config));
  }
  return servers;
}

export async function runServerDemo(
  options: { dir?: string; port: number },
  print: Print = console.log,
): Promise<RunningServer[]> {
  const temp = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(path.join(os.tmpdir(), 'polyarch-demo-'));
  const servers = await startDemoCluster({ dir, basePort: options.port });
  const [eu, us, ap] = servers as [RunningServer, RunningServer, RunningServer];
  // Calendar events ({ title, start, end }: ISO instants), today, as the calendar page shows them.
  const today = (hour: number, minute = 0): string => {
    const d = new Date();
    d.setHours(hour, minute, 0, 0);
    return d.toISOString();
  };
  await eu.db.collection('events').put('standup', { title: 'Standup', start: today(9, 30), end: today(9, 45) });
  await us.db.collection('events').put('retro', { title: 'Retro', start: today(16), end: today(17) });
  await ap.db.collection('events').put('lunch', { title: 'Team lunch', start: today(12, 30), end: today(13, 30) });
  const welcome = eu.db.text('notes', 'welcome');
  await welcome.ready;
  if (welcome.length === 0) welcome.insert(0, WELCOME_TEXT);
  await welcome.close();
  await waitUntil(() => new Set(servers.map((s) => s.db.status().digest)).size === 1, 10_000);

  print('Three leaders, replicating all-to-all (stores in ' + dir + '):');
  for (const s of servers) print(`  ${s.db.id}  ${s.url}`);
  print('\nThe collaborative editor, one page per leader (open two side by side, type in both):');
  for (const s of servers) print(`  ${s.db.id}  ${s.url}/web/editor/?doc=notes/welcome`);
  print('\nThe offline-first calendar, one page per leader (events stay in the browser; try it offline):');
  for (const s of servers) print(`  ${s.db.id}  ${s.url}/web/calendar/`);
  if (!hasWebBuild(DEFAULT_WEB_DIR)) print('  (the pages are not built: run `npm run build:web` first)');
  print('\nTry:');
  print(`  npx polyarch get events standup --url ${us.url}`);
  print(
    `  npx polyarch put events standup '{"title":"Standup","start":"${today(10)}","end":"${today(10, 15)}"}' --url ${eu.url}`,
  );
  print(`  npx polyarch status --url ${ap.url}`);
  print(`  npx polyarch watch --url ${ap.url}`);
  print(`  curl ${eu.url}/db/events`);
  print(`  npx polyarch config likes '{"kind":"counter"}' --url ${eu.url}`);
  print(`  npx polyarch patch likes post-1 '[{"op":"increment","path":"","by":1}]' --url ${us.url}`);
  print(`  npx polyarch conflicts --url ${ap.url}`);
  print('\n(from a source checkout, use `npm run polyarch --` instead of `npx polyarch`)');
  print('Ctrl-C stops the leaders' + (temp ? ' and removes their stores.' : '.'));
  closeOnSignals(servers, () => {
    if (temp) rmSync(dir, { recursive: true, force: true });
  });
  return servers;
}

/** The scripted scenario: concurrent writes while apart, a ring sync, conflicts, equal digests. */
export async function runDemo(print: Print = console.log): Promise<{ digests: string[]; conflicts: number }> {
  const names = ['eu', 'us', 'ap'] as const;
  const dbs: Database[] = await Promise.all(names.map((id) => openReplica({ id, storage: 'memory' })));
  const [eu, us, ap] = dbs as [Database, Database, Database];

  print('Three leaders, eu, us and ap, each accepting writes while cut off from the others:');
  await eu.collection('events').put('standup', { title: 'Standup', at: '09:30', room: 'Paris' });
  await us.collection('events').put('standup', { title: 'Standup', at: '10:00', room: 'Boston' });
  await ap.collection('events').put('retro', { title: 'Retro', at: '16:00' });
  await eu.batch([
    { type: 'put', collection: 'accounts', id: 'alice', value: { balance: 50 } },
    { type: 'put', collection: 'accounts', id: 'bob', value: { balance: 150 } },
  ]);
  await us.collection('events').put('lunch', { title: 'Lunch', at: '12:00' });
  await ap.collection('events').put('lunch', { title: 'Team lunch', at: '12:30' });
  // Conflict-free types: a counter and a map, edited at every leader while apart.
  for (const db of dbs) {
    await db.collection('likes').configure({ kind: 'counter', policy: 'keep' });
    await db.collection('rooms').configure({ kind: 'map', policy: 'keep' });
  }
  for (const [i, db] of dbs.entries()) for (let k = 0; k <= i; k++) await db.collection('likes').increment('standup');
  await eu.collection('rooms').patch('paris', [{ op: 'set', path: '/seats', value: 12 }]);
  await us.collection('rooms').patch('paris', [{ op: 'add-to-set', path: '/gear', value: 'projector' }]);
  for (const db of dbs) print(`  ${db.id}: ${db.status().docs} documents, seq ${db.status().seq}`);

  print('\nNow they sync in a ring: eu <-> us <-> ap <-> eu.');
  const sessions = [
    [eu, us],
    [us, ap],
    [ap, eu],
  ].map(([a, b]) => {
    const [x, y] = memoryConnectionPair();
    return [(a as Database).connect(x), (b as Database).connect(y)] as const;
  });
  await waitUntil(
    () => new Set(dbs.map((d) => d.status().digest)).size === 1 && sessions.every(([s, t]) => s.idle && t.idle),
    10_000,
  );

  print('\nConflicts detected with version vectors (kept, not guessed from clocks):');
  for (const id of ['standup', 'lunch']) {
    const doc = await eu.collection('events').get(id);
    if (doc === null) continue;
    print(`  events/${id}: winner ${JSON.stringify(doc.value)} from ${doc.origin}`);
    for (const c of doc.conflicts) print(`    conflict: ${JSON.stringify(c.value)} from ${c.origin}`);
  }

  const likes = await ap.collection('likes').get('standup');
  const room = await ap.collection('rooms').get('paris');
  print('\nConflict-free types merge instead of conflicting:');
  print(`  likes/standup: ${JSON.stringify(likes?.value)} (1 + 2 + 3 increments made at eu, us and ap apart)`);
  print(`  rooms/paris: ${JSON.stringify(room?.value)} (fields set at eu and at us, both kept)`);

  const standup = await us.collection('events').get('standup');
  if (standup !== null) {
    await us
      .collection('events')
      .put('standup', { title: 'Standup', at: '09:45', room: 'Paris + Boston' }, { version: standup.version });
    print('\nus resolves events/standup by writing with the version it read; the resolution replicates.');
    await waitUntil(() => new Set(dbs.map((d) => d.status().digest)).size === 1, 10_000);
  }

  print('\nFinal state:');
  for (const db of dbs) {
    const s = db.status();
    print(`  ${db.id}: ${s.docs} documents, ${s.conflicts} in conflict, digest ${s.digest.slice(0, 16)}...`);
  }
  const digests = dbs.map((d) => d.status().digest);
  print(new Set(digests).size === 1 ? '\nAll three digests are equal: the leaders converged.' : '\nDigests differ!');
  const conflicts = eu.status().conflicts;
  await Promise.all(dbs.map((d) => d.close()));
  return { digests, conflicts };
}

export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('three leaders (eu, us, ap) replicating all-to-all on loopback, until interrupted')
    .option('--dir <dir>', 'keep the stores in this directory (default: a temporary one, removed at exit)')
    .option('--port <n>', 'first of three consecutive ports (0 picks free ones)', '7001')
    .option('--in-process', 'run the scripted in-process scenario of concurrent writes instead, then exit')
    .action(async (o: { dir?: string; port: string; inProcess?: boolean }) => {
      if (o.inProcess === true) {
        const { digests } = await runDemo();
        if (new Set(digests).size !== 1) process.exitCode = 1;
        return;
      }
      await runServerDemo({ ...(o.dir === undefined ? {} : { dir: o.dir }), port: Number(o.port) });
    });
}
