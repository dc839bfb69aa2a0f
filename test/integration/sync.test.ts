/**
 * db.sync against a real `polyarch serve` process, through a fault-injecting TCP proxy: an SDK
 * replica in this process (SQLite, the Node entry, which brings `ws` by itself) replicates
 * both ways while online; a black-holed link (it stalls, it does not error) and a stopped
 * leader take it offline while both sides keep writing; when the link comes back it goes
 * online again and both sides converge to the same digest, conflicts included.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { openReplica } from '../../src/index.js';
import type { Database, SyncHandle, SyncStatus } from '../../src/index.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { Cluster, getOk, listAll, putOk, siblingValues, stopLeader, until } from './harness.js';
import type { Leader } from './harness.js';

const cluster = new Cluster('sync');
let leader: Leader;
let proxy: FaultProxy;
let db: Database;
let handle: SyncHandle;
const statuses: SyncStatus[] = [];

/** Client heartbeats as fast as the leader's (FAST_HEARTBEAT), and a short backoff. */
const FAST = { heartbeatMs: 300, deadAfterMs: 1200, minBackoffMs: 50, maxBackoffMs: 500, connectTimeoutMs: 1000 };

beforeAll(async () => {
  [leader] = (await cluster.start([{ id: 'srv' }])) as [Leader];
  proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: leader.options.port } });
  cluster.onTeardown(() => proxy.close());
  db = await openReplica({ id: 'laptop', storage: path.join(cluster.dir, 'laptop.db') });
  cluster.onTeardown(() => db.close());
  // No WebSocket option: the Node entry supplies ws's class.
  handle = db.sync(proxy.url(), FAST);
  handle.subscribe((status) => statuses.push(status));
});

afterAll(async () => {
  await cluster.teardown();
});

async function online(): Promise<void> {
  await until('the client to be online', () => handle.status === 'online', 30_000);
}

/** The client and the leader hold the same documents (same digest). */
async function convergedWithLeader(): Promise<void> {
  await until(
    'the client and the leader to converge',
    async () => (await leader.status()).digest === db.status().digest,
    30_000,
    100,
  );
}

async function clientValues(collection: string, id: string): Promise<string[]> {
  const doc = await db.collection(collection).get(id);
  if (doc === null) throw new Error(`${collection}/${id} is absent at the client`);
  return [doc.value, ...doc.conflicts.filter((c) => !c.deleted).map((c) => c.value)]
    .map((v) => JSON.stringify(v))
    .sort();
}

describe('db.sync with a polyarch serve process', () => {
  it('replicates writes both ways while online', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await online();
    expect(handle.peer).toBe('srv');
    await db.collection('notes').put('from-laptop', { text: 'hello from the laptop' });
    await putOk(leader, 'notes', 'from-server', { text: 'hello from the server' });
    await convergedWithLeader();
    expect((await getOk(leader, 'notes', 'from-laptop')).value).toEqual({ text: 'hello from the laptop' });
    expect((await db.collection('notes').get('from-server'))?.value).toEqual({ text: 'hello from the server' });
    // The leader lists the client as a live incoming link.
    const s = await leader.status();
    expect(s.peers.some((p) => p.id === 'laptop' && p.direction === 'incoming')).toBe(true);
  });

  it('goes offline when the link stalls, keeps both sides writing, and converges after it heals', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await online();
    await db.collection('notes').put('shared', { v: 'base' });
    await convergedWithLeader();

    proxy.partition();
    // Nothing errors: the session notices the silence on its heartbeats.
    await until('the client to go offline', () => handle.status === 'offline', 30_000);
    expect(handle.lastError?.code).toBe('unavailable');
    expect(handle.lastError?.message).toMatch(/timeout|timed out/);

    for (let i = 0; i < 20; i++) await db.collection('notes').put(`laptop-${i}`, { i });
    await db.collection('notes').put('shared', { v: 'laptop' });
    for (let i = 0; i < 5; i++) await putOk(leader, 'notes', `server-${i}`, { i });
    await putOk(leader, 'notes', 'shared', { v: 'server' });
    expect(handle.status).not.toBe('online');

    proxy.heal();
    handle.reconnect();
    await online();
    await convergedWithLeader();

    const atLeader = await listAll(leader, 'notes');
    for (let i = 0; i < 20; i++) expect(atLeader.get(`laptop-${i}`)?.value).toEqual({ i });
    for (let i = 0; i < 5; i++) expect((await db.collection('notes').get(`server-${i}`))?.value).toEqual({ i });
    // Concurrent writes to one document: both kept, the same way on both sides.
    const expected = [JSON.stringify({ v: 'laptop' }), JSON.stringify({ v: 'server' })].sort();
    expect(siblingValues(await getOk(leader, 'notes', 'shared'))).toEqual(expected);
    expect(await clientValues('notes', 'shared')).toEqual(expected);
  });

  it('survives the leader stopping and restarting on its data, then converges', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await online();
    await stopLeader(leader);
    await until('the client to go offline', () => handle.status === 'offline', 30_000);
    for (let i = 0; i < 10; i++) await db.collection('todo').put(`t${i}`, { title: `task ${i}` });

    await leader.start();
    await online();
    await putOk(leader, 'todo', 'from-server', { title: 'written after the restart' });
    await convergedWithLeader();
    const atLeader = await listAll(leader, 'todo');
    expect(atLeader.size).toBe(11);
    // What the leader held before it stopped is still there, and still at the client.
    expect((await getOk(leader, 'notes', 'from-laptop')).value).toEqual({ text: 'hello from the laptop' });
    expect((await db.collection('todo').get('from-server'))?.value).toEqual({ title: 'written after the restart' });
  });

  it('close() ends the link for good: the leader sees the client leave, and no session comes back', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await online();
    await handle.close();
    expect(handle.status).toBe('closed');
    await until(
      'the leader to drop the client',
      async () => (await leader.status()).peers.every((p) => p.id !== 'laptop'),
      30_000,
    );
    await until('the proxy to carry no connection', () => proxy.stats().connections === 0, 30_000);
    expect(statuses).toEqual(expect.arrayContaining(['online', 'offline', 'connecting', 'closed']));
    expect(statuses.at(-1)).toBe('closed');
  });
});
