import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { utf8 } from '../core/index.js';
import { seededEnv } from '../env/index.js';
import { DbError } from '../shared/errors.js';
import type { ReadTx, Storage, WriteTx } from '../storage/index.js';
import { openMemoryStorage } from '../storage/memory/index.js';
import { openSqliteStorage } from '../storage/sqlite/index.js';
import { Replica } from './replica.js';
import { Triggers } from './triggers.js';
import type { TriggerEvent } from './triggers.js';

type TestEnv = ReturnType<typeof seededEnv>;

/**
 * A process's handle on a durable store: closing or crashing it ends the process's access,
 * and the store lives on for the next open (as a file would).
 */
function processHandle(durable: Storage): Storage {
  let dead = false;
  const gone = (): Promise<never> => Promise.reject(new DbError('closed', 'the process is gone'));
  return {
    name: 'process',
    read: <T>(fn: (tx: ReadTx) => Promise<T> | T) => (dead ? gone() : durable.read(fn)),
    write: <T>(fn: (tx: WriteTx) => Promise<T> | T) => (dead ? gone() : durable.write(fn)),
    close: async () => {
      dead = true;
    },
  };
}

async function open(id: string, storage: Storage = openMemoryStorage(), env: TestEnv = seededEnv(7)): Promise<Replica> {
  return Replica.open({ id, storage, env });
}

async function sync(from: Replica, to: Replica): Promise<number> {
  const batch = await from.readBatch(0, Number.MAX_SAFE_INTEGER, to.context());
  return (await to.applyRemote(batch.changes, { context: batch.context })).recorded;
}

/** Lets pending promise chains (deliveries, acknowledgements) run; bounded by turns, not time. */
async function until(cond: () => boolean, turns = 500): Promise<void> {
  for (let i = 0; i < turns && !cond(); i++) await new Promise<void>((r) => setImmediate(r));
  expect(cond()).toBe(true);
}

/** Lets `turns` macrotasks pass, to show that something did not happen. */
async function idle(turns = 50): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
}

function recorder(): { events: TriggerEvent[]; handler: (e: TriggerEvent) => void; keys: () => string[] } {
  const events: TriggerEvent[] = [];
  return { events, handler: (e) => void events.push(e), keys: () => events.map((e) => e.key) };
}

async function expectCode(fn: () => unknown, code: string): Promise<void> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(DbError);
  expect((err as DbError).code).toBe(code);
}

const replicas: Replica[] = [];
afterEach(async () => {
  await Promise.all(replicas.splice(0).map((r) => r.close()));
});
async function tracked(r: Promise<Replica>): Promise<Replica> {
  const replica = await r;
  replicas.push(replica);
  return replica;
}

