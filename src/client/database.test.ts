/**
 * The SDK as an application sees it: openReplica from the Node entry with memory storage,
 * collections, batches, sync through bytes (changesSince/applyChanges) and through a live
 * connection, hostile input, and the browser entry's refusal of file storage.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { DbError, memoryConnectionPair, openReplica } from '../index.js';
import type { ChangeEvent, Database, OpenOptions, ReplicaStatus } from '../index.js';
import { encodeMessage } from '../protocol/index.js';
import { decodeBundle, encodeBundle } from '../replication/bundle.js';
import { openReplica as openClientReplica } from './index.js';

const opened: Database[] = [];

afterEach(async () => {
  for (const db of opened.splice(0)) await db.close();
});

async function open(id?: string, extra: Partial<OpenOptions> = {}): Promise<Database> {
  const db = await openReplica({ storage: 'memory', ...(id === undefined ? {} : { id }), ...extra });
  opened.push(db);
  return db;
}

/** Sends `to` everything `from` holds that `to` lacks; returns how many documents changed at `to`. */
async function sync(from: Database, to: Database): Promise<number> {
  return (await to.applyChanges(await from.changesSince(to.vector()))).recorded;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection, got a result');
    },
    (e: unknown) => e,
  );
}

async function expectCode(p: Promise<unknown>, code: string): Promise<DbError> {
  const err = await rejection(p);
  expect(err).toBeInstanceOf(DbError);
  expect((err as DbError).code).toBe(code);
  expect((err as DbError).message).toMatch(/\S/);
  return err as DbError;
}

/** Polls `condition` until it holds or `timeoutMs` passes. */
async function eventually(what: string, condition: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
  }
}

async function values(db: Database, collection: string): Promise<Record<string, unknown>> {
  const { results } = await db.collection(collection).list({ limit: 1000 });
  return Object.fromEntries(results.map((d) => [d.id, d.value]));
}

describe('collections', () => {
  it('reads back a put with its version and no conflicts', async () => {
    const db = await open('eu');
    const todos = db.collection('todos');
    const w = await todos.put('t1', { title: 'milk', done: false });
    expect(w).toMatchObject({ id: 't1', version: expect.any(String) });
    expect(await todos.get('t1')).toEqual({
      id: 't1',
      value: { title: 'milk', done: false },
      version: w.version,
      origin: 'eu',
      time: expect.any(String),
      conflicts: [],
    });
  });

  it('returns null for an absent document and for a deleted one', async () => {
    const db = await open('eu');
    const todos = db.collection('todos');
    expect(await todos.get('nope')).toBeNull();
    await todos.put('t1', 1);
    const del = await todos.delete('t1');
    expect(del.id).toBe('t1');
    expect(await todos.get('t1')).toBeNull();
  });

  it('refuses a put with a stale version and keeps the newer value', async () => {
    const db = await open('eu');
    const todos = db.collection('todos');
    const v1 = await todos.put('t1', 'first');
    await todos.put('t1', 'second', { version: v1.version });
    await expectCode(todos.put('t1', 'third', { version: v1.version }), 'conflict');
    await expectCode(todos.delete('t1', { version: v1.version }), 'conflict');
    expect((await todos.get('t1'))?.value).toBe('second');
  });

  it('keeps collections apart: the same id in two collections is two documents', async () => {
    const db = await open('eu');
    await db.collection('a').put('k', 'in a');
    await db.collection('b').put('k', 'in b');
    expect((await db.collection('a').get('k'))?.value).toBe('in a');
    expect((await db.collection('b').get('k'))?.value).toBe('in b');
    expect(db.collection('a')).toBe(db.collection('a'));
  });

  it('lists live documents ordered by id, in pages', async () => {
    const db = await open('eu');
    const c = db.collection('notes');
    for (const id of ['d', 'b', 'e', 'a', 'c']) await c.put(id, { id });
    await c.delete('c');
    await db.collection('other').put('z', 1);

    const first = await c.list({ limit: 2 });
    expect(first.results.map((d) => d.id)).toEqual(['a', 'b']);
    expect(first.next).toBe('b');
    const second = await c.list({ limit: 2, after: first.next as string });
    expect(second.results.map((d) => d.id)).toEqual(['d', 'e']);
    const third = await c.list({ limit: 2, after: second.next ?? 'e' });
    expect(third).toEqual({ results: [], next: null });

    const all = await c.list();
    expect(all.results.map((d) => [d.id, d.value])).toEqual([
      ['a', { id: 'a' }],
      ['b', { id: 'b' }],
      ['d', { id: 'd' }],
      ['e', { id: 'e' }],
    ]);
    expect(all.next).toBeNull();
  });

  it('subscribe reports each committed change of its collection until unsubscribed', async () => {
    const db = await open('eu');
    const seen: ChangeEvent[] = [];
    const stop = db.collection('todos').subscribe((e) => seen.push(e));
    await db.collection('todos').put('t1', 1);
    await db.collection('other').put('x', 1);
    await db.collection('todos').delete('t1');
    expect(seen.map((e) => [e.collection, e.id, e.origin])).toEqual([
      ['todos', 't1', 'local'],
      ['todos', 't1', 'local'],
    ]);
    expect(seen[1]?.seq).toBeGreaterThan(seen[0]?.seq ?? Infinity);
    stop();
    await db.collection('todos').put('t2', 2);
    expect(seen).toHaveLength(2);
  });

  it('subscribe reports replicated changes as remote', async () => {
    const eu = await open('eu');
    const us = await open('us');
    const seen: ChangeEvent[] = [];
    us.collection('todos').subscribe((e) => seen.push(e));
    await eu.collection('todos').put('t1', 1);
    await sync(eu, us);
    expect(seen).toEqual([{ collection: 'todos', id: 't1', seq: us.status().seq, origin: 'remote', conflict: false }]);
  });

  it('refuses bad collection names and ids with invalid_name', async () => {
    const db = await open('eu');
    await expectCode(db.collection('bad name').put('k', 1), 'invalid_name');
    await expectCode(db.collection('_system').get('k'), 'invalid_name');
    await expectCode(db.collection('todos').put('_k', 1), 'invalid_name');
    await expectCode(db.collection('todos').list({ limit: 0 }), 'invalid_input');
    expect(db.status().seq).toBe(0);
  });
});

