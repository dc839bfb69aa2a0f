/**
 * Presence through real leaders: two `startServer` leaders in this process, peered over a
 * WebSocket, and an SDK client on each (`/replicate`). One hub per leader relays between its
 * clients and its peer. The TTL path (a leader that crashes) is covered with a seeded clock
 * in src/client/presence.test.ts; here every state outlives the test, so a state that
 * disappears was announced gone, not timed out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openReplica } from '../../src/index.js';
import type { Database } from '../../src/index.js';
import { resolveConfig } from '../../src/server/config.js';
import { replicationUrl } from '../../src/server/peers.js';
import { startServer } from '../../src/server/serve.js';
import type { RunningServer } from '../../src/server/serve.js';
import { connectWebSocket } from '../../src/transport/websocket/index.js';
import type { Connection } from '../../src/transport/index.js';
import { until } from '../support/leader-process.js';

const LONG_TTL = { ttlMs: 10 * 60_000 };

let l1: RunningServer;
let l2: RunningServer;
const clients: Database[] = [];

beforeAll(async () => {
  l1 = await startServer(resolveConfig({ id: 'l1', port: 0, data: ':memory:', logLevel: 'silent' }));
  l2 = await startServer(resolveConfig({ id: 'l2', port: 0, data: ':memory:', logLevel: 'silent', peers: [l1.url] }));
  await until('the leaders to peer', () => l2.peers.status()[0]?.state === 'live');
});

afterAll(async () => {
  for (const c of clients) await c.close();
  await l2?.close();
  await l1?.close();
});

async function client(id: string, leader: RunningServer): Promise<{ db: Database; conn: Connection }> {
  const db = await openReplica({ id, storage: 'memory' });
  clients.push(db);
  const conn = await connectWebSocket(replicationUrl(leader.url));
  db.connect(conn);
  return { db, conn };
}

async function gauge(leader: RunningServer): Promise<number> {
  const text = await (await fetch(`${leader.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('polyarch_presence_publishers '));
  return Number(line?.split(' ')[1]);
}

describe('presence through two peered leaders', () => {
  it("shows a client's cursor to a client of the other leader, and its departure when it disconnects", async () => {
    const alice = await client('alice', l1);
    const bob = await client('bob', l2);
    const roomA = alice.db.presence('notes/n1', LONG_TTL);
    const roomB = bob.db.presence('notes/n1', LONG_TTL);
    roomA.set({ name: 'Alice', color: '#e33', cursor: { anchor: 2, head: 7 } });
    roomB.set({ name: 'Bob', color: '#33e', cursor: null });

    await until('bob to see alice', () => roomB.others().length === 1);
    expect(roomB.others()).toEqual([
      { id: roomA.id, state: { name: 'Alice', color: '#e33', cursor: { anchor: 2, head: 7 } } },
    ]);
    await until('alice to see bob', () => roomA.others().length === 1);
    expect(roomA.others()[0]?.id).toBe(roomB.id);
    expect(await gauge(l1)).toBe(2);
    expect(await gauge(l2)).toBe(2);

    alice.conn.close('closed', 'tab closed');
    await until('bob to see alice leave', () => roomB.others().length === 0);
    await until('l1 to count one publisher', async () => (await gauge(l1)) === 1);
    expect(roomB.get()).toEqual({ name: 'Bob', color: '#33e', cursor: null });
  });
});
