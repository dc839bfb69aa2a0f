/**
 * Presence through real sessions: SDK databases as two leaders joined by a session, a client
 * on each, memory connections, one seeded clock and manual timers (the TTL passes only when
 * a test moves the clock, so nothing here waits on wall time to pass a deadline).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { memoryConnectionPair, openReplica } from '../index.js';
import type { Database, PresencePeer } from '../index.js';
import type { Connection } from '../transport/index.js';
import { seededEnv } from '../env/seeded.js';
import { Encoder } from '../core/codec.js';
import { encodeMessage, PROTOCOL_VERSION } from '../protocol/index.js';
import { initialSession, step } from '../replication/session.js';
import type { SessionDriver } from '../replication/session-driver.js';

const TTL = 30_000;
// Heartbeats would time the sessions out when the test jumps the clock by a TTL.
const QUIET = { heartbeatMs: 10 * 60 * 60_000, deadAfterMs: 20 * 60 * 60_000 };

const opened: Database[] = [];
afterEach(async () => {
  for (const db of opened.splice(0)) await db.close();
});

/** Polls a condition while memory connections and storage run their microtasks; wall time only bounds a hang. */
async function eventually(what: string, condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 2));
  }
}

function link(a: Database, b: Database): { a: SessionDriver; b: SessionDriver; ends: [Connection, Connection] } {
  const ends = memoryConnectionPair();
  return { a: a.connect(ends[0], QUIET), b: b.connect(ends[1], QUIET), ends };
}

const ids = (others: PresencePeer[]): string[] => others.map((o) => o.id);

async function cluster() {
  const env = seededEnv(11);
  const open = async (id: string): Promise<Database> => {
    const db = await openReplica({ id, storage: 'memory', env });
    opened.push(db);
    return db;
  };
  const [l1, l2, a, b] = [await open('l1'), await open('l2'), await open('alice'), await open('bob')];
  const leaders = link(l1, l2);
  const toA = link(a, l1);
  const toB = link(b, l2);
  await eventually('the sessions to open', () =>
    [leaders, toA, toB].every((l) => l.a.info().phase === 'open' && l.b.info().phase === 'open'),
  );
  /** Moves the shared clock in steps, running the timers that came due (refreshes, lapses). */
  const advance = async (ms: number): Promise<void> => {
    for (let left = ms; left > 0; left -= 1000) {
      env.clock.advance(Math.min(1000, left));
      env.timers.runDue();
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
    }
  };
  return { env, l1, l2, a, b, leaders, toA, toB, advance };
}