describe('origin and every-replica triggers', () => {
  it('origin fires once, at the writer, never at a peer that received the change', async () => {
    const a = await tracked(open('a'));
    const b = await tracked(open('b'));
    const atA = recorder();
    const atB = recorder();
    await a.on('change', atA.handler).ready;
    await b.on('change', atB.handler).ready;
    await a.put('todos', 't1', { title: 'milk' });
    await a.put('todos', 't1', { title: 'oat milk' });
    await b.put('todos', 't2', 'from b');
    await sync(a, b);
    await sync(b, a);
    await until(() => atA.events.length === 2 && atB.events.length === 1);
    await idle();
    expect(atA.keys()).toEqual(['a:1', 'a:2']);
    expect(atB.keys()).toEqual(['b:1']);
    expect(atA.events[1]).toMatchObject({
      trigger: 'origin',
      collection: 'todos',
      id: 't1',
      origin: 'a',
      deleted: false,
      value: { title: 'oat milk' },
      attempt: 1,
    });
    expect(a.triggerStatus()).toEqual([
      expect.objectContaining({ name: 'origin', where: 'origin', attached: true, pending: 0, delivered: 2 }),
    ]);
  });

  it('every-replica fires at each replica with the same key, origin and time', async () => {
    const a = await tracked(open('a'));
    const b = await tracked(open('b'));
    const atA = recorder();
    const atB = recorder();
    await a.on('change', atA.handler, { where: 'every-replica' }).ready;
    await b.on('change', atB.handler, { where: 'every-replica' }).ready;
    await a.put('todos', 't1', 1);
    await b.put('todos', 't2', 2);
    await sync(a, b);
    await sync(b, a);
    await until(() => atA.events.length === 2 && atB.events.length === 2);
    const byKey = (events: TriggerEvent[]) =>
      Object.fromEntries(events.map((e) => [e.key, { id: e.id, origin: e.origin, time: e.time, value: e.value }]));
    expect(byKey(atA.events)).toEqual(byKey(atB.events));
    expect(Object.keys(byKey(atA.events)).sort()).toEqual(['a:1', 'b:1']);
    expect(atA.events.map((e) => e.trigger)).toEqual(['every-replica', 'every-replica']);
  });

  it('every-replica delivers the write a peer records, a superseded one only where it was recorded', async () => {
    const a = await tracked(open('a'));
    const b = await tracked(open('b'));
    const atB = recorder();
    await b.on('change', atB.handler, { where: 'every-replica' }).ready;
    await a.put('c', 'd', 1);
    await a.put('c', 'd', 2); // supersedes a:1 before b ever sees it
    await a.delete('c', 'd');
    await sync(a, b);
    await until(() => atB.events.length === 1);
    expect(atB.events[0]).toMatchObject({ key: 'a:3', origin: 'a', deleted: true, value: null });
  });

  it('delivers in order, one event at a time, waiting for each acknowledgement', async () => {
    const a = await tracked(open('a'));
    const seen: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    await a.on('change', async (e) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await idle(2);
      seen.push(e.key);
      inFlight--;
    }).ready;
    for (let i = 0; i < 20; i++) await a.put('c', `d${i % 3}`, i);
    await a.write([
      { type: 'put', collection: 'c', id: 'x', value: 1 },
      { type: 'put', collection: 'c', id: 'y', value: 2 },
    ]);
    await until(() => seen.length === 22, 5000);
    expect(seen).toEqual(Array.from({ length: 22 }, (_, i) => `a:${i + 1}`));
    expect(maxInFlight).toBe(1);
  });

  it('skips system collections and text documents unless the trigger names the collection', async () => {
    const a = await tracked(open('a'));
    const all = recorder();
    const notes = recorder();
    await a.on('change', all.handler).ready;
    await a.on('change', notes.handler, { name: 'notes', collection: 'notes' }).ready;
    await a.configure('todos', { kind: 'record', policy: 'lww' });
    const text = a.text('notes', 'n1');
    await text.ready;
    text.insert(0, 'hi');
    await a.flushTexts();
    await a.put('todos', 't1', 1);
    await until(() => all.events.length === 1 && notes.events.length === 1);
    await idle();
    expect(all.events.map((e) => `${e.collection}/${e.id}`)).toEqual(['todos/t1']);
    expect(notes.events).toMatchObject([{ collection: 'notes', id: 'n1', value: 'hi' }]);
  });
});

