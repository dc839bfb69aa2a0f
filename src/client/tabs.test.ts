import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeWebLocks } from '../../test/support/fake-web-locks.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { openIndexedDbStorage } from '../storage/indexeddb/index.js';
import type { BroadcastChannelConstructor } from '../transport/broadcast/index.js';
import { openReplica } from './index.js';
import type { Database, TabDatabase } from './index.js';

/**
 * A simulated device: one IndexedDB, one lock manager, one BroadcastChannel namespace (Node's,
 * under a name unique to the test). Each tab gets its own view of the locks and its own
 * channel, so a test can crash a tab: its locks pass on and its channel goes silent, and none
 * of its code runs again.
 */
let devices = 0;
function device() {
  const indexedDB = new IDBFactory();
  const locks = new FakeWebLocks();
  const store = `app${++devices}`;
  const opened: Database[] = [];
  function tab(options: { tabs?: 'shared' | 'exclusive' } = {}) {
    const channels: BroadcastChannel[] = [];
    const view = locks.tab();
    const Channel = class extends BroadcastChannel {
      constructor(name: string) {
        super(name);
        channels.push(this);
      }
    } as unknown as BroadcastChannelConstructor;
    return {
      open: async (): Promise<TabDatabase> => {
        const db = await openReplica({
          storage: `indexeddb:${store}`,
          indexedDB,
          locks: view,
          BroadcastChannel: Channel,
          ...options,
        });
        opened.push(db);
        return db as TabDatabase;
      },
      crash: () => {
        locks.crash(view);
        for (const c of channels) c.close();
      },
    };
  }
  /** Opens the store as the next page load would, reads it, and closes it. */
  async function stored(): Promise<{ id: string; docs: Record<string, unknown> }> {
    const storage = await openIndexedDbStorage(store, { indexedDB, locks: null });
    const db = await openReplica({ storage });
    const { results } = await db.collection('notes').list({ limit: 1000 });
    const docs = Object.fromEntries(results.map((d) => [d.id, d.value]));
    const id = db.id;
    await db.close();
    return { id, docs };
  }
  return { tab, stored, opened, locks, store };
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});
function track(d: ReturnType<typeof device>): ReturnType<typeof device> {
  cleanup.push(async () => {
    await Promise.all(d.opened.map((db) => db.close()));
  });
  return d;
}

