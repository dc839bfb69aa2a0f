/**
 * Client tokens on replication sessions, against a real server (startServer, real WebSockets)
 * and the real `polyarch serve` command: a client whose token writes `events` and reads
 * `holidays` gets its `events` applied, its `notes` and `holidays` writes refused with a reason
 * it sees, keeps them locally, stays online, and is not sent `notes`; an invalid token or none
 * is refused with `unauthorized`; a peer proving the cluster secret keeps full rights.
 */
import { spawn } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openReplica } from '../../src/index.js';
import type { Database, SyncHandle, SyncRefusal, SyncStatus } from '../../src/index.js';
import { resolveConfig } from '../../src/server/config.js';
import { startServer } from '../../src/server/serve.js';
import type { RunningServer } from '../../src/server/serve.js';
import { freePort, until } from '../support/leader-process.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(root, 'src/cli/main.ts');

const SECRET = 'cluster-secret-for-tests';
const ADMIN = 'admin-token-0123456789';
const CALENDAR = 'calendar-token-0123456789';
const TOKENS = [
  { name: 'admin', token: ADMIN, collections: { '*': 'read-write' } },
  { name: 'calendar-app', token: CALENDAR, collections: { events: 'read-write', holidays: 'read' } },
];
const FAST = { heartbeatMs: 300, deadAfterMs: 1200, minBackoffMs: 50, maxBackoffMs: 500, connectTimeoutMs: 2000 };

let dir: string;
let srv: RunningServer;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'polyarch-tokens-'));
  srv = await startServer(
    resolveConfig({ id: 'srv', port: 0, data: ':memory:', logLevel: 'silent', secret: SECRET }, { tokens: TOKENS }),
  );
  closers.push(() => srv.close());
});

afterAll(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  rmSync(dir, { recursive: true, force: true });
});

async function client(id: string): Promise<Database> {
  const db = await openReplica({ id, storage: 'memory' });
  closers.push(() => db.close());
  return db;
}

const value = async (db: Database, collection: string, id: string): Promise<unknown> =>
  (await db.collection(collection).get(id))?.value;

describe('a client session with a token', () => {
  let laptop: Database;
  let handle: SyncHandle;
  const statuses: SyncStatus[] = [];
  const refusals: SyncRefusal[] = [];

  beforeAll(async () => {
    // Written at the server before the client connects: holidays it may read, notes it may not.
    await srv.db.collection('holidays').put('h1', 'new year');
    await srv.db.collection('notes').put('n1', 'private');
    laptop = await client('laptop');
    await laptop.collection('events').put('e1', 'standup');
    await laptop.collection('notes').put('n2', 'mine');
    await laptop.collection('holidays').put('h2', 'my holiday');
    handle = laptop.sync(srv.url, { token: CALENDAR, ...FAST });
    handle.subscribe((s) => statuses.push(s));
    handle.onRefused((r) => refusals.push(r));
    await until('the client to be online', () => handle.status === 'online', 20_000);
  });

  it('its writes to events are applied at the server', async () => {
    await until('events/e1 at the server', async () => (await value(srv.db, 'events', 'e1')) === 'standup');
  });

  it('its writes to notes (no right) and holidays (read only) are refused with a reason it sees, and not applied', async () => {
    await until('two refusals', () => handle.refused.length >= 2);
    expect([...handle.refused].sort((a, b) => a.collection.localeCompare(b.collection))).toEqual([
      {
        collection: 'holidays',
        id: 'h2',
        code: 'forbidden',
        message: 'token "calendar-app" may only read collection holidays: writing needs read-write',
      },
      {
        collection: 'notes',
        id: 'n2',
        code: 'forbidden',
        message: 'token "calendar-app" has no right on collection notes: writing needs read-write',
      },
    ]);
    expect(refusals.flatMap((r) => r.docs)).toHaveLength(2);
    expect(await srv.db.collection('notes').get('n2')).toBeNull();
    expect(await srv.db.collection('holidays').get('h2')).toBeNull();
    // The client still holds its writes.
    expect(await value(laptop, 'notes', 'n2')).toBe('mine');
    expect(await value(laptop, 'holidays', 'h2')).toBe('my holiday');
  });

  it('it is sent the collections it may read, and nothing of the others', async () => {
    await until('holidays/h1 at the client', async () => (await value(laptop, 'holidays', 'h1')) === 'new year');
    // Written after notes/n1 at the server: once it has arrived, notes/n1 would have too.
    await srv.db.collection('events').put('marker-1', 'after n1');
    await until('the marker at the client', async () => (await value(laptop, 'events', 'marker-1')) !== undefined);
    expect(await laptop.collection('notes').get('n1')).toBeNull();
  });

  it('the session stays online after a refusal and keeps replicating both ways', async () => {
    await until('the refusals', () => handle.refused.length >= 2);
    await laptop.collection('notes').put('n3', 'also mine');
    await laptop.collection('events').put('e2', 'retro');
    await until('events/e2 at the server', async () => (await value(srv.db, 'events', 'e2')) === 'retro');
    await until('the refusal of notes/n3', () => handle.refused.some((d) => d.id === 'n3'));
    await srv.db.collection('events').put('e3', 'from the server');
    await until('events/e3 at the client', async () => (await value(laptop, 'events', 'e3')) === 'from the server');
    expect(statuses.every((s) => s === 'online' || s === 'syncing')).toBe(true);
    expect(handle.status).toBe('online');
    expect(handle.lastError).toBeNull();
  });

  it('a new session does not offer the refused writes again', async () => {
    await until('the refusal of notes/n3', () => handle.refused.some((d) => d.id === 'n3'));
    await handle.close();
    const again = laptop.sync(srv.url, { token: CALENDAR, ...FAST });
    await until('the second session to be online', () => again.status === 'online', 20_000);
    await laptop.collection('events').put('e4', 'after reconnecting');
    await until('events/e4 at the server', async () => (await value(srv.db, 'events', 'e4')) === 'after reconnecting');
    expect(again.refused).toEqual([]);
    await again.close();
  });
});

