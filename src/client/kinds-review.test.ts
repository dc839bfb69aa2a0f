/**
 * Review tests for conflict handling (issue 5): adversarial checks of convergence, counts and
 * settings changes through the SDK. Tests under "Regression (review)" comments are bugs the
 * review found, each kept as a regression test after its fix.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { DbError, openReplica } from '../index.js';
import { dbErrorOfPromise } from '../../test/support/errors.js';
import { sync, syncAll } from '../../test/support/sdk-sync.js';
import type { Database, JsonValue, MergeFunction, OpenOptions } from '../index.js';

const opened: Database[] = [];

afterEach(async () => {
  for (const db of opened.splice(0)) await db.close();
});

const union: MergeFunction = (values) => [...new Set(values.flat() as string[])].sort();
const sum: MergeFunction = (values) => (values as number[]).reduce((x, y) => x + y, 0);

async function open(id: string, extra: Partial<OpenOptions> = {}): Promise<Database> {
  const db = await openReplica({ storage: 'memory', id, mergeFunctions: { union, sum }, ...extra });
  opened.push(db);
  return db;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  expect((await dbErrorOfPromise(p)).code).toBe(code);
}

async function allConflicts(db: Database): Promise<string[]> {
  const out: string[] = [];
  let after: string | null = null;
  do {
    const page = await db.conflicts({ after, limit: 7 });
    for (const r of page.results) out.push(`${r.collection}/${r.id}`);
    after = page.next;
  } while (after !== null);
  return out.sort();
}

// ---------------------------------------------------------------------------------------------
// Bugs

describe('settings changes', () => {
  // Regression (review): a reduction made under `lww` at one replica, whose lww settings were superseded
  // (here by the same replica) before they replicated, never reaches the others: readBatch
  // skips the reduced rows because the peer already holds every dot in them, and the peer
  // never runs the reduction itself since it never applies `lww`. The replicas have exchanged
  // everything and still differ in digest, views and conflict counts.
  it('lww then keep before a sync: replicas end with the same state', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('n').put('x', 1);
    await b.collection('n').put('x', 2);
    await syncAll([a, b]);
    await a.collection('n').configure({ kind: 'record', policy: 'lww' });
    await a.settled();
    await a.collection('n').configure({ kind: 'record', policy: 'keep' });
    await a.settled();
    await syncAll([a, b]);
    expect((await a.collection('n').get('x'))?.conflicts.length).toBe(
      (await b.collection('n').get('x'))?.conflicts.length,
    );
    expect(a.status().conflicts).toBe(b.status().conflicts);
    expect(a.status().digest).toBe(b.status().digest);
  });

  // Regression (review): the same with two replicas configuring concurrently: a's `lww` loses to b's later
  // `keep`, but a already reduced its documents, and b never learns of it.
  it('concurrent configure (lww at a, keep later at b) converges', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('n').put('x', 1);
    await b.collection('n').put('x', 2);
    await syncAll([a, b]);
    await a.collection('n').configure({ kind: 'record', policy: 'lww' });
    await a.settled();
    await new Promise((r) => setTimeout(r, 5)); // b's settings are later: they win
    await b.collection('n').configure({ kind: 'record', policy: 'keep' });
    await syncAll([a, b]);
    expect(a.collection('n').config()).toEqual(b.collection('n').config());
    expect(a.status().digest).toBe(b.status().digest);
    expect(a.status().conflicts).toBe(b.status().conflicts);
  });

  // Regression (review): the stored conflict mark (FLAG_CONFLICT, and meta.conflicts) depends on whether the
  // merge function is registered, but registerMerge recomputes nothing: status().conflicts
  // keeps counting a document that conflicts() no longer lists and get() shows merged.
  it('a merge function registered later: status().conflicts agrees with conflicts()', async () => {
    const a = await openReplica({ storage: 'memory', id: 'a' });
    const b = await openReplica({ storage: 'memory', id: 'b' });
    opened.push(a, b);
    await a.collection('c').configure({ kind: 'record', policy: 'merge', merge: 'union' });
    await syncAll([a, b]);
    await a.collection('c').put('x', ['p']);
    await b.collection('c').put('x', ['q']);
    await sync(b, a);
    await a.settled(); // a, the resolver, lacks the function: nothing is written back
    expect(a.status().conflicts).toBe(1);
    a.registerMerge('union', union);
    await a.settled();
    expect((await a.collection('c').get('x'))?.value).toEqual(['p', 'q']);
    expect((await allConflicts(a)).length).toBe(0);
    expect(a.status().conflicts).toBe(0);
  });

  // Regression (review): reconcile runs only when policyShape (policies) changes, not when the merge function
  // named changes; the conflict marks are left as computed under the old function.
  it('changing the merge function named: status().conflicts agrees with conflicts()', async () => {
    const boom: MergeFunction = () => {
      throw new Error('boom');
    };
    const [a, b] = [
      await open('a', { mergeFunctions: { union, boom } }),
      await open('b', { mergeFunctions: { union, boom } }),
    ];
    await a.collection('c').configure({ kind: 'record', policy: 'merge', merge: 'boom' });
    await syncAll([a, b]);
    await a.collection('c').put('x', ['p']);
    await b.collection('c').put('x', ['q']);
    await sync(a, b);
    expect(b.status().conflicts).toBe(1);
    await b.collection('c').configure({ kind: 'record', policy: 'merge', merge: 'union' });
    await b.settled();
    expect((await allConflicts(b)).length).toBe(0);
    expect(b.status().conflicts).toBe(0);
  });

  // Regression (review) (doc: "Switching to LWW takes effect at once: reads stop showing its conflicts"):
  // Replica.view() for a record never consults the policy; only the background reduction
  // hides the siblings, so a read right after configure still shows them, and
  // status().conflicts still counts them, while conflicts() lists nothing.
  it('switching to lww: a read right after configure shows no conflict', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('n').put('x', 1);
    await b.collection('n').put('x', 2);
    await syncAll([a, b]);
    await a.collection('n').configure({ kind: 'record', policy: 'lww' });
    expect((await a.collection('n').get('x'))?.conflicts).toEqual([]);
    // The count follows once the background recount is done.
    await a.settled();
    expect(a.status().conflicts).toBe((await allConflicts(a)).length);
  });
});

describe('If-Match on maps', () => {
  // Regression (review): Replica.checkBasis only refuses a version that does not cover the current entries.
  // A map remove (and a map/counter/set DELETE) leaves no entry, only a dot in the context, so
  // a version read before it still "covers" everything and the write succeeds: the removal
  // is silently undone (a lost update; records refuse this with 409, their delete leaving a
  // tombstone).
  it('a PUT with a version read before a field was removed is refused with conflict', async () => {
    const a = await open('a');
    await a.collection('m').configure({ kind: 'map', policy: 'keep' });
    const { version } = await a.collection('m').put('d', { x: 1, y: 2 });
    await a.collection('m').patch('d', [{ op: 'remove', path: '/y' }]);
    await expectCode(a.collection('m').put('d', { x: 1, y: 2, z: 3 }, { version }), 'conflict');
    expect((await a.collection('m').get('d'))?.value).toEqual({ x: 1 });
  });

  it('a PUT with a version read before the map was deleted is refused with conflict', async () => {
    const a = await open('a');
    await a.collection('m').configure({ kind: 'map', policy: 'keep' });
    const { version } = await a.collection('m').put('d', { x: 1 });
    await a.collection('m').delete('d');
    await expectCode(a.collection('m').put('d', { x: 3 }, { version }), 'conflict');
    expect(await a.collection('m').get('d')).toBeNull();
  });

  it('records refuse the same (pinned)', async () => {
    const a = await open('a');
    const { version } = await a.collection('r').put('d', { x: 1 });
    await a.collection('r').delete('d');
    await expectCode(a.collection('r').put('d', { x: 3 }, { version }), 'conflict');
  });
});

describe('merge write-back', () => {
  // Regression (review): resolveByMerge walks view.conflicts, which also holds "a value met an object" entries
  // (view.ts build, fields.size > 0), and writes {op: 'set', path, value: merged} there: a set
  // removes everything below the path, so a field written concurrently inside the object
  // (/addr/city) is dropped at every replica by a background write nobody made. Before the
  // write-back the view showed the object, as under keep.
  it('a merge write-back does not drop fields written concurrently below the merged path', async () => {
    const [a, b, c] = [await open('a'), await open('b'), await open('c')];
    await a.collection('m').configure({ kind: 'map', policy: 'merge', merge: 'union' });
    await syncAll([a, b, c]);
    await a.collection('m').patch('d', [{ op: 'set', path: '/addr', value: 'x' }]);
    await c.collection('m').patch('d', [{ op: 'set', path: '/addr', value: 'y' }]);
    await b.collection('m').patch('d', [{ op: 'set', path: '/addr/city', value: 'Paris' }]);
    await sync(c, b);
    await sync(b, a);
    expect((await a.collection('m').get('d'))?.value).toEqual({ addr: { city: 'Paris' } });
    await syncAll([a, b, c]);
    for (const db of [a, b, c]) {
      expect((await db.collection('m').get('d'))?.value).toEqual({ addr: { city: 'Paris' } });
    }
  });

  // Regression (review): for a record, view() calls the merge function only when there are distinct losers,
  // so identical concurrent values read as the value itself; but resolveByMerge writes back
  // merge(all live values). With a non-idempotent function (sum) the read value changes when
  // the write-back arrives: 5 at first, then 10. (Map fields call the merge even for equal
  // values, so the same data reads 10 in a map: the two kinds disagree too.)
  it('identical concurrent values: the value read before the write-back is the one written back', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('c').configure({ kind: 'record', policy: 'merge', merge: 'sum' });
    await syncAll([a, b]);
    await a.collection('c').put('x', 5);
    await b.collection('c').put('x', 5);
    await sync(a, b);
    await b.settled(); // b is not the resolver
    const before = (await b.collection('c').get('x'))?.value;
    await syncAll([a, b]);
    expect((await b.collection('c').get('x'))?.value).toBe(before);
  });
});

// ---------------------------------------------------------------------------------------------
// Behaviour that held

describe('pinned behaviour', () => {
  it('JSON pointer edge cases: empty keys, "/" and "~" in keys, round trip through PUT', async () => {
    const [a, b] = [await open('a'), await open('b')];
    await a.collection('m').configure({ kind: 'map', policy: 'keep' });
    await syncAll([a, b]);
    const value = { '': 1, 'a/b': { '~': 2, '': { '': 3 } }, '~1': 'x', __proto__x: 4 };
    await a.collection('m').put('d', value);
    await syncAll([a, b]);
    expect((await b.collection('m').get('d'))?.value).toEqual(value);
    await b.collection('m').patch('d', [{ op: 'set', path: '/', value: 'root-empty' }]);
    await a.collection('m').patch('d', [{ op: 'set', path: '/a~1b/~0', value: 5 }]);
    await b.collection('m').patch('d', [{ op: 'set', path: '/a~1b//', value: 6 }]);
    await syncAll([a, b]);
    const doc = await a.collection('m').get('d');
    expect(doc?.value).toEqual({ '': 'root-empty', 'a/b': { '~': 5, '': { '': 6 } }, '~1': 'x', __proto__x: 4 });
    expect(doc?.conflicts).toEqual([]);
    expect(a.status().digest).toBe(b.status().digest);
    // Writing back what was read changes nothing visible.
    await a.collection('m').put('d', doc?.value as JsonValue);
    expect((await a.collection('m').get('d'))?.value).toEqual(doc?.value);
    await expectCode(a.collection('m').patch('d', [{ op: 'set', path: '/a~2', value: 1 }]), 'invalid_input');
    await expectCode(a.collection('m').patch('d', [{ op: 'set', path: 'a', value: 1 }]), 'invalid_input');
  });

  it('a field named __proto__ stays a field', async () => {
    const a = await open('a');
    await a.collection('m').configure({ kind: 'map', policy: 'keep' });
    await a.collection('m').patch('d', [{ op: 'set', path: '/__proto__', value: { polluted: true } }]);
    const v = (await a.collection('m').get('d'))?.value as Record<string, unknown>;
    expect(Object.hasOwn(v, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });

  it('set elements that are objects, arrays, numbers and strings, from three replicas', async () => {
    const dbs = [await open('a'), await open('b'), await open('c')];
    await dbs[0]?.collection('s').configure({ kind: 'set', policy: 'keep' });
    await syncAll(dbs);
    const [a, b, c] = dbs as [Database, Database, Database];
    await a.collection('s').addToSet('d', { b: [1, { y: 2, x: 1 }], a: null });
    await b.collection('s').addToSet('d', { a: null, b: [1, { x: 1, y: 2 }] });
    await c.collection('s').addToSet('d', 1);
    await c.collection('s').addToSet('d', '1');
    await c.collection('s').addToSet('d', 1.0);
    await a.collection('s').addToSet('d', [2, 1]);
    await b.collection('s').addToSet('d', 1e21);
    await syncAll(dbs);
    const v = (await a.collection('s').get('d'))?.value as JsonValue[];
    expect(v).toHaveLength(5);
    for (const db of dbs) expect((await db.collection('s').get('d'))?.value).toEqual(v);
    await c.collection('s').removeFromSet('d', { b: [1, { y: 2, x: 1 }], a: null });
    await c.collection('s').removeFromSet('d', 'not there');
    await syncAll(dbs);
    expect((await b.collection('s').get('d'))?.value).toHaveLength(4);
    expect(new Set(dbs.map((d) => d.status().digest)).size).toBe(1);
  });

  it('huge increments: refused with invalid_input when a total would overflow, nothing written', async () => {
    const a = await open('a');
    await a.collection('n').configure({ kind: 'counter', policy: 'keep' });
    await a.collection('n').increment('x', Number.MAX_SAFE_INTEGER);
    const before = a.status();
    await expectCode(a.collection('n').increment('x', 1), 'invalid_input');
    await expectCode(a.collection('n').increment('x', 2 ** 60), 'invalid_input');
    await expectCode(a.collection('n').increment('x', Number.NaN), 'invalid_input');
    await expectCode(a.collection('n').increment('x', Infinity), 'invalid_input');
    expect(a.status()).toEqual(before);
    await a.collection('n').increment('x', -Number.MAX_SAFE_INTEGER);
    expect((await a.collection('n').get('x'))?.value).toBe(0);
  });

  it('bad input is refused with a DbError and changes nothing', async () => {
    const a = await open('a');
    await a.collection('m').configure({ kind: 'map', policy: 'keep', fields: { '/n': { type: 'counter' } } });
    await a.collection('m').put('d', { t: 'x', n: 1 });
    const before = a.status();
    const bad: unknown[] = [
      null,
      [],
      [null],
      [{ op: 'set', path: '/t' }],
      [{ op: 'set', path: '/t', value: undefined }],
      [{ op: 'set', path: '/t', value: () => 1 }],
      [{ op: 'set', path: '/t', value: Number.NaN }],
      [{ op: 'increment', path: '/t', by: 1 }],
      [{ op: 'increment', path: '/n', by: '1' }],
      [{ op: 'set', path: '/t/x', value: 1 }],
      [{ op: 'set', path: '', value: {} }],
      [{ op: 'add-to-set', path: '/n', value: 1 }],
      [{ op: 'set', path: '/z', value: 1, extra: 1 }],
      [{ op: 'move', path: '/t' }],
    ];
    for (const ops of bad) await expectCode(a.collection('m').patch('d', ops as never), 'invalid_input');
    await expectCode(a.collection('m').put('d', { n: 'text' }), 'invalid_input');
    await expectCode(a.collection('m').put('d', [1]), 'invalid_input');
    await expectCode(
      a.collection('m').patch('d', [{ op: 'set', path: '/t', value: 1 }], { version: 'junk' }),
      'bad_version',
    );
    expect(a.status()).toEqual(before);
  });

  it('a batch mixing records and patches that fails late writes nothing', async () => {
    const a = await open('a');
    await a.collection('m').configure({ kind: 'map', policy: 'keep' });
    await a.collection('m').put('d', { t: 'text' });
    const { version } = await a.collection('r').put('r1', 1);
    await a.collection('r').put('r1', 2);
    const before = a.status();
    // Fails in the transaction (the patch does not fit what the document holds).
    await expectCode(
      a.batch([
        { type: 'put', collection: 'r', id: 'r2', value: 'new' },
        { type: 'patch', collection: 'm', id: 'e', ops: [{ op: 'set', path: '/x', value: 1 }] },
        { type: 'patch', collection: 'm', id: 'd', ops: [{ op: 'increment', path: '/t', by: 1 }] },
      ]),
      'invalid_input',
    );
    // Fails on a stale version, after a patch.
    await expectCode(
      a.batch([
        { type: 'patch', collection: 'm', id: 'd', ops: [{ op: 'set', path: '/y', value: 1 }] },
        { type: 'put', collection: 'r', id: 'r1', value: 3, version },
      ]),
      'conflict',
    );
    expect(a.status()).toEqual(before);
    expect(await a.collection('r').get('r2')).toBeNull();
    expect(await a.collection('m').get('e')).toBeNull();
    expect((await a.collection('m').get('d'))?.value).toEqual({ t: 'text' });
  });

  it('If-Match: a version of another document is refused, a deleted map can be recreated', async () => {
    const a = await open('a');
    await a.collection('m').configure({ kind: 'map', policy: 'keep' });
    const { version } = await a.collection('m').put('d', { x: 1 });
    await expectCode(a.collection('m').put('e', { x: 2 }, { version }), 'bad_version');
    await a.collection('m').delete('d', { version });
    expect(await a.collection('m').get('d')).toBeNull();
    await expectCode(a.collection('m').delete('d'), 'not_found');
    await a.collection('m').put('d', { x: 3 }, { ifAbsent: true });
    expect(a.status().docs).toBe(1);
  });

  it('a merge collection with three replicas writes back a bounded number of times', async () => {
    const dbs = [await open('a'), await open('b'), await open('c')];
    await dbs[2]?.collection('g').configure({ kind: 'record', policy: 'merge', merge: 'union' });
    await syncAll(dbs);
    for (let round = 0; round < 3; round++) {
      for (const [i, db] of dbs.entries()) await db.collection('g').put('x', [`r${round}-${i}`]);
      await sync(dbs[2] as Database, dbs[1] as Database);
      await sync(dbs[1] as Database, dbs[0] as Database);
      await syncAll(dbs);
    }
    const views = await Promise.all(dbs.map((d) => d.collection('g').get('x')));
    for (const v of views) expect(v?.value).toEqual(views[0]?.value);
    expect(new Set(dbs.map((d) => d.status().digest)).size).toBe(1);
    expect(dbs.reduce((n, d) => n + d.replica.mergeWriteBacks, 0)).toBeLessThanOrEqual(9);
  });
});

// ---------------------------------------------------------------------------------------------
// The property: random operations at three replicas, random partial syncs, then a full exchange.

type Op =
  | { t: 'put'; at: number; c: string; id: string; v: JsonValue }
  | { t: 'del'; at: number; c: string; id: string }
  | { t: 'patch'; at: number; c: string; id: string; ops: unknown[] }
  | { t: 'resolve'; at: number; c: string; id: string }
  | { t: 'sync'; from: number; to: number };

const IDS = ['a', 'b'];
const KEYS = ['x', 'y', '', 'a/b'];
const esc = (k: string): string => k.replace(/~/g, '~0').replace(/\//g, '~1');
const scalar = fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom('u', 'v', null, true));
const value: fc.Arbitrary<JsonValue> = fc.oneof(
  scalar,
  fc.dictionary(fc.constantFrom(...KEYS), scalar, { maxKeys: 2 }),
  fc.constant({}),
);
const path = fc.oneof(
  fc.constantFrom(...KEYS).map((k) => `/${esc(k)}`),
  fc.tuple(fc.constantFrom(...KEYS), fc.constantFrom(...KEYS)).map(([k, l]) => `/${esc(k)}/${esc(l)}`),
);
const mapOp = fc.oneof(
  fc.record({ op: fc.constant('set'), path, value }),
  fc.record({ op: fc.constant('remove'), path }),
  fc.record({ op: fc.constant('increment'), path, by: fc.integer({ min: -2, max: 3 }) }),
  fc.record({ op: fc.constantFrom('add-to-set', 'remove-from-set'), path, value: scalar }),
);
const at = fc.integer({ min: 0, max: 2 });
const id = fc.constantFrom(...IDS);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('put' as const), at, c: fc.constantFrom('r', 'l', 'g', 'm'), id, v: value }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('del' as const), at, c: fc.constantFrom('r', 'l', 'g', 'm', 'n', 's'), id }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      t: fc.constant('patch' as const),
      at,
      c: fc.constant('m'),
      id,
      ops: fc.array(mapOp, { minLength: 1, maxLength: 3 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('patch' as const),
      at,
      c: fc.constant('n'),
      id,
      ops: fc.integer({ min: -3, max: 3 }).map((by) => [{ op: 'increment', path: '', by }]),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      t: fc.constant('patch' as const),
      at,
      c: fc.constant('s'),
      id,
      ops: fc
        .tuple(fc.constantFrom('add-to-set', 'remove-from-set'), scalar)
        .map(([op, v]) => [{ op, path: '', value: v }]),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('resolve' as const), at, c: fc.constantFrom('r', 'm'), id }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('sync' as const), from: at, to: at }) },
);

const EXPECTED = new Set(['invalid_input', 'not_found', 'conflict']);

async function run(db: Database, op: Exclude<Op, { t: 'sync' }>): Promise<void> {
  const c = db.collection(op.c);
  try {
    if (op.t === 'put') await c.put(op.id, op.c === 'g' ? [String(JSON.stringify(op.v))] : op.v);
    else if (op.t === 'del') await c.delete(op.id);
    else if (op.t === 'patch') await c.patch(op.id, op.ops as never);
    else {
      // Write back what was read, with its version: should resolve every conflict shown.
      const doc = await c.get(op.id);
      if (doc !== null) await c.put(op.id, doc.value, { version: doc.version });
    }
  } catch (e) {
    if (!(e instanceof DbError) || !EXPECTED.has(e.code)) throw e;
  }
}

async function snapshot(db: Database): Promise<unknown> {
  const docs: Record<string, unknown> = {};
  let live = 0;
  for (const c of ['r', 'l', 'g', 'm', 'n', 's']) {
    for (const i of IDS) {
      const d = await db.collection(c).get(i);
      if (d !== null) live++;
      docs[`${c}/${i}`] =
        d === null
          ? null
          : { value: d.value, version: d.version, conflicts: d.conflicts.map((x) => [x.path, x.value, x.version]) };
    }
    const listed = (await db.collection(c).list()).results.length;
    expect(listed).toBe(IDS.filter((i) => docs[`${c}/${i}`] !== null).length);
  }
  const s = db.status();
  const listed = await allConflicts(db);
  // Counts kept by commits agree with what reads show.
  expect(s.docs).toBe(live);
  expect(s.conflicts).toBe(listed.length);
  const shown = Object.entries(docs)
    .filter(([, d]) => d !== null && (d as { conflicts: unknown[] }).conflicts.length > 0)
    .map(([k]) => k)
    .sort();
  expect(listed).toEqual(shown);
  return { docs, digest: s.digest, count: s.docs, conflicts: s.conflicts, listed };
}

describe('property: three replicas converge', () => {
  it('random writes, deletes, patches and partial syncs end in one state everywhere', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 5, maxLength: 40, size: 'max' }), async (ops) => {
        const dbs = [await open('a'), await open('b'), await open('c')];
        try {
          const [a] = dbs as [Database];
          await a.collection('l').configure({ kind: 'record', policy: 'lww' });
          await a.collection('g').configure({ kind: 'record', policy: 'merge', merge: 'union' });
          await a.collection('m').configure({ kind: 'map', policy: 'keep', fields: { '/x': { policy: 'lww' } } });
          await a.collection('n').configure({ kind: 'counter', policy: 'keep' });
          await a.collection('s').configure({ kind: 'set', policy: 'keep' });
          await syncAll(dbs);
          for (const op of ops) {
            if (op.t === 'sync') {
              if (op.from !== op.to) await sync(dbs[op.from] as Database, dbs[op.to] as Database);
            } else await run(dbs[op.at] as Database, op);
          }
          await syncAll(dbs);
          const snaps = [];
          for (const db of dbs) snaps.push(await snapshot(db));
          if (process.env['REVIEW_STATS'] !== undefined) {
            const s0 = snaps[0] as { count: number; conflicts: number };
            console.log(
              `docs=${s0.count} conflicts=${s0.conflicts} wb=${dbs.reduce((n, d) => n + d.replica.mergeWriteBacks, 0)}`,
            );
          }
          expect(snaps[1]).toEqual(snaps[0]);
          expect(snaps[2]).toEqual(snaps[0]);
        } finally {
          for (const db of opened.splice(0)) await db.close();
        }
      }),
      { numRuns: Number(process.env['REVIEW_RUNS'] ?? 60) },
    );
  }, 120_000);
});

const SETTINGS: Record<string, unknown[]> = {
  r: [{ policy: 'keep' }, { policy: 'merge', merge: 'union' }, { kind: 'map', policy: 'keep' }],
  m: [
    { kind: 'map', policy: 'keep', fields: { '/x': { policy: 'lww' } } },
    { kind: 'map', policy: 'keep' },
    { kind: 'map', policy: 'merge', merge: 'union' },
  ],
};
type CfgOp = { t: 'cfg'; at: number; c: 'r' | 'm'; k: number };
const cfgArb: fc.Arbitrary<CfgOp> = fc.record({
  t: fc.constant('cfg' as const),
  at,
  c: fc.constantFrom('r' as const, 'm' as const),
  k: fc.integer({ min: 0, max: 2 }),
});

describe('property: three replicas converge while settings change (no switch to lww)', () => {
  it('random writes and settings changes end in one state everywhere', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof({ weight: 8, arbitrary: opArb }, { weight: 1, arbitrary: cfgArb }), {
          minLength: 5,
          maxLength: 40,
          size: 'max',
        }),
        async (ops) => {
          const dbs = [await open('a'), await open('b'), await open('c')];
          try {
            const [a] = dbs as [Database];
            await a.collection('l').configure({ kind: 'record', policy: 'lww' });
            await a.collection('g').configure({ kind: 'record', policy: 'merge', merge: 'union' });
            await a.collection('m').configure({ kind: 'map', policy: 'keep', fields: { '/x': { policy: 'lww' } } });
            await a.collection('n').configure({ kind: 'counter', policy: 'keep' });
            await a.collection('s').configure({ kind: 'set', policy: 'keep' });
            await syncAll(dbs);
            for (const op of ops) {
              if (op.t === 'sync') {
                if (op.from !== op.to) await sync(dbs[op.from] as Database, dbs[op.to] as Database);
              } else if (op.t === 'cfg') {
                await (dbs[op.at] as Database).collection(op.c).configure(SETTINGS[op.c]?.[op.k] as never);
              } else await run(dbs[op.at] as Database, op);
            }
            await syncAll(dbs);
            const snaps = [];
            for (const db of dbs) snaps.push(await snapshot(db));
            expect(snaps[1]).toEqual(snaps[0]);
            expect(snaps[2]).toEqual(snaps[0]);
          } finally {
            for (const db of opened.splice(0)) await db.close();
          }
        },
      ),
      { numRuns: Number(process.env['REVIEW_RUNS'] ?? 60) },
    );
  }, 120_000);
});