describe('db.presence across two leaders', () => {
  it('shows a cursor of a client on one leader to a client on the other, and its departure on disconnect', async () => {
    const { a, b, l1, toA } = await cluster();
    const seen: string[][] = [];
    const roomB = b.presence('notes/n1');
    roomB.subscribe((others) => seen.push(ids(others)));
    const roomA = a.presence('notes/n1');
    roomA.set({ name: 'Alice', color: '#e33', cursor: { anchor: 3, head: 3 } });
    await eventually('bob to see alice', () => roomB.others().length === 1);
    expect(roomB.others()).toEqual([
      { id: roomA.id, state: { name: 'Alice', color: '#e33', cursor: { anchor: 3, head: 3 } } },
    ]);
    expect(roomA.id).toMatch(/^alice~[0-9a-f]{12}$/);

    roomA.set({ name: 'Alice', color: '#e33', cursor: { anchor: 3, head: 9 } });
    await eventually('the selection to move', () => JSON.stringify(roomB.others()).includes('"head":9'));

    // Alice's connection drops: her leader announces it, no TTL needed (the clock never moves).
    toA.ends[0].close('gone', 'tab closed');
    await eventually('bob to see alice leave', () => roomB.others().length === 0);
    expect(seen).toEqual([[roomA.id], [roomA.id], []]);
    expect(l1.presenceHub.publishers()).toBe(0);
  });

  it('shows a client that reconnects at once, with its state', async () => {
    const { a, b, l2, toA } = await cluster();
    a.presence('doc').set({ cursor: 1 });
    const roomB = b.presence('doc');
    await eventually('bob to see alice', () => roomB.others().length === 1);
    toA.ends[0].close('gone', 'network lost');
    await eventually('bob to see alice leave', () => roomB.others().length === 0);
    // She comes back through the other leader.
    link(a, l2);
    await eventually('bob to see alice again', () => roomB.others().length === 1);
    expect(roomB.others()[0]?.state).toEqual({ cursor: 1 });
  });

  it('drops a client of a crashed leader when its time to live runs out, not before', async () => {
    const { a, b, leaders, toA, advance } = await cluster();
    a.presence('doc').set({ cursor: 1 });
    const roomB = b.presence('doc');
    await eventually('bob to see alice', () => roomB.others().length === 1);
    // l1 is gone: its session with l2 breaks first, so nobody can tell l2 that alice left.
    leaders.b.close('timeout', 'heard nothing from the peer');
    toA.ends[0].close('timeout', 'heard nothing from the peer');
    await eventually(
      'the sessions to close',
      () => leaders.a.info().phase === 'closed' && toA.b.info().phase === 'closed',
    );
    await advance(TTL - 1000);
    expect(ids(roomB.others())).toHaveLength(1);
    await advance(1000);
    expect(roomB.others()).toEqual([]);
  });

  it('keeps a connected client visible past many lifetimes: it refreshes', async () => {
    const { a, b, advance } = await cluster();
    a.presence('doc').set({ cursor: 1 });
    const roomB = b.presence('doc');
    await eventually('bob to see alice', () => roomB.others().length === 1);
    await advance(3 * TTL);
    expect(roomB.others()).toEqual([{ id: a.presence('doc').id, state: { cursor: 1 } }]);
  });

  it('gives a client that joins the room late everyone already there', async () => {
    const { a, l2, env } = await cluster();
    a.presence('doc').set({ cursor: 1 });
    await eventually('l2 to hear alice', () => l2.presenceHub.others('doc').length === 1);
    const late = await openReplica({ id: 'carol', storage: 'memory', env });
    opened.push(late);
    link(late, l2);
    await eventually('carol to see alice', () => late.presence('doc').others().length === 1);
  });

  it('announces the leave of a client that closes its database', async () => {
    const { a, b } = await cluster();
    a.presence('doc').set({ cursor: 1 });
    const roomB = b.presence('doc');
    await eventually('bob to see alice', () => roomB.others().length === 1);
    await a.close();
    await eventually('bob to see alice leave', () => roomB.others().length === 0);
  });

  it('gives two databases of one replica id distinct publisher ids', async () => {
    const env = seededEnv(3);
    const [t1, t2] = [
      await openReplica({ id: 'tab', storage: 'memory', env }),
      await openReplica({ id: 'tab', storage: 'memory', env }),
    ];
    opened.push(t1, t2);
    expect(t1.presence('doc').id).not.toBe(t2.presence('doc').id);
    expect(t1.presence('doc').id.startsWith('tab~')).toBe(true);
  });
});

describe('presence on the wire', () => {
  async function rawPeer(): Promise<{ session: SessionDriver; peer: Connection }> {
    const db = await openReplica({ id: 'eu', storage: 'memory', env: seededEnv(5) });
    opened.push(db);
    const [mine, peer] = memoryConnectionPair();
    const session = db.connect(mine, QUIET);
    return { session, peer };
  }

  it('closes a session that receives a malformed presence frame with a protocol error', async () => {
    const { session, peer } = await rawPeer();
    // A presence frame whose state is not JSON text.
    const frame = new Encoder().byte(9).string('x~1').string('doc').uint(1).uint(0).uint(1000).byte(1);
    peer.send(frame.bytes(new TextEncoder().encode('{nope')).finish());
    await eventually('the session to close', () => session.info().phase === 'closed');
    expect(session.info().closeReason).toMatchObject({ code: 'protocol', message: expect.stringMatching(/state/) });
  });

  it('closes a session that sends presence before it said hello', async () => {
    const { session, peer } = await rawPeer();
    peer.send(
      encodeMessage({ type: 'presence', publisher: 'x~1', room: 'doc', counter: 1, hops: 0, ttlMs: 1000, state: '1' }),
    );
    await eventually('the session to close', () => session.info().phase === 'closed');
    expect(session.info().closeReason).toMatchObject({ code: 'protocol', message: 'presence before hello' });
  });

  it('hands a presence update of an authenticated peer to the hub, as an effect of step()', () => {
    let s = initialSession({ self: 'eu', cluster: 'c', window: 2 });
    s = step(s, { type: 'start', head: 0, context: new Uint8Array([0]), challenge: new Uint8Array(0) }).state;
    const hello = { type: 'hello', protocol: PROTOCOL_VERSION, cluster: 'c', replica: 'us' } as const;
    s = step(s, {
      type: 'received',
      message: { ...hello, context: new Uint8Array([0]), challenge: new Uint8Array(0) },
    }).state;
    s = step(s, { type: 'received', message: { type: 'auth', proof: new Uint8Array(0) } }).state;
    const m = {
      type: 'presence',
      publisher: 'us~1',
      room: 'doc',
      counter: 1,
      hops: 0,
      ttlMs: 1000,
      state: '1',
    } as const;
    expect(step(s, { type: 'received', message: m })).toEqual({
      state: s,
      effects: [{ type: 'presence', message: m }],
    });
  });
});
