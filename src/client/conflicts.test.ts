/**
 * Conflict handling through the SDK, on replicas synced by bytes: replicated settings,
 * map, counter and set documents, the conflict listing and hook, merge write-back (once,
 * by one replica), and the reduction of siblings when a collection turns last-writer-wins.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openReplica } from '../index.js';
import { dbErrorOfPromise } from '../../test/support/errors.js';
import { sync, syncAll } from '../../test/support/sdk-sync.js';
import type { ChangeEvent, Database, JsonValue, MergeFunction, OpenOptions } from '../index.js';

const opened: Database[] = [];

afterEach(async () => {
  for (const db of opened.splice(0)) await db.close();
});

const union: MergeFunction = (values) => [...new Set(values.flat() as string[])].sort();

async function open(id: string, extra: Partial<OpenOptions> = {}): Promise<Database> {
  const db = await openReplica({ storage: 'memory', id, mergeFunctions: { union }, ...extra });
  opened.push(db);
  return db;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  expect((await dbErrorOfPromise(p)).code).toBe(code);
}

function digests(dbs: Database[]): Set<string> {
  return new Set(dbs.map((d) => d.status().digest));
}

describe('collection settings', () => {
  it('replicate to every replica, and concurrent changes end in one winner everywhere', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('events').configure({ kind: 'map', policy: 'keep' });
    expect(b.collection('events').config()).toEqual({ kind: 'record', policy: 'keep', replicated: false });
    await syncAll([a, b]);
    expect(b.collection('events').config()).toEqual({ kind: 'map', policy: 'keep', replicated: true });
    await a.collection('likes').configure({ kind: 'counter', policy: 'keep' });
    await b.collection('likes').configure({ kind: 'set', policy: 'keep' });
    await syncAll([a, b]);
    expect(a.collection('likes').config()).toEqual(b.collection('likes').config());
    expect(digests([a, b]).size).toBe(1);
    // Settings are not user documents.
    expect(a.status().docs).toBe(0);
  });

  it('refuses bad settings with invalid_input and changes nothing', async () => {
    const a = await open('a');
    const before = a.status();
    for (const bad of [
      { kind: 'blob' },
      { kind: 'record', policy: 'merge' },
      { kind: 'record', policy: 'sometimes' },
      { kind: 'record', extra: 1 },
      { kind: 'counter', fields: { '/x': { type: 'counter' } } },
      { kind: 'map', fields: { 'no-slash': {} } },
      { kind: 'map', fields: { '/n': { type: 'counter', policy: 'lww' } } },
      'map',
      null,
    ]) {
      await expectCode(a.collection('c').configure(bad as never), 'invalid_input');
    }
    expect(a.status()).toEqual(before);
  });

  it('local defaults from openReplica apply until replicated settings arrive', async () => {
    const a = await open('a', { collections: { n: { kind: 'counter' } } });
    await a.collection('n').increment('x', 2);
    expect((await a.collection('n').get('x'))?.value).toBe(2);
    expect(a.collection('n').config().replicated).toBe(false);
  });
});

describe('counters, sets and maps', () => {
  it('a counter adds up increments and decrements made at three replicas apart', async () => {
    const dbs = [await open('a'), await open('b'), await open('c')];
    await dbs[0]?.collection('likes').configure({ kind: 'counter', policy: 'keep' });
    await syncAll(dbs);
    let want = 0;
    for (const [i, db] of dbs.entries()) {
      for (let k = 0; k < 50; k++) {
        const by = k % 5 === 0 ? -(i + 1) : i + 2;
        want += by;
        await db.collection('likes').increment('post', by);
      }
    }
    await syncAll(dbs);
    for (const db of dbs) expect((await db.collection('likes').get('post'))?.value).toBe(want);
    expect(digests(dbs).size).toBe(1);
  });

  it('a set keeps an element added concurrently with its removal (add wins)', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('tags').configure({ kind: 'set', policy: 'keep' });
    await a.collection('tags').addToSet('p', 'red');
    await a.collection('tags').addToSet('p', { b: 1, a: 2 });
    await syncAll([a, b]);
    await b.collection('tags').removeFromSet('p', 'red');
    await a.collection('tags').addToSet('p', 'red');
    // The same element, whatever the key order.
    await b.collection('tags').removeFromSet('p', { a: 2, b: 1 });
    await syncAll([a, b]);
    expect((await a.collection('tags').get('p'))?.value).toEqual(['red']);
    expect((await b.collection('tags').get('p'))?.value).toEqual(['red']);
  });

  it('a map keeps concurrent edits of different fields, and shows the same field as a conflict', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('ev').configure({ kind: 'map', policy: 'keep', fields: { '/room': { policy: 'lww' } } });
    await a.collection('ev').put('e', { title: 'Standup', at: { day: 'mon', hour: 9 } });
    await syncAll([a, b]);
    await a.collection('ev').patch('e', [
      { op: 'set', path: '/at/hour', value: 10 },
      { op: 'set', path: '/title', value: 'Daily' },
      { op: 'set', path: '/room', value: 'A' },
    ]);
    await b.collection('ev').patch('e', [
      { op: 'set', path: '/at/day', value: 'tue' },
      { op: 'set', path: '/title', value: 'Sync' },
      { op: 'set', path: '/room', value: 'B' },
    ]);
    await syncAll([a, b]);
    const docA = await a.collection('ev').get('e');
    const docB = await b.collection('ev').get('e');
    expect(docA).toEqual(docB);
    const v = docA?.value as Record<string, JsonValue>;
    expect(v['at']).toEqual({ day: 'tue', hour: 10 });
    expect(v['room']).toBe('B'); // lww: b wrote later
    expect(docA?.conflicts.map((c) => c.path)).toEqual(['/title']);
    expect([v['title'], docA?.conflicts[0]?.value].sort()).toEqual(['Daily', 'Sync']);
    expect(a.status().conflicts).toBe(1);
    // Writing back what was read resolves the conflict, everywhere.
    await a.collection('ev').put('e', { ...v, title: 'Daily sync' });
    await syncAll([a, b]);
    const after = await b.collection('ev').get('e');
    expect(after?.conflicts).toEqual([]);
    expect((after?.value as Record<string, JsonValue>)['title']).toBe('Daily sync');
    expect(b.status().conflicts).toBe(0);
  });

  it('a delete of a map keeps edits made concurrently elsewhere', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('ev').configure({ kind: 'map', policy: 'keep' });
    await a.collection('ev').put('e', { title: 'x', n: 1 });
    await syncAll([a, b]);
    await a.collection('ev').delete('e');
    await b.collection('ev').patch('e', [{ op: 'set', path: '/n', value: 2 }]);
    await syncAll([a, b]);
    expect((await a.collection('ev').get('e'))?.value).toEqual({ n: 2 });
    await b.collection('ev').delete('e');
    await syncAll([a, b]);
    expect(await a.collection('ev').get('e')).toBeNull();
    await expectCode(a.collection('ev').delete('e'), 'not_found');
  });

  it('a batch with a bad patch writes nothing', async () => {
    const a = await open('a');
    await a.collection('n').configure({ kind: 'counter', policy: 'keep' });
    const before = a.status();
    await expectCode(
      a.batch([
        { type: 'patch', collection: 'n', id: 'x', ops: [{ op: 'increment', path: '', by: 1 }] },
        { type: 'patch', collection: 'n', id: 'y', ops: [{ op: 'increment', path: '', by: 1.5 }] },
      ]),
      'invalid_input',
    );
    await expectCode(a.collection('n').put('x', 1), 'invalid_input');
    await expectCode(a.collection('n').patch('x', [{ op: 'add-to-set', path: '', value: 1 }]), 'invalid_input');
    expect(a.status()).toEqual(before);
  });

  it('a patch with a stale version is refused with conflict', async () => {
    const a = await open('a');
    await a.collection('ev').configure({ kind: 'map', policy: 'keep' });
    const { version } = await a.collection('ev').put('e', { n: 1 });
    await a.collection('ev').patch('e', [{ op: 'set', path: '/n', value: 2 }], { version });
    await expectCode(a.collection('ev').patch('e', [{ op: 'set', path: '/n', value: 3 }], { version }), 'conflict');
    expect((await a.collection('ev').get('e'))?.value).toEqual({ n: 2 });
  });
});

describe('finding and resolving conflicts', () => {
  it('onConflict fires when a replicated change makes a conflict, and a resolution clears it everywhere', async () => {
    const [a, b] = [await open('a'), await open('b')];
    const seen: ChangeEvent[] = [];
    a.onConflict((e) => seen.push(e));
    await a.collection('todos').put('t', 'milk');
    await b.collection('todos').put('t', 'bread');
    await sync(b, a);
    expect(seen.map((e) => [e.collection, e.id, e.origin, e.conflict])).toEqual([['todos', 't', 'remote', true]]);
    const doc = await a.collection('todos').get('t');
    expect(doc?.conflicts).toHaveLength(1);
    await a.collection('todos').put('t', 'milk and bread', { version: doc?.version as string });
    await syncAll([a, b]);
    expect((await b.collection('todos').get('t'))?.conflicts).toEqual([]);
  });

  it('conflicts() pages through every document in conflict, once each', async () => {
    const [a, b] = [await open('a'), await open('b')];
    for (let i = 0; i < 25; i++) {
      await a.collection(i % 2 === 0 ? 'even' : 'odd').put(`d${i}`, i);
      await b.collection(i % 2 === 0 ? 'even' : 'odd').put(`d${i}`, -i - 1);
    }
    await a.collection('even').put('calm', 1);
    await sync(b, a);
    const found: string[] = [];
    let after: string | null = null;
    do {
      const page = await a.conflicts({ limit: 10, ...(after === null ? {} : { after }) });
      expect(page.results.length).toBeLessThanOrEqual(10);
      for (const r of page.results) {
        expect(r.kind).toBe('siblings');
        expect(r.conflicts).toHaveLength(1);
        found.push(`${r.collection}/${r.id}`);
      }
      after = page.next;
    } while (after !== null);
    expect(found).toHaveLength(25);
    expect(new Set(found).size).toBe(25);
    expect((await a.collection('odd').conflicts()).results).toHaveLength(12);
    await expectCode(a.conflicts({ after: 'nope' }), 'invalid_input');
  });

  it('a merge collection shows the merged value and one replica writes it back, once', async () => {
    const dbs = [await open('a'), await open('b'), await open('c')];
    await dbs[0]?.collection('carts').configure({ kind: 'record', policy: 'merge', merge: 'union' });
    await syncAll(dbs);
    for (const [i, db] of dbs.entries()) await db.collection('carts').put('cart', [`item-${i}`]);
    await syncAll(dbs);
    for (const db of dbs) {
      const doc = await db.collection('carts').get('cart');
      expect(doc?.value).toEqual(['item-0', 'item-1', 'item-2']);
      expect(doc?.conflicts).toEqual([]);
      expect(db.status().conflicts).toBe(0);
    }
    expect(digests(dbs).size).toBe(1);
    const writeBacks = dbs.reduce((n, d) => n + d.replica.mergeWriteBacks, 0);
    // One per partial set of siblings a resolver saw (here a+b at b, a+c at c, then their
    // two resolutions at c): bounded by the replicas involved, never a storm.
    expect(writeBacks).toBeGreaterThanOrEqual(1);
    expect(writeBacks).toBeLessThanOrEqual(dbs.length);
    const seq = dbs.map((d) => d.status().seq);
    await syncAll(dbs);
    expect(dbs.map((d) => d.status().seq)).toEqual(seq);
  });

  it('a replica without the merge function keeps the conflict visible', async () => {
    const a = await open('a');
    const b = await openReplica({ storage: 'memory', id: 'b' });
    opened.push(b);
    await a.collection('carts').configure({ kind: 'record', policy: 'merge', merge: 'union' });
    await syncAll([a, b]);
    expect(b.replica.missingMerges()).toEqual(['union']);
    await b.collection('carts').put('cart', ['x']);
    await a.collection('carts').put('cart', ['y']);
    await sync(a, b);
    expect((await b.collection('carts').get('cart'))?.conflicts).toHaveLength(1);
  });

  it('switching a collection to lww drops the siblings that lose, at every replica', async () => {
    const [a, b] = [await open('a'), await open('b')];
    for (let i = 0; i < 5; i++) {
      await a.collection('notes').put(`n${i}`, `a${i}`);
      await b.collection('notes').put(`n${i}`, `b${i}`);
    }
    await syncAll([a, b]);
    expect(a.status().conflicts).toBe(5);
    await b.collection('notes').configure({ kind: 'record', policy: 'lww' });
    await syncAll([a, b]);
    for (const db of [a, b]) {
      expect(db.status().conflicts).toBe(0);
      for (let i = 0; i < 5; i++) expect((await db.collection('notes').get(`n${i}`))?.value).toBe(`b${i}`);
    }
    expect(digests([a, b]).size).toBe(1);
  });
});

describe('a collection that changes kind', () => {
  it('from record to map: the first field write replaces the whole value it saw', async () => {
    const a = await open('a');
    await a.collection('ev').put('e', { title: 'old' });
    await a.collection('ev').configure({ kind: 'map', policy: 'keep' });
    await a.collection('ev').put('e', { title: 'new', n: 1 });
    const doc = await a.collection('ev').get('e');
    expect(doc?.value).toEqual({ title: 'new', n: 1 });
    expect(doc?.conflicts).toEqual([]);
    expect(a.status().conflicts).toBe(0);
  });

  it('a map field switched to lww stops counting as a conflict, and back', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('ev').configure({ kind: 'map', policy: 'keep' });
    await syncAll([a, b]);
    await a.collection('ev').patch('e', [{ op: 'set', path: '/room', value: 'A' }]);
    await b.collection('ev').patch('e', [{ op: 'set', path: '/room', value: 'B' }]);
    await syncAll([a, b]);
    expect(a.status().conflicts).toBe(1);
    expect((await a.conflicts()).results).toHaveLength(1);
    await a.collection('ev').configure({ kind: 'map', policy: 'keep', fields: { '/room': { policy: 'lww' } } });
    await syncAll([a, b]);
    for (const db of [a, b]) {
      expect(db.status().conflicts).toBe(0);
      expect((await db.conflicts()).results).toEqual([]);
      expect((await db.collection('ev').get('e'))?.conflicts).toEqual([]);
    }
    await b.collection('ev').configure({ kind: 'map', policy: 'keep' });
    await syncAll([a, b]);
    for (const db of [a, b]) expect(db.status().conflicts).toBe(1);
    expect(digests([a, b]).size).toBe(1);
  });

  it('identical concurrent values are shown once, and are not a conflict', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('todos').put('t', { done: true });
    await b.collection('todos').put('t', { done: true });
    await a.collection('todos').put('u', 1);
    await b.collection('todos').put('u', 2);
    await syncAll([a, b]);
    expect((await a.collection('todos').get('t'))?.conflicts).toEqual([]);
    expect(a.status().conflicts).toBe(1);
    expect((await a.conflicts()).results.map((r) => r.id)).toEqual(['u']);
  });
});

describe('merge functions that fail', () => {
  it('a merge function that throws or returns a non-JSON value leaves the conflict visible, never a failed read', async () => {
    const boom: MergeFunction = () => {
      throw new Error('boom');
    };
    const nothing = (() => undefined) as unknown as MergeFunction;
    const [a, b] = [
      await open('a', { mergeFunctions: { boom, nothing } }),
      await open('b', { mergeFunctions: { boom, nothing } }),
    ];
    await a.collection('x').configure({ kind: 'record', policy: 'merge', merge: 'boom' });
    await a
      .collection('y')
      .configure({ kind: 'map', policy: 'keep', fields: { '/f': { policy: 'merge', merge: 'nothing' } } });
    await syncAll([a, b]);
    await a.collection('x').put('d', 1);
    await b.collection('x').put('d', 2);
    await a.collection('y').patch('d', [{ op: 'set', path: '/f', value: 1 }]);
    await b.collection('y').patch('d', [{ op: 'set', path: '/f', value: 2 }]);
    await syncAll([a, b]);
    expect((await a.collection('x').get('d'))?.conflicts).toHaveLength(1);
    expect((await a.collection('y').get('d'))?.conflicts).toHaveLength(1);
    expect((await a.collection('x').list()).results).toHaveLength(1);
    expect((await a.conflicts()).results).toHaveLength(2);
    expect(a.replica.mergeWriteBacks + b.replica.mergeWriteBacks).toBe(0);
  });

  it('a merged document is not listed as a conflict while its write-back is pending', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await b.collection('carts').configure({ kind: 'record', policy: 'merge', merge: 'union' });
    await syncAll([a, b]);
    await a.collection('carts').put('c', ['x']);
    await b.collection('carts').put('c', ['y']);
    // a is the resolver (least origin id); b shows the merge without writing it.
    await sync(a, b);
    await b.settled();
    expect(b.replica.mergeWriteBacks).toBe(0);
    expect((await b.collection('carts').get('c'))?.value).toEqual(['x', 'y']);
    expect(b.status().conflicts).toBe(0);
    expect((await b.conflicts()).results).toEqual([]);
  });

  it('an empty map exists as {}, and fields written into it replace it', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('ev').configure({ kind: 'map', policy: 'keep' });
    await a.collection('ev').put('e', {});
    await syncAll([a, b]);
    expect((await b.collection('ev').get('e'))?.value).toEqual({});
    await a.collection('ev').patch('e', [{ op: 'set', path: '/x', value: 1 }]);
    await b.collection('ev').patch('e', [{ op: 'set', path: '/y', value: 2 }]);
    await syncAll([a, b]);
    const doc = await a.collection('ev').get('e');
    expect(doc?.value).toEqual({ x: 1, y: 2 });
    expect(doc?.conflicts).toEqual([]);
  });
});

describe('map edge cases', () => {
  it('a record collection turned map keeps the other fields when one field is patched', async () => {
    const a = await open('a');
    await a.collection('ev').put('e', { title: 'Standup', room: 'A' });
    await a.collection('ev').configure({ kind: 'map', policy: 'keep' });
    await a.collection('ev').patch('e', [{ op: 'set', path: '/room', value: 'B' }]);
    expect((await a.collection('ev').get('e'))?.value).toEqual({ title: 'Standup', room: 'B' });
  });

  it('a map is held to the document size limit as a whole', async () => {
    const a = await open('a', { limits: { docBytesMax: 1000 } });
    await a.collection('ev').configure({ kind: 'map', policy: 'keep' });
    await a.collection('ev').patch('e', [{ op: 'set', path: '/a', value: 'x'.repeat(600) }]);
    const before = a.status();
    await expectCode(a.collection('ev').patch('e', [{ op: 'set', path: '/b', value: 'y'.repeat(600) }]), 'too_large');
    expect(a.status()).toEqual(before);
  });

  it('a patch answers the version a read of the same state shows', async () => {
    const a = await open('a');
    await a.collection('ev').configure({ kind: 'map', policy: 'keep' });
    await a.collection('ev').put('e', { x: 1, y: 2 });
    const { version } = await a.collection('ev').patch('e', [{ op: 'remove', path: '/x' }]);
    expect((await a.collection('ev').get('e'))?.version).toBe(version);
  });
});

describe('versions read at another leader', () => {
  it('a map PUT with a version read elsewhere supersedes what this leader holds; what it has not received meets it as a conflict', async () => {
    const [x, y] = [await open('x'), await open('y')];
    await x.collection('profiles').configure({ kind: 'map', policy: 'keep' });
    await syncAll([x, y]);
    await x.collection('profiles').put('d', { title: 'a' });
    const read = await x.collection('profiles').get('d');
    await y.collection('profiles').put('d', { title: 'b' }, { version: read?.version as string });
    await syncAll([x, y]);
    // Regression (simulator seed 972729086): taking the version's context in made replicas
    // that held every dot of the new state skip it, and diverge.
    const doc = await x.collection('profiles').get('d');
    expect(doc?.value).toEqual({ title: 'b' });
    expect(doc?.conflicts.map((c) => [c.path, c.value])).toEqual([['/title', 'a']]);
    expect(digests([x, y]).size).toBe(1);
  });

  it('a map PATCH with a version read elsewhere keeps the fields it does not name', async () => {
    const [x, y] = [await open('x'), await open('y')];
    await x.collection('profiles').configure({ kind: 'map', policy: 'keep' });
    await syncAll([x, y]);
    await x.collection('profiles').put('d', { title: 'a', n: 1 });
    const read = await x.collection('profiles').get('d');
    await y.collection('profiles').patch('d', [{ op: 'set', path: '/title', value: 'b' }], {
      version: read?.version as string,
    });
    await syncAll([x, y]);
    const doc = await y.collection('profiles').get('d');
    expect(doc?.value).toEqual({ title: 'b', n: 1 });
    // A patch's version is a precondition: the field it sets meets the value it replaced at the
    // other leader as a conflict (the later write shows), since a patch supersedes only what
    // this leader held.
    expect(doc?.conflicts.map((c) => [c.path, c.value])).toEqual([['/title', 'a']]);
  });
});

describe('the conflict listing', () => {
  // Regression (found by bench:geo): conflicts that arrived in one atomic change share one feed
  // position; a page that ended inside that change handed out a cursor after it, and the next
  // page skipped the rest. Listings came out short, by different amounts at each leader.
  it('lists every conflict of an atomic change, whatever the page size', async () => {
    const a = await open('a');
    const b = await open('b');
    const ids = Array.from({ length: 7 }, (_, i) => `d${i}`);
    await a.batch(ids.map((id) => ({ type: 'put' as const, collection: 'docs', id, value: 'from a' })));
    await b.batch(ids.map((id) => ({ type: 'put' as const, collection: 'docs', id, value: 'from b' })));
    await sync(a, b); // one remote change at b: seven conflicts at one seq
    expect(b.status().conflicts).toBe(7);
    for (const limit of [1, 2, 3, 7, 100]) {
      const seen: string[] = [];
      let after: string | undefined;
      for (let page = 0; page < 20; page++) {
        const r = await b.conflicts(after === undefined ? { limit } : { limit, after });
        seen.push(...r.results.map((c) => c.id));
        if (r.next === null) break;
        after = r.next;
      }
      expect(seen.sort(), `limit ${limit}`).toEqual(ids);
    }
  });

  it('lists every conflict when changes straddle the scan of 1,000 rows', async () => {
    const a = await open('a');
    const b = await open('b');
    // 998 single writes, then a batch of 5 across the first scan's boundary, conflicting.
    for (let i = 0; i < 998; i++) await b.collection('fill').put(`f${i}`, i);
    const ids = Array.from({ length: 5 }, (_, i) => `x${i}`);
    await a.batch(ids.map((id) => ({ type: 'put' as const, collection: 'docs', id, value: 1 })));
    await b.batch(ids.map((id) => ({ type: 'put' as const, collection: 'docs', id, value: 2 })));
    await sync(a, b);
    const seen: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < 20; page++) {
      const r = await b.conflicts(after === undefined ? {} : { after });
      seen.push(...r.results.map((c) => c.id));
      if (r.next === null) break;
      after = r.next;
    }
    expect(seen.sort()).toEqual(ids);
  });
});
