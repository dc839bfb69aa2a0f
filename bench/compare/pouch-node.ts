/**
 * One PouchDB process of bench:compare, spawned by bench/compare/pouchdb.ts:
 *
 *   server  --port P --adapter A --dir D                  express-pouchdb on 127.0.0.1:P, databases under D
 *   replica --remote URL --adapter A --dir D --mode catchup   pulls everything from URL once, reports the time
 *   replica --remote URL --adapter A --dir D --mode live      syncs with URL both ways, prints each change's id
 *
 * It talks to the parent in lines on stdout: JSON messages (`{"ready":true}`, `{"done":...}`)
 * and, in live mode, bare document ids. It stays up until the parent kills it, so the parent
 * can read its peak RSS from /proc.
 */
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { PouchDBStatic } from 'pouchdb-core';
import expressPouchDB from 'express-pouchdb';
import { pouchWith } from './pouch-setup.js';

const { positionals, values: args } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: 'string' },
    remote: { type: 'string' },
    adapter: { type: 'string', default: 'memory' },
    dir: { type: 'string' },
    mode: { type: 'string', default: 'catchup' },
  },
});

function send(message: unknown): void {
  process.stdout.write(JSON.stringify(message) + '\n');
}

async function server(P: PouchDBStatic, port: number, dir: string): Promise<void> {
  // The minimum PouchDB replication needs, with no config file or log written to the work tree.
  const app = expressPouchDB(P, {
    mode: 'minimumForPouchDB',
    inMemoryConfig: true,
    logPath: path.join(dir, 'log.txt'),
  });
  const srv = http.createServer(app);
  await new Promise<void>((resolve) => srv.listen(port, '127.0.0.1', resolve));
  send({ ready: true });
}

async function catchUp(P: PouchDBStatic, remote: string): Promise<void> {
  const local = new P('replica');
  const t0 = performance.now();
  const result = await P.replicate(new P(remote, { adapter: 'http' }), local);
  const ms = performance.now() - t0;
  const info = await local.info();
  send({ done: true, ms, docs: info.doc_count, written: result.docs_written });
}

async function live(P: PouchDBStatic, remote: string): Promise<void> {
  const local = new P('replica');
  // Printed as bare ids: the parent stamps each line's arrival, so the lag includes this pipe
  // as polyarch's includes its server-sent-events stream.
  local.changes({ live: true, since: 'now' }).on('change', (c: { id: string }) => {
    process.stdout.write(c.id + '\n');
  });
  let ready = false;
  P.sync(local, new P(remote, { adapter: 'http' }), { live: true, retry: true }).on('paused', () => {
    if (!ready) send({ ready: true });
    ready = true;
  });
}

async function main(): Promise<void> {
  const role = positionals[0];
  const dir = args.dir ?? '';
  if (dir === '') throw new Error('--dir is required');
  const P = pouchWith(args.adapter ?? 'memory', dir);
  if (role === 'server') return server(P, Number(args.port), dir);
  const remote = args.remote ?? '';
  if (role !== 'replica' || remote === '') throw new Error('usage: server --port P | replica --remote URL');
  if (args.mode === 'live') return live(P, remote);
  return catchUp(P, remote);
}

main().catch((e: unknown) => {
  process.stderr.write(String(e instanceof Error ? (e.stack ?? e.message) : e) + '\n');
  process.exit(1);
});