describe('batch', () => {
  it('writes several documents in one change and reports each result', async () => {
    const db = await open('eu');
    await db.collection('accounts').put('c', { balance: 1 });
    const results = await db.batch([
      { type: 'put', collection: 'accounts', id: 'a', value: { balance: 50 } },
      { type: 'put', collection: 'accounts', id: 'b', value: { balance: 150 } },
      { type: 'delete', collection: 'accounts', id: 'c' },
    ]);
    expect(results.map((r) => [r.collection, r.id])).toEqual([
      ['accounts', 'a'],
      ['accounts', 'b'],
      ['accounts', 'c'],
    ]);
    expect(await values(db, 'accounts')).toEqual({ a: { balance: 50 }, b: { balance: 150 } });
    // One change: every document of the batch at one seq.
    const { results: feed } = await db.changes({ since: 1 });
    expect(new Set(feed.map((e) => e.seq)).size).toBe(1);
  });

  it('writes nothing when any operation of the batch is invalid', async () => {
    const db = await open('eu');
    await db.collection('accounts').put('a', 1);
    const before = db.status();
    await expectCode(
      db.batch([
        { type: 'put', collection: 'accounts', id: 'a', value: 2 },
        { type: 'put', collection: 'accounts', id: '_bad', value: 3 },
      ]),
      'invalid_name',
    );
    await expectCode(
      db.batch([
        { type: 'put', collection: 'accounts', id: 'b', value: 2 },
        { type: 'delete', collection: 'accounts', id: 'ghost' },
      ]),
      'not_found',
    );
    await expectCode(db.batch([]), 'invalid_input');
    expect(db.status()).toEqual(before);
    expect(await values(db, 'accounts')).toEqual({ a: 1 });
  });

  it('a batch arrives whole at another replica', async () => {
    const eu = await open('eu');
    const us = await open('us');
    await eu.batch([1, 2, 3, 4, 5].map((n) => ({ type: 'put' as const, collection: 'b', id: `d${n}`, value: n })));
    expect(await sync(eu, us)).toBe(5);
    expect(await values(us, 'b')).toEqual({ d1: 1, d2: 2, d3: 3, d4: 4, d5: 5 });
  });
});