describe('failures and retries', () => {
  it('capture never throws: a document that cannot be shown gives an event without a value', async () => {
    const storage = openMemoryStorage();
    const env = seededEnv(9);
    const triggers = new Triggers({
      storage,
      env,
      replicaId: 'a',
      view: () => {
        throw new Error('cannot show');
      },
    });
    await triggers.load();
    const seen = recorder();
    await triggers.on('change', seen.handler, { where: 'every-replica' }).ready;
    const hlc = { ms: 1_700_000_000_000, c: 0 };
    const after = {
      siblings: [{ dot: { replica: 'b', counter: 4 }, hlc, value: utf8('1') }],
      context: new Map([['b', 4]]),
    };
    await storage.write((tx) =>
      triggers.hook.beforeCommit?.(tx, [
        { collection: 'c', id: 'd', seq: 1, origin: 'remote', before: undefined, after },
      ]),
    );
    triggers.hook.committed?.([]);
    await until(() => seen.events.length === 1);
    expect(seen.events[0]).toMatchObject({
      key: 'b:4',
      origin: 'b',
      deleted: false,
      value: null,
      time: '2023-11-14T22:13:20.000Z',
    });
    triggers.close();
  });

  it('retries a failing handler with backoff: three attempts, one delivery, failures visible', async () => {
    const env = seededEnv(3);
    const a = await tracked(open('a', openMemoryStorage(), env));
    const attempts: TriggerEvent[] = [];
    const t = a.on(
      'change',
      (e) => {
        attempts.push(e);
        if (attempts.length <= 2) throw new Error(`boom ${attempts.length}`);
      },
      { retry: { minMs: 100, maxMs: 1000 } },
    );
    await t.ready;
    await a.put('c', 'd', 1);
    await a.put('c', 'e', 2);
    await until(() => attempts.length === 1);
    await idle();
    expect(t.status()).toMatchObject({ failures: 1, lastError: 'boom 1', pending: 2, delivered: 0 });
    expect(t.status().nextRetryAt).not.toBeNull();
    // Nothing more until the backoff has passed, and the next event waits behind the failing one.
    expect(attempts).toHaveLength(1);
    env.clock.advance(1000);
    env.timers.runDue();
    await until(() => attempts.length === 2);
    await idle();
    expect(t.status()).toMatchObject({ failures: 2, lastError: 'boom 2' });
    env.clock.advance(1000);
    env.timers.runDue();
    await until(() => attempts.length === 4);
    expect(attempts.map((e) => [e.key, e.attempt])).toEqual([
      ['a:1', 1],
      ['a:1', 2],
      ['a:1', 3],
      ['a:2', 1],
    ]);
    await until(() => t.status().pending === 0);
    expect(t.status()).toMatchObject({ delivered: 2, failures: 2, lastError: 'boom 2', nextRetryAt: null });
    expect(t.status().lastErrorAt).toBe(new Date(env.clock.ms - 1000).toISOString());
  });

  it('a rejected promise counts as a failure like a throw', async () => {
    const env = seededEnv(4);
    const a = await tracked(open('a', openMemoryStorage(), env));
    let calls = 0;
    const t = a.on('change', async () => {
      if (++calls === 1) throw new Error('rejected');
    });
    await t.ready;
    await a.put('c', 'd', 1);
    await until(() => t.status().failures === 1);
    env.clock.advance(60_000);
    env.timers.runDue();
    await until(() => t.status().delivered === 1);
    expect(calls).toBe(2);
  });
});