/** Polls until `check` passes (a deadline, not a sleep). */
async function eventually(check: () => void | Promise<void>, deadlineMs = 10_000): Promise<void> {
  const start = Date.now();
  for (;;) {
    try {
      await check();
      return;
    } catch (e) {
      if (Date.now() - start > deadlineMs) throw e;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

async function valueOf(db: Database, id: string): Promise<unknown> {
  return (await db.collection('notes').get(id))?.value;
}

describe("openReplica({ storage: 'indexeddb:NAME' })", () => {
  it('a replica reopened on the same IndexedDB keeps its id and its documents', async () => {
    const d = track(device());
    const first = await d.tab().open();
    expect(first.tabRole).toBe('leader');
    await first.collection('notes').put('n1', { text: 'hello' });
    await first.batch([
      { type: 'put', collection: 'notes', id: 'n2', value: 2 },
      { type: 'put', collection: 'notes', id: 'n3', value: 3 },
    ]);
    const id = first.id;
    await first.close();
    const again = await d.tab().open();
    expect(again.id).toBe(id);
    expect(await valueOf(again, 'n1')).toEqual({ text: 'hello' });
    expect((await again.collection('notes').list()).results.map((r) => r.id)).toEqual(['n1', 'n2', 'n3']);
    expect(again.status().seq).toBeGreaterThan(0);
    await again.close();
    expect(await d.stored()).toEqual({ id, docs: { n1: { text: 'hello' }, n2: 2, n3: 3 } });
  });

  it("with tabs: 'exclusive', a second tab fails with unavailable while the first has the store", async () => {
    const d = track(device());
    const first = await d.tab({ tabs: 'exclusive' }).open();
    await first.collection('notes').put('a', 1);
    const error: unknown = await d
      .tab({ tabs: 'exclusive' })
      .open()
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DbError);
    expect((error as DbError).code).toBe(ErrorCode.unavailable);
    const id = first.id;
    await first.close();
    const second = await d.tab({ tabs: 'exclusive' }).open();
    expect(second.id).toBe(id);
    expect(await valueOf(second, 'a')).toBe(1);
  });

  it('rejects a bad store name with invalid_name and a bad tabs mode with invalid_input', async () => {
    const codeOf = async (p: Promise<unknown>): Promise<unknown> =>
      p.then(
        () => 'opened',
        (e: unknown) => (e as DbError).code,
      );
    const indexedDB = new IDBFactory();
    const locks = new FakeWebLocks().tab();
    expect(await codeOf(openReplica({ storage: 'indexeddb:', indexedDB, locks }))).toBe(ErrorCode.invalidName);
    expect(await codeOf(openReplica({ storage: 'indexeddb:a/b', indexedDB, locks }))).toBe(ErrorCode.invalidName);
    expect(await codeOf(openReplica({ storage: 'indexeddb:ok', indexedDB, locks, tabs: 'both' as 'shared' }))).toBe(
      ErrorCode.invalidInput,
    );
  });
});

describe('tabs sharing one IndexedDB replica', () => {
  it('the first tab leads, the next follows, and each sees the other’s writes at once', async () => {
    const d = track(device());
    const a = await d.tab().open();
    await a.collection('notes').put('before', 'written before the second tab opened');
    const b = await d.tab().open();
    expect([a.tabRole, b.tabRole]).toEqual(['leader', 'follower']);
    // A follower's openReplica resolves once it holds what the leader held.
    expect(await valueOf(b, 'before')).toBe('written before the second tab opened');
    expect(b.id).not.toBe(a.id);
    const heardAtA: string[] = [];
    a.collection('notes').subscribe((e) => heardAtA.push(e.id));
    await b.collection('notes').put('from-b', 1);
    await a.collection('notes').put('from-a', 2);
    await eventually(async () => expect(await valueOf(b, 'from-a')).toBe(2));
    await eventually(async () => expect(await valueOf(a, 'from-b')).toBe(1));
    expect(heardAtA).toContain('from-b');
  });

  it('two tabs writing at once lose no acknowledged write, and the store keeps one replica id', async () => {
    const d = track(device());
    const a = await d.tab().open();
    const b = await d.tab().open();
    const leaderId = a.id;
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 25; i++) {
      writes.push(a.collection('notes').put(`a${i}`, i));
      writes.push(b.collection('notes').put(`b${i}`, i));
      // Both tabs write the same document too: a conflict, kept, not a lost write.
      writes.push((i % 2 === 0 ? a : b).collection('notes').put('shared', i));
    }
    await Promise.all(writes);
    expect(await b.persisted()).toBe(true);
    await b.close();
    await a.close();
    const { id, docs } = await d.stored();
    expect(id).toBe(leaderId);
    for (let i = 0; i < 25; i++) {
      expect(docs[`a${i}`]).toBe(i);
      expect(docs[`b${i}`]).toBe(i);
    }
    expect(Object.keys(docs)).toHaveLength(51);
  });

  it('when the leading tab closes, the next tab in line takes over the store with the same replica id', async () => {
    const d = track(device());
    const a = await d.tab().open();
    const b = await d.tab().open();
    const c = await d.tab().open();
    const leaderId = a.id;
    await a.collection('notes').put('a', 'by the first leader');
    await b.collection('notes').put('b1', 'through the first leader');
    expect(await b.persisted()).toBe(true);
    await a.close();
    await eventually(() => expect(b.tabRole).toBe('leader'));
    expect(c.tabRole).toBe('follower');
    // Written while the lead changes hands, and after: all of it reaches the store.
    await b.collection('notes').put('b2', 'by the new leader');
    await c.collection('notes').put('c', 'through the new leader');
    await eventually(async () => expect(await valueOf(b, 'c')).toBe('through the new leader'));
    await eventually(async () => expect(await valueOf(c, 'b2')).toBe('by the new leader'));
    expect(await c.persisted()).toBe(true);
    expect(await b.persisted()).toBe(true);
    await c.close();
    await b.close();
    expect(await d.stored()).toEqual({
      id: leaderId,
      docs: {
        a: 'by the first leader',
        b1: 'through the first leader',
        b2: 'by the new leader',
        c: 'through the new leader',
      },
    });
  });

  it('when the leading tab crashes, a follower takes over and stores what the dead leader never got', async () => {
    const d = track(device());
    const tabA = d.tab();
    const a = await tabA.open();
    const b = await d.tab().open();
    const c = await d.tab().open();
    const leaderId = a.id;
    await a.collection('notes').put('a', 'acknowledged by the leader before it died');
    await eventually(async () => expect(await valueOf(b, 'a')).toBeDefined());
    tabA.crash();
    // Acknowledged in B's memory while no tab leads: it must reach the store all the same.
    await b.collection('notes').put('b', 'written as the leader died');
    await eventually(() => expect(b.tabRole).toBe('leader'));
    await c.collection('notes').put('c', 'written after');
    await eventually(async () => expect(await valueOf(c, 'b')).toBe('written as the leader died'));
    expect(await b.persisted()).toBe(true);
    expect(await c.persisted()).toBe(true);
    await c.close();
    await b.close();
    expect(await d.stored()).toEqual({
      id: leaderId,
      docs: {
        a: 'acknowledged by the leader before it died',
        b: 'written as the leader died',
        c: 'written after',
      },
    });
  });

  it('a tab opened while another leads, after the leader is gone, leads with the stored replica', async () => {
    const d = track(device());
    const a = await d.tab().open();
    await a.collection('notes').put('kept', true);
    const id = a.id;
    await a.close();
    const b = await d.tab().open();
    expect(b.tabRole).toBe('leader');
    expect(b.id).toBe(id);
    expect(await valueOf(b, 'kept')).toBe(true);
  });
});