describe('vector', () => {
  it('is a plain object of counters, one per replica whose writes it holds', async () => {
    const eu = await open('eu');
    const us = await open('us');
    expect(eu.vector()).toEqual({});
    await eu.collection('c').put('a', 1);
    await eu.collection('c').put('b', 1);
    await us.collection('c').put('x', 1);
    await sync(eu, us);
    const v = us.vector();
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(v).toEqual({ eu: 2, us: 1 });
    expect(JSON.parse(JSON.stringify(v))).toEqual(v);
    // A copy: changing it changes nothing in the replica.
    v['eu'] = 99;
    expect(us.vector()).toEqual({ eu: 2, us: 1 });
  });
});

describe('changesSince and applyChanges', () => {
  async function threeReplicas(): Promise<[Database, Database, Database]> {
    const eu = await open('eu');
    const us = await open('us');
    const ap = await open('ap');
    await eu.collection('todos').put('t1', { by: 'eu' });
    await eu.batch([
      { type: 'put', collection: 'accounts', id: 'a', value: 10 },
      { type: 'put', collection: 'accounts', id: 'b', value: 20 },
    ]);
    await us.collection('todos').put('t2', { by: 'us' });
    await ap.collection('todos').put('t3', { by: 'ap' });
    // Concurrent writes to one document, from all three.
    await eu.collection('todos').put('shared', 'eu');
    await us.collection('todos').put('shared', 'us');
    await ap.collection('todos').put('shared', 'ap');
    await ap.collection('todos').delete('t3');
    return [eu, us, ap];
  }

  it('three replicas that exchange changes converge to one digest, conflicts kept', async () => {
    const [eu, us, ap] = await threeReplicas();
    // Around the ring twice: eu -> us -> ap -> eu -> us.
    await sync(eu, us);
    await sync(us, ap);
    await sync(ap, eu);
    await sync(eu, us);
    const digests = [eu, us, ap].map((db) => db.status().digest);
    expect(new Set(digests).size).toBe(1);
    for (const db of [eu, us, ap]) {
      expect(db.status()).toMatchObject({ docs: 5, conflicts: 1 });
      expect(await values(db, 'todos')).toEqual(await values(eu, 'todos'));
      const shared = await db.collection('todos').get('shared');
      expect(shared?.conflicts).toHaveLength(2);
      expect(await db.collection('todos').get('t3')).toBeNull();
      expect(await values(db, 'accounts')).toEqual({ a: 10, b: 20 });
    }
    // Everyone shows the same deterministic winner.
    const winners = await Promise.all(
      [eu, us, ap].map(async (db) => (await db.collection('todos').get('shared'))?.value),
    );
    expect(new Set(winners).size).toBe(1);
  });

  it('applying the same bytes twice records nothing the second time', async () => {
    const [eu, us] = await threeReplicas();
    const bytes = await eu.changesSince();
    expect((await us.applyChanges(bytes)).recorded).toBeGreaterThan(0);
    const after = us.status();
    expect(await us.applyChanges(bytes)).toEqual({ recorded: 0 });
    expect(us.status()).toEqual(after);
  });

  it('older bytes applied after newer ones change nothing', async () => {
    const eu = await open('eu');
    const us = await open('us');
    await eu.collection('c').put('k', 'old');
    await eu.collection('c').put('gone', 'here');
    const older = await eu.changesSince();
    const { version } = await eu.collection('c').put('k', 'new');
    await eu.collection('c').delete('gone');
    const newer = await eu.changesSince();

    await us.applyChanges(newer);
    const after = us.status();
    expect(await us.applyChanges(older)).toEqual({ recorded: 0 });
    expect(us.status()).toEqual(after);
    expect(after.digest).toBe(eu.status().digest);
    expect(await us.collection('c').get('k')).toMatchObject({ value: 'new', version, conflicts: [] });
    expect(await us.collection('c').get('gone')).toBeNull();
  });

  it('converges whatever the order and duplication of the bytes delivered', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.option(fc.integer({ min: 0, max: 99 }))), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.func(fc.integer()),
        async (writes, orderKey) => {
          const eu = await openReplica({ id: 'eu', storage: 'memory' });
          const us = await openReplica({ id: 'us', storage: 'memory' });
          try {
            const snapshots: Uint8Array[] = [];
            for (const [id, value] of writes) {
              if (value === null) {
                if ((await eu.collection('c').get(id)) === null) continue;
                await eu.collection('c').delete(id);
              } else {
                await eu.collection('c').put(id, value);
              }
              snapshots.push(await eu.changesSince());
            }
            // Each snapshot twice, in an arbitrary order.
            const deliveries = [...snapshots, ...snapshots]
              .map((bytes, i) => ({ bytes, key: orderKey(i) }))
              .sort((x, y) => x.key - y.key);
            for (const d of deliveries) await us.applyChanges(d.bytes);
            expect(us.status().digest).toBe(eu.status().digest);
            expect(await values(us, 'c')).toEqual(await values(eu, 'c'));
          } finally {
            await eu.close();
            await us.close();
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  it('changesSince the vector of a replica that has everything returns bytes that record nothing', async () => {
    const [eu, us, ap] = await threeReplicas();
    await sync(eu, us);
    await sync(ap, us);
    const bytes = await eu.changesSince(us.vector());
    const before = us.status();
    expect(await us.applyChanges(bytes)).toEqual({ recorded: 0 });
    expect(us.status()).toEqual(before);
    // The sender skips what the vector covers: nothing to ship.
    expect(decodeBundle(bytes).batch.changes).toEqual([]);
  });

  it('changesSince without a vector holds everything a fresh replica needs', async () => {
    const [eu, us, ap] = await threeReplicas();
    await sync(us, eu);
    await sync(ap, eu);
    const fresh = await open('fresh');
    // One document per feed entry, tombstones included.
    const { results: feed } = await eu.changes();
    expect((await fresh.applyChanges(await eu.changesSince())).recorded).toBe(feed.length);
    expect(fresh.status().digest).toBe(eu.status().digest);
  });

  describe('hostile bytes are refused with a DbError and change nothing', () => {
    async function withState(): Promise<{ us: Database; valid: Uint8Array; before: ReplicaStatus }> {
      const eu = await open('eu');
      const us = await open('us');
      await eu.collection('c').put('k1', { n: 1 });
      await eu.batch([
        { type: 'put', collection: 'c', id: 'k2', value: 'two' },
        { type: 'put', collection: 'd', id: 'k3', value: [3] },
      ]);
      await us.collection('c').put('mine', true);
      return { us, valid: await eu.changesSince(), before: us.status() };
    }

    it.each([
      ['garbage bytes', Uint8Array.of(0xff, 0x01, 0x02, 0x03)],
      ['an empty array', new Uint8Array(0)],
      ['random noise', Uint8Array.from({ length: 64 }, (_, i) => (i * 97 + 13) & 0xff)],
    ])('%s reject with code protocol', async (_what, bytes) => {
      const { us, before } = await withState();
      await expectCode(us.applyChanges(bytes), 'protocol');
      expect(us.status()).toEqual(before);
    });

    it('every truncation of a valid payload rejects with code protocol', async () => {
      const { us, valid, before } = await withState();
      expect(valid.length).toBeGreaterThan(10);
      for (let n = 0; n < valid.length; n++) {
        const err = await rejection(us.applyChanges(valid.slice(0, n)));
        expect(err, `first ${n} of ${valid.length} bytes`).toBeInstanceOf(DbError);
        expect((err as DbError).code, `first ${n} of ${valid.length} bytes`).toBe('protocol');
      }
      expect(us.status()).toEqual(before);
      // The whole payload still applies afterwards.
      expect((await us.applyChanges(valid)).recorded).toBe(3);
    });

    it('a valid payload with trailing bytes rejects with code protocol', async () => {
      const { us, valid, before } = await withState();
      const longer = new Uint8Array(valid.length + 1);
      longer.set(valid);
      await expectCode(us.applyChanges(longer), 'protocol');
      expect(us.status()).toEqual(before);
    });

    it.each([
      ['a string', 'bytes'],
      ['an array of numbers', [4, 0, 0, 0, 0, 0]],
      ['null', null],
      ['undefined', undefined],
      ['an ArrayBuffer', new ArrayBuffer(8)],
      ['an object', { length: 2, 0: 4, 1: 0 }],
    ])('%s rejects with code invalid_input', async (_what, input) => {
      const { us, before } = await withState();
      await expectCode(us.applyChanges(input as unknown as Uint8Array), 'invalid_input');
      expect(us.status()).toEqual(before);
    });

    it.each([
      ['ping', encodeMessage({ type: 'ping', nonce: 7 })],
      ['pull', encodeMessage({ type: 'pull', since: 0 })],
      ['ack', encodeMessage({ type: 'ack', id: 1, toSeq: 1 })],
      ['error', encodeMessage({ type: 'error', code: 'x', message: 'y' })],
      [
        'hello',
        encodeMessage({
          type: 'hello',
          protocol: 1,
          cluster: 'default',
          replica: 'eu',
          context: new Uint8Array(0),
          challenge: new Uint8Array(0),
        }),
      ],
    ])('a %s message rejects with code protocol', async (_what, bytes) => {
      const { us, before } = await withState();
      await expectCode(us.applyChanges(bytes), 'protocol');
      expect(us.status()).toEqual(before);
    });

    it('a batch holding one invalid document state applies none of its documents', async () => {
      const { us, valid, before } = await withState();
      const { basis, batch: m } = decodeBundle(valid);
      const forged = encodeBundle({
        basis,
        batch: {
          ...m,
          changes: [...m.changes, { docs: [{ collection: 'c', id: 'evil', state: Uint8Array.of(0xde, 0xad) }] }],
        },
      });
      await expectCode(us.applyChanges(forged), 'protocol');
      expect(us.status()).toEqual(before);
      expect(await us.collection('c').get('k1')).toBeNull();
    });

    it('a batch naming an invalid collection applies none of its documents', async () => {
      const { us, valid, before } = await withState();
      const { basis, batch: m } = decodeBundle(valid);
      const first = m.changes[0]?.docs[0];
      if (first === undefined) throw new Error('expected a document');
      const forged = encodeBundle({
        basis,
        batch: { ...m, changes: [...m.changes, { docs: [{ ...first, collection: '_system' }] }] },
      });
      await expectCode(us.applyChanges(forged), 'protocol');
      expect(us.status()).toEqual(before);
    });
  });

  it.each([
    ['a negative counter', { eu: -1 }],
    ['a fractional counter', { eu: 1.5 }],
    ['NaN', { eu: Number.NaN }],
    ['Infinity', { eu: Number.POSITIVE_INFINITY }],
    ['a string counter', { eu: '3' }],
    ['an array', [1, 2]],
    ['an empty array', []],
    ['null', null],
    ['a number', 5],
  ])('changesSince with %s rejects with code invalid_input', async (_what, vector) => {
    const db = await open('eu');
    await db.collection('c').put('k', 1);
    await expectCode(db.changesSince(vector as unknown as Record<string, number>), 'invalid_input');
  });
});

describe('connect', () => {
  it('replicates live both ways over a memory connection', async () => {
    const eu = await open('eu');
    const us = await open('us');
    await eu.collection('todos').put('before-eu', 1);
    await us.collection('todos').put('before-us', 2);

    const [x, y] = memoryConnectionPair();
    const euSession = eu.connect(x);
    const usSession = us.connect(y);
    const converged = (): boolean => eu.status().digest === us.status().digest;

    await eventually('the writes made before connecting to cross', converged);
    expect(await values(us, 'todos')).toEqual({ 'before-eu': 1, 'before-us': 2 });
    expect(euSession.info()).toMatchObject({ peer: 'us', phase: 'open' });
    expect(usSession.info()).toMatchObject({ peer: 'eu', phase: 'open' });

    // Live: writes after catch-up stream both ways.
    await eu.collection('todos').put('live-eu', 3);
    await eventually(
      'a live write of eu to reach us',
      async () => (await us.collection('todos').get('live-eu')) !== null,
    );
    await us.batch([
      { type: 'put', collection: 'todos', id: 'live-us-1', value: 4 },
      { type: 'put', collection: 'todos', id: 'live-us-2', value: 5 },
    ]);
    await us.collection('todos').delete('before-eu');
    await eventually('a live batch and a delete of us to reach eu', converged);
    expect(await values(eu, 'todos')).toEqual({ 'before-us': 2, 'live-eu': 3, 'live-us-1': 4, 'live-us-2': 5 });

    // Many writes in a row, more than one window of batches.
    for (let i = 0; i < 40; i++) await eu.collection('bulk').put(`k${i}`, i);
    await eventually('40 writes to reach us', converged);
    expect(Object.keys(await values(us, 'bulk'))).toHaveLength(40);

    euSession.close();
    await eventually(
      'both sessions to close',
      () => euSession.info().phase === 'closed' && usSession.info().phase === 'closed',
    );
  });

  it('replicates through a middle replica to a third one', async () => {
    const [eu, us, ap] = [await open('eu'), await open('us'), await open('ap')];
    const [a1, b1] = memoryConnectionPair();
    const [b2, c2] = memoryConnectionPair();
    const sessions = [eu.connect(a1), us.connect(b1), us.connect(b2), ap.connect(c2)];
    await eu.collection('c').put('from-eu', 1);
    await ap.collection('c').put('from-ap', 2);
    await eventually(
      'all three to converge',
      () => new Set([eu, us, ap].map((db) => db.status().digest)).size === 1 && eu.status().docs === 2,
    );
    for (const s of sessions) s.close();
  });

  it('refuses a peer in another cluster and replicates nothing', async () => {
    const eu = await open('eu');
    const us = await open('us');
    await eu.collection('c').put('k', 1);
    const [x, y] = memoryConnectionPair();
    const euSession = eu.connect(x, { cluster: 'one' });
    const usSession = us.connect(y, { cluster: 'two' });
    await eventually(
      'both sessions to close',
      () => euSession.info().phase === 'closed' && usSession.info().phase === 'closed',
    );
    expect(euSession.info().closeReason?.code).toBe('wrong_cluster');
    expect(us.status().docs).toBe(0);
  });
});

describe('lifecycle', () => {
  it('after close, every call rejects with code closed', async () => {
    const eu = await openReplica({ id: 'eu', storage: 'memory' });
    const us = await open('us');
    await us.collection('c').put('k', 1);
    const bytes = await us.changesSince();
    await eu.collection('c').put('k', 1);
    await eu.close();
    const c = eu.collection('c');
    await expectCode(c.put('k', 2), 'closed');
    await expectCode(c.get('k'), 'closed');
    await expectCode(c.delete('k'), 'closed');
    await expectCode(c.list(), 'closed');
    await expectCode(eu.batch([{ type: 'put', collection: 'c', id: 'x', value: 1 }]), 'closed');
    await expectCode(eu.changesSince(), 'closed');
    await expectCode(eu.applyChanges(bytes), 'closed');
    await expectCode(eu.changes(), 'closed');
    // Closing again is harmless.
    await eu.close();
  });

  it.each([
    ['a space', 'bad id'],
    ['an empty string', ''],
    ['a leading underscore', '_eu'],
    ['a slash', 'eu/1'],
    ['65 characters', 'x'.repeat(65)],
    ['a number', 42],
  ])('openReplica with an id holding %s rejects with code invalid_name', async (_what, id) => {
    await expectCode(openReplica({ id: id as string, storage: 'memory' }), 'invalid_name');
  });

  it('openReplica without an id makes one, and distinct replicas get distinct ids', async () => {
    const a = await open();
    const b = await open();
    expect(a.id).toMatch(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/);
    expect(a.id).not.toBe(b.id);
    expect(a.status().replica).toBe(a.id);
  });

  it('openReplica with bad storage rejects with code invalid_input', async () => {
    await expectCode(openReplica({ storage: 42 as unknown as string }), 'invalid_input');
    await expectCode(openReplica(null as unknown as OpenOptions), 'invalid_input');
  });
});

describe('the polyarch/client entry', () => {
  it('opens memory storage', async () => {
    const db = await openClientReplica({ id: 'tab', storage: 'memory' });
    opened.push(db);
    await db.collection('c').put('k', 1);
    expect((await db.collection('c').get('k'))?.value).toBe(1);
  });

  it('refuses a file path with a clear error and creates no file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'polyarch-client-'));
    try {
      const file = join(dir, 'store.db');
      const err = await expectCode(openClientReplica({ id: 'tab', storage: file }), 'invalid_input');
      expect(err.message).toContain(file);
      expect(err.message).toContain("'memory'");
      expect(existsSync(file)).toBe(false);
      await expectCode(openClientReplica({ storage: './relative.db' }), 'invalid_input');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('closing with live sessions', () => {
  it('a session of a closed database refuses the next batch with code closed, and the peer keeps working', async () => {
    const eu = await openReplica({ id: 'eu', storage: 'memory' });
    const us = await open('us');
    const [x, y] = memoryConnectionPair();
    const euSession = eu.connect(x);
    const usSession = us.connect(y);
    await eu.collection('c').put('k', 1);
    await eventually('the first write to cross', () => us.status().digest === eu.status().digest);
    await eu.close();
    await us.collection('c').put('after-close', 2);
    await eventually(
      'both sessions to close',
      () => euSession.info().phase === 'closed' && usSession.info().phase === 'closed',
    );
    expect(usSession.info().closeReason?.code).toBe('closed');
    await us.collection('c').put('still-works', 3);
    expect((await us.collection('c').get('still-works'))?.value).toBe(3);
  });

  it('closing a database closes its live sessions, and the peer sees the reason', async () => {
    const eu = await openReplica({ id: 'eu', storage: 'memory' });
    const us = await open('us');
    const [x, y] = memoryConnectionPair();
    const euSession = eu.connect(x);
    const usSession = us.connect(y);
    await eu.collection('c').put('k', 1);
    await eventually('the first write to cross', () => us.status().digest === eu.status().digest);
    await eu.close();
    // No further traffic: the close alone must end both sides.
    await eventually(
      'both sessions to close after the database closed',
      () => euSession.info().phase === 'closed' && usSession.info().phase === 'closed',
      2000,
    );
    expect(usSession.info().closeReason?.code).toBe('closed');
  });

  it('connect on a closed database is refused with code closed', async () => {
    const eu = await openReplica({ id: 'eu', storage: 'memory' });
    await eu.close();
    const [x] = memoryConnectionPair();
    expect(() => eu.connect(x)).toThrow(expect.objectContaining({ code: 'closed' }) as unknown as Error);
  });
});

describe('bundles applied by a replica they were not made for (regression)', () => {
  it('do not make the receiver believe it holds writes that were skipped for the other', async () => {
    const eu = await openReplica({ id: 'eu', storage: 'memory' });
    const us = await openReplica({ id: 'us', storage: 'memory' });
    await eu.collection('c').put('k1', 1);
    await eu.collection('c').put('k2', 2);
    // Made for a replica that already holds eu:1, applied by one that holds nothing.
    await us.applyChanges(await eu.changesSince({ eu: 1 }));
    expect(await us.collection('c').get('k1')).toBeNull();
    expect(us.vector()).toEqual({});
    await us.applyChanges(await eu.changesSince(us.vector()));
    expect((await us.collection('c').get('k1'))?.value).toBe(1);
    expect(us.status().digest).toBe(eu.status().digest);
  });
});

describe('catching up from one peer', () => {
  it('does not read the received documents back to offer them to that peer', async () => {
    const a = await openReplica({ id: 'a', storage: 'memory' });
    const b = await openReplica({ id: 'b', storage: 'memory' });
    for (let i = 0; i < 10; i++) {
      await a.batch(
        Array.from({ length: 50 }, (_, j) => ({ type: 'put' as const, collection: 'c', id: `d${i}-${j}`, value: j })),
      );
    }
    let readByB = 0;
    let sentByB = 0;
    const [x, y] = memoryConnectionPair();
    a.connect(x);
    const session = b.connect(y, { observer: { read: (n) => (readByB += n), sent: (n) => (sentByB += n) } });
    const deadline = Date.now() + 5000;
    while (!(b.status().docs === 500 && session.idle && session.info().acked === b.status().seq)) {
      if (Date.now() > deadline) throw new Error('no catch-up');
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(readByB).toBe(0);
    expect(sentByB).toBe(0);
    expect(b.status().digest).toBe(a.status().digest);
    // A later local write is offered as usual.
    await b.collection('c').put('mine', 1);
    while (session.info().acked !== b.status().seq) {
      if (Date.now() > deadline) throw new Error('no ack');
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(readByB).toBe(1);
    expect(sentByB).toBe(1);
    await Promise.all([a.close(), b.close()]);
  });
});