describe('sessions that are not a client with a valid token', () => {
  it('a client with an unknown token, or none, is refused with unauthorized and a reason', async () => {
    const db = await client('stranger');
    await db.collection('events').put('x1', 'intruder');
    for (const [token, why] of [
      ['unknown-token-0123456789', /not valid/],
      [undefined, /none was presented/],
    ] as const) {
      const h = db.sync(srv.url, { ...(token === undefined ? {} : { token }), ...FAST });
      await until('the refusal', () => h.lastError?.code === 'unauthorized', 20_000);
      expect(h.lastError?.message).toMatch(why);
      expect(h.status).not.toBe('online');
      await h.close();
    }
    expect(await srv.db.collection('events').get('x1')).toBeNull();
  });

  it('a peer leader that proves the cluster secret replicates every collection', async () => {
    await srv.db.collection('notes').put('n-peer', 'for peers');
    const peer = await startServer(
      resolveConfig({ id: 'peer', port: 0, data: ':memory:', logLevel: 'silent', secret: SECRET, peers: [srv.url] }),
    );
    closers.push(() => peer.close());
    await until('notes at the peer', async () => (await value(peer.db, 'notes', 'n-peer')) === 'for peers');
    await peer.db.collection('notes').put('n-back', 'from the peer');
    await until('notes back at the server', async () => (await value(srv.db, 'notes', 'n-back')) === 'from the peer');
  });
});

describe('polyarch serve with tokens', () => {
  function run(args: string[]): Promise<{ code: number; stderr: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: root, timeout: 30_000 }, (err, _o, stderr) =>
        resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stderr }),
      );
    });
  }

  it('refuses a bad token setting at start with a message naming it and exit code 2', async () => {
    const file = path.join(dir, 'bad-tokens.json');
    writeFileSync(
      file,
      JSON.stringify({ tokens: [{ name: 'calendar', token: CALENDAR, collections: { events: 'rwx' } }] }),
    );
    const bad = await run(['serve', '--id', 'x', '--port', '0', '--data', ':memory:', '--config', file]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/tokens\[0\] \("calendar"\)\.collections\.events must be "read" or "read-write"/);
    const flag = await run([
      'serve',
      '--id',
      'x',
      '--port',
      '0',
      '--data',
      ':memory:',
      '--token',
      'calendar:short:events=rw',
    ]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/--token calendar/);
    expect(flag.stderr).not.toContain('short:');
  });

  it('--token gives a client its rights; requests without it are unauthorized', async () => {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        cli,
        'serve',
        '--id',
        'tok',
        '--port',
        String(port),
        '--data',
        ':memory:',
        '--token',
        `app:${CALENDAR}:events=rw`,
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    closers.push(async () => {
      child.kill('SIGTERM');
      await exited;
    });
    const url = `http://127.0.0.1:${port}`;
    const auth = { authorization: `Bearer ${CALENDAR}` };
    await until(
      'the server to answer /status',
      async () => (await fetch(`${url}/status`, { headers: auth })).ok || undefined,
    );
    expect((await fetch(`${url}/status`)).status).toBe(401);
    const put = await fetch(`${url}/db/events/e1`, {
      method: 'PUT',
      headers: { ...auth, 'content-type': 'application/json' },
      body: '"ok"',
    });
    expect(put.status).toBe(201);
    const forbidden = await fetch(`${url}/db/notes/n1`, { headers: auth });
    expect(forbidden.status).toBe(403);
    // The CLI sends --token (or $POLYARCH_TOKEN) as a bearer token.
    const run = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ['--import', 'tsx', cli, ...args], { cwd: root, env }, (err, stdout, stderr) =>
          resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? 1), stdout, stderr }),
        );
      });
    const withFlag = await run(['get', 'events', 'e1', '--url', url, '--token', CALENDAR]);
    expect(withFlag.code).toBe(0);
    expect(withFlag.stdout).toContain('e1 = "ok"');
    const withEnv = await run(['get', 'events', 'e1', '--url', url], { ...process.env, POLYARCH_TOKEN: CALENDAR });
    expect(withEnv.code).toBe(0);
    const without = await run(['get', 'events', 'e1', '--url', url], { ...process.env, POLYARCH_TOKEN: '' });
    expect(without.code).not.toBe(0);
    expect(without.stderr).toContain('401 unauthorized');
    // The log names the token, never shows it.
    expect(output).toContain('app');
    expect(output).not.toContain(CALENDAR);
  });
});