describe('durability across restarts', () => {
  it('an event whose handler never acknowledged is delivered again after a restart, with the same key', async () => {
    const durable = openMemoryStorage();
    const first = await open('a', processHandle(durable));
    const started: TriggerEvent[] = [];
    await first.on('change', (e) => {
      started.push(e);
      return new Promise(() => {}); // acts, then the process dies before acknowledging
    }).ready;
    const written = await first.put('orders', 'o1', { total: 5 });
    await until(() => started.length === 1);
    await first.close();

    const second = await tracked(open('a', processHandle(durable)));
    expect(second.triggerStatus()).toMatchObject([{ name: 'origin', attached: false, pending: 1 }]);
    const again = recorder();
    await second.on('change', again.handler).ready;
    await until(() => again.events.length === 1);
    expect(again.events[0]?.key).toBe(started[0]?.key);
    expect(again.events[0]).toMatchObject({ key: 'a:1', id: 'o1', value: { total: 5 }, attempt: 1 });
    expect(written.version).toBeTruthy();
    await until(() => second.triggerStatus()[0]?.pending === 0);
  });

  it('a handler attached after a restart receives the writes made before it attached', async () => {
    const durable = openMemoryStorage();
    const first = await open('a', processHandle(durable));
    const early = recorder();
    const t = first.on('change', early.handler, { where: 'every-replica', name: 'index' });
    await t.ready;
    t.close(); // declared, no handler: events accumulate
    await first.put('c', 'd1', 1);
    await first.close();

    const second = await tracked(open('a', processHandle(durable)));
    await second.put('c', 'd2', 2); // between the restart and the `on` call
    const late = recorder();
    await second.on('change', late.handler, { where: 'every-replica', name: 'index' }).ready;
    await until(() => late.events.length === 2);
    expect(early.events).toEqual([]);
    expect(late.keys()).toEqual(['a:1', 'a:2']);
  });

  it('survives a restart on a SQLite file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'polyarch-triggers-'));
    try {
      const path = join(dir, 'a.db');
      const first = await open('a', openSqliteStorage(path));
      const started: string[] = [];
      await first.on('change', (e) => {
        started.push(e.key);
        return new Promise(() => {});
      }).ready;
      await first.put('c', 'd', 1);
      await first.put('c', 'd', 2);
      await until(() => started.length === 1);
      await first.close();

      const second = await open('a', openSqliteStorage(path));
      const again = recorder();
      await second.on('change', again.handler).ready;
      await until(() => again.events.length === 2);
      expect(again.keys()).toEqual(['a:1', 'a:2']);
      await until(() => second.triggerStatus()[0]?.pending === 0);
      await second.close();

      const third = await open('a', openSqliteStorage(path));
      expect(third.triggerStatus()).toMatchObject([{ name: 'origin', pending: 0 }]);
      await third.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('never runs a handler after the replica closed, not even a pending retry', async () => {
    const env = seededEnv(5);
    const durable = openMemoryStorage();
    const a = await open('a', processHandle(durable), env);
    let calls = 0;
    await a.on('change', () => {
      calls++;
      throw new Error('down');
    }).ready;
    await a.put('c', 'd', 1);
    await until(() => calls === 1);
    await a.close();
    env.clock.advance(120_000);
    env.timers.runDue();
    await idle();
    expect(calls).toBe(1);
    const reopened = await tracked(open('a', processHandle(durable)));
    expect(reopened.triggerStatus()).toMatchObject([{ name: 'origin', pending: 1 }]);
  });
});

describe('declarations', () => {
  it('dropTrigger forgets the declaration and its outbox; a new declaration starts afresh', async () => {
    const a = await tracked(open('a'));
    const t = a.on('change', () => {}, { name: 'mail', collection: 'users' });
    await t.ready;
    t.close();
    await a.put('users', 'u1', 1);
    await until(() => a.triggerStatus()[0]?.pending === 1);
    await a.dropTrigger('mail');
    expect(a.triggerStatus()).toEqual([]);
    await a.put('users', 'u2', 2);
    const fresh = recorder();
    await a.on('change', fresh.handler, { name: 'mail', where: 'every-replica' }).ready;
    await a.put('users', 'u3', 3);
    await until(() => fresh.events.length === 1);
    await idle();
    expect(fresh.keys()).toEqual(['a:3']);
    await expectCode(() => a.dropTrigger('nope'), 'not_found');
  });

  it('validates its arguments and refuses to redeclare a trigger differently', async () => {
    const a = await tracked(open('a'));
    const h = (): void => {};
    await expectCode(() => a.on('update' as 'change', h), 'invalid_input');
    await expectCode(() => a.on('change', 'nope' as unknown as () => void), 'invalid_input');
    await expectCode(() => a.on('change', h, { where: 'somewhere' as 'origin' }), 'invalid_input');
    await expectCode(() => a.on('change', h, { name: 'a/b' }), 'invalid_name');
    await expectCode(() => a.on('change', h, { name: '' }), 'invalid_name');
    await expectCode(() => a.on('change', h, { collection: '_config' }), 'invalid_name');
    await expectCode(() => a.on('change', h, { retry: { minMs: -1 } }), 'invalid_input');
    await expectCode(() => a.on('change', h, { retry: { minMs: 10, maxMs: 5 } }), 'invalid_input');
    await expectCode(() => a.on('change', h, { bogus: 1 } as never), 'invalid_input');
    const t = a.on('change', h, { name: 'x', where: 'origin' });
    await t.ready;
    await expectCode(() => a.on('change', h, { name: 'x', where: 'origin' }), 'invalid_input'); // attached already
    t.close();
    await expectCode(() => a.on('change', h, { name: 'x', where: 'every-replica' }), 'invalid_input');
    await expectCode(() => a.on('change', h, { name: 'x', collection: 'c' }), 'invalid_input');
    const again = a.on('change', h, { name: 'x' });
    await again.ready;
    expect(a.triggerStatus().map((s) => [s.name, s.attached])).toEqual([['x', true]]);
    await a.close();
    await expectCode(() => a.on('change', h, { name: 'y' }), 'closed');
  });

  it('a declaration stored before a restart is loaded at open and keeps capturing', async () => {
    const durable = openMemoryStorage();
    const first = await open('a', processHandle(durable));
    await first.on('change', () => {}, { name: 'audit', where: 'every-replica', collection: 'c' }).ready;
    await first.close();
    const second = await tracked(open('a', processHandle(durable)));
    await second.put('c', 'd', 1);
    await second.put('other', 'd', 1);
    expect(second.triggerStatus()).toEqual([
      {
        name: 'audit',
        where: 'every-replica',
        collection: 'c',
        attached: false,
        pending: 1,
        delivered: 0,
        failures: 0,
        lastError: null,
        lastErrorAt: null,
        nextRetryAt: null,
      },
    ]);
    await expectCode(() => second.on('change', () => {}, { name: 'audit' }), 'invalid_input');
  });
});
