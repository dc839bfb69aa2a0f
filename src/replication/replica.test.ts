import { describe, expect, it } from 'vitest';
import { seededEnv } from '../env/index.js';
import { openMemoryStorage } from '../storage/memory/index.js';
import type { Storage } from '../storage/index.js';
import { DbError } from '../shared/errors.js';
import { Replica } from './replica.js';
import type { ReplicaOptions } from './replica.js';

async function open(id: string, extra: Partial<ReplicaOptions> = {}): Promise<Replica> {
  return Replica.open({ id, storage: openMemoryStorage(), env: seededEnv(1), ...extra });
}

async function sync(from: Replica, to: Replica): Promise<number> {
  const batch = await from.readBatch(0, Number.MAX_SAFE_INTEGER, to.context());
  return (await to.applyRemote(batch.changes, { context: batch.context })).recorded;
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DbError);
  expect((err as DbError).code).toBe(code);
}

describe('local writes and reads', () => {
  it('reads back what it wrote, with a version and no conflicts', async () => {
    const r = await open('a');
    const w = await r.put('todos', 't1', { title: 'milk' });
    const doc = await r.get('todos', 't1');
    expect(doc).toMatchObject({ id: 't1', value: { title: 'milk' }, version: w.version, origin: 'a', conflicts: [] });
  });

  it('returns null for an absent or deleted document', async () => {
    const r = await open('a');
    expect(await r.get('todos', 'nope')).toBeNull();
    await r.put('todos', 't1', 1);
    await r.delete('todos', 't1');
    expect(await r.get('todos', 't1')).toBeNull();
  });

  it('refuses to delete a document that does not exist', async () => {
    const r = await open('a');
    await expectCode(r.delete('todos', 'ghost'), 'not_found');
  });

  it('accepts a write whose version is current and refuses a stale one with a conflict', async () => {
    const r = await open('a');
    const v1 = await r.put('c', 'k', 1);
    const v2 = await r.put('c', 'k', 2, { version: v1.version });
    await expectCode(r.put('c', 'k', 3, { version: v1.version }), 'conflict');
    expect((await r.get('c', 'k'))?.value).toBe(2);
    await r.put('c', 'k', 4, { version: v2.version });
    expect((await r.get('c', 'k'))?.value).toBe(4);
  });

  it('refuses a version token taken from another document', async () => {
    const r = await open('a');
    const v = await r.put('c', 'k1', 1);
    await r.put('c', 'k2', 1);
    await expectCode(r.put('c', 'k2', 2, { version: v.version }), 'bad_version');
  });

  it('refuses a corrupt version token and changes nothing', async () => {
    const r = await open('a');
    const v = await r.put('c', 'k', 1);
    const before = r.status();
    const corrupt = v.version.slice(0, -2) + (v.version.endsWith('A') ? 'BB' : 'AA');
    await expectCode(r.put('c', 'k', 2, { version: corrupt }), 'bad_version');
    expect(r.status()).toEqual(before);
  });

  it('refuses invalid names, non-JSON values and oversized documents', async () => {
    const r = await open('a', { limits: { docBytesMax: 100 } });
    await expectCode(r.put('bad name', 'k', 1), 'invalid_name');
    await expectCode(r.put('_config', 'k', 1), 'invalid_name');
    await expectCode(r.put('c', '_k', 1), 'invalid_name');
    await expectCode(r.put('c', '', 1), 'invalid_name');
    await expectCode(r.put('c', 'k', undefined), 'invalid_input');
    await expectCode(r.put('c', 'k', { n: NaN }), 'invalid_input');
    await expectCode(r.put('c', 'k', 'x'.repeat(200)), 'too_large');
    expect(r.status().seq).toBe(0);
  });

  it('writes a batch atomically: one bad operation applies nothing', async () => {
    const r = await open('a');
    await r.put('c', 'k', 1);
    const before = r.status();
    await expectCode(
      r.write([
        { type: 'put', collection: 'c', id: 'x', value: 1 },
        { type: 'put', collection: 'c', id: 'y', value: () => 1 },
      ]),
      'invalid_input',
    );
    const v = await r.get('c', 'k');
    await r.put('c', 'k', 2);
    await expectCode(
      r.write([
        { type: 'put', collection: 'c', id: 'x', value: 1 },
        { type: 'put', collection: 'c', id: 'k', value: 3, version: (v as { version: string }).version },
      ]),
      'conflict',
    );
    expect(await r.get('c', 'x')).toBeNull();
    expect(r.status().seq).toBe(before.seq + 1);
  });

  it('refuses a batch that names one document twice', async () => {
    const r = await open('a');
    await expectCode(
      r.write([
        { type: 'put', collection: 'c', id: 'x', value: 1 },
        { type: 'delete', collection: 'c', id: 'x' },
      ]),
      'invalid_input',
    );
  });

  it('gives a batch one seq, and each later change the next one', async () => {
    const r = await open('a');
    await r.write([
      { type: 'put', collection: 'c', id: 'x', value: 1 },
      { type: 'put', collection: 'c', id: 'y', value: 2 },
    ]);
    await r.put('c', 'z', 3);
    const feed = await r.changes();
    expect(feed.results.map((e) => [e.id, e.seq])).toEqual([
      ['x', 1],
      ['y', 1],
      ['z', 2],
    ]);
    expect(feed.last_seq).toBe(2);
  });

  it('lists a collection in id order, page by page, skipping deleted documents', async () => {
    const r = await open('a');
    for (const id of ['d', 'b', 'a', 'c', 'e']) await r.put('c', id, id);
    await r.delete('c', 'c');
    const p1 = await r.list('c', { limit: 2 });
    expect(p1.results.map((d) => d.id)).toEqual(['a', 'b']);
    const p2 = await r.list('c', { limit: 2, after: p1.next as string });
    expect(p2.results.map((d) => d.id)).toEqual(['d', 'e']);
    expect(p2.next).toBeNull();
  });

  it('notifies subscribers after each commit', async () => {
    const r = await open('a');
    const seen: string[] = [];
    const stop = r.subscribe((e) => seen.push(`${e.id}@${e.seq}:${e.origin}`));
    await r.put('c', 'x', 1);
    stop();
    await r.put('c', 'y', 1);
    expect(seen).toEqual(['x@1:local']);
  });

  it('keeps its id, counters and clock across a reopen of the same storage', async () => {
    const storage = openMemoryStorage();
    const env = seededEnv(3);
    const r1 = await Replica.open({ storage: keepOpen(storage), env });
    const id = r1.id;
    await r1.put('c', 'x', 1);
    const status = r1.status();
    env.clock.ms -= 100_000; // the wall clock went backwards meanwhile
    const r2 = await Replica.open({ storage, env });
    expect(r2.id).toBe(id);
    expect(r2.status()).toEqual(status);
    await r2.put('c', 'x', 2);
    const doc = await r2.get('c', 'x');
    expect(doc?.value).toBe(2);
    expect(doc?.conflicts).toEqual([]);
    await expect(Replica.open({ storage, env, id: 'other' })).rejects.toThrow(/belongs to replica/);
  });
});

describe('joining remote changes', () => {
  it('keeps concurrent writes as siblings and shows the same winner on both replicas', async () => {
    const a = await open('a');
    const b = await open('b');
    await a.put('c', 'k', 'from a');
    await b.put('c', 'k', 'from b');
    await sync(a, b);
    await sync(b, a);
    const da = await a.get('c', 'k');
    const db = await b.get('c', 'k');
    expect(da?.conflicts).toHaveLength(1);
    expect(da?.value).toEqual(db?.value);
    expect(a.status().digest).toBe(b.status().digest);
    expect(a.status().conflicts).toBe(1);
  });

  it('resolves siblings with a write that carries the version it read', async () => {
    const a = await open('a');
    const b = await open('b');
    await a.put('c', 'k', 1);
    await b.put('c', 'k', 2);
    await sync(a, b);
    const doc = await b.get('c', 'k');
    await b.put('c', 'k', 3, { version: doc?.version as string });
    await sync(b, a);
    expect(await a.get('c', 'k')).toMatchObject({ value: 3, conflicts: [] });
    expect(a.status().conflicts).toBe(0);
  });

  it('replaces exactly one sibling when written with that sibling version', async () => {
    const a = await open('a');
    const b = await open('b');
    await a.put('c', 'k', 1);
    await b.put('c', 'k', 2);
    await sync(a, b);
    const doc = await b.get('c', 'k');
    const loser = doc?.conflicts[0];
    await b.delete('c', 'k', { version: loser?.version as string });
    const after = await b.get('c', 'k');
    expect(after?.value).toBe(doc?.value);
    expect(after?.conflicts).toEqual([{ ...after?.conflicts[0], deleted: true, value: null }]);
  });

  it('lets a live sibling win over a concurrent delete', async () => {
    const a = await open('a');
    const b = await open('b');
    await a.put('c', 'k', 1);
    await sync(a, b);
    await a.delete('c', 'k');
    await b.put('c', 'k', 2);
    await sync(a, b);
    await sync(b, a);
    expect((await a.get('c', 'k'))?.value).toBe(2);
    expect((await a.get('c', 'k'))?.conflicts[0]?.deleted).toBe(true);
  });

  it('drops losers under lww and keeps them gone', async () => {
    const opts = { collections: { c: { policy: 'lww' as const } } };
    const envA = seededEnv(1);
    const envB = seededEnv(2);
    envB.clock.ms += 10;
    const a = await open('a', { ...opts, env: envA });
    const b = await open('b', { ...opts, env: envB });
    await a.put('c', 'k', 'older');
    await b.put('c', 'k', 'newer');
    await sync(a, b);
    await sync(b, a);
    expect(await a.get('c', 'k')).toMatchObject({ value: 'newer', conflicts: [] });
    expect(a.status().digest).toBe(b.status().digest);
  });

  it('shows a merge function of the siblings under the merge policy', async () => {
    const merge = (values: unknown[]) => [...new Set(values.flat() as string[])].sort();
    const opts = { collections: { carts: { policy: 'merge' as const, merge } } };
    const a = await open('a', opts);
    const b = await open('b', opts);
    await a.put('carts', 'u1', ['milk']);
    await b.put('carts', 'u1', ['eggs', 'milk']);
    await sync(a, b);
    await sync(b, a);
    expect((await a.get('carts', 'u1'))?.value).toEqual(['eggs', 'milk']);
    expect((await b.get('carts', 'u1'))?.value).toEqual(['eggs', 'milk']);
  });

  it('does not record a remote change that brings nothing new', async () => {
    const a = await open('a');
    const b = await open('b');
    await a.put('c', 'k', 1);
    expect(await sync(a, b)).toBe(1);
    const seq = b.seq;
    expect(await sync(a, b)).toBe(0);
    expect(await sync(b, a)).toBe(0);
    expect(b.seq).toBe(seq);
    expect(a.seq).toBe(1);
  });

  it('skips documents the peer already holds when reading a batch for it', async () => {
    const a = await open('a');
    const b = await open('b');
    await a.put('c', 'x', 1);
    await a.put('c', 'y', 1);
    await sync(a, b);
    await a.put('c', 'z', 1);
    const batch = await a.readBatch(0, 100, b.context());
    expect(batch.changes.flatMap((c) => c.docs.map((d) => d.id))).toEqual(['z']);
    expect(batch.toSeq).toBe(3);
    expect(batch.context).not.toBeNull();
  });

  it('ships an atomic batch as one change even after one of its documents moved on', async () => {
    const a = await open('a');
    await a.write([
      { type: 'put', collection: 'acct', id: 'x', value: 50 },
      { type: 'put', collection: 'acct', id: 'y', value: 150 },
    ]);
    await a.put('acct', 'x', 60);
    const b = await open('b');
    const first = await a.readBatch(0, 1, b.context());
    const ids = first.changes.map((c) => c.docs.map((d) => d.id).sort());
    expect(ids).toEqual([['x', 'y']]);
    expect(first.toSeq).toBe(2);
  });

  it('refuses a change from a peer whose clock is too far ahead, applying nothing', async () => {
    const envA = seededEnv(1);
    envA.clock.ms += 3_600_000;
    const a = await open('a', { env: envA });
    const b = await open('b', { maxSkewMs: 1000 });
    await a.put('c', 'k', 1);
    const batch = await a.readBatch(0, 100, b.context());
    await expectCode(b.applyRemote(batch.changes), 'clock_skew');
    expect(b.seq).toBe(0);
  });

  it('refuses malformed changes from a peer and applies nothing of the batch', async () => {
    const a = await open('a');
    const b = await open('b');
    await a.put('c', 'k', 1);
    const good = (await a.readBatch(0, 100, b.context())).changes;
    const goodDoc = good[0]?.docs[0] as { collection: string; id: string; state: Uint8Array };
    const bad = [
      { docs: [] },
      { docs: [{ ...goodDoc, id: '_bad' }] },
      { docs: [{ ...goodDoc, state: goodDoc.state.slice(0, -1) }] },
      { docs: [goodDoc, goodDoc] },
      { docs: [{ ...goodDoc, state: new Uint8Array([9, 9, 9]) }] },
    ];
    for (const change of bad) {
      await expectCode(b.applyRemote([...good, change]), 'protocol');
      expect(b.seq).toBe(0);
    }
  });
});

/** A storage whose close() is a no-op, to reopen the same memory store in one test. */
function keepOpen(s: Storage): Storage {
  return { name: s.name, read: (fn) => s.read(fn), write: (fn) => s.write(fn), close: async () => {} };
}

describe('the local feed', () => {
  it('never ends a page inside an atomic change', async () => {
    const r = await open('a');
    await r.put('c', 'a', 1);
    await r.write(['x', 'y', 'z'].map((id) => ({ type: 'put' as const, collection: 'c', id, value: 1 })));
    await r.put('c', 'b', 1);
    const p1 = await r.changes({ limit: 2 });
    expect(p1.results.map((e) => e.id)).toEqual(['a']);
    const p2 = await r.changes({ since: p1.last_seq, limit: 2 });
    expect(p2.results.map((e) => e.id)).toEqual(['x', 'y', 'z']);
    const p3 = await r.changes({ since: p2.last_seq, limit: 2 });
    expect(p3.results.map((e) => e.id)).toEqual(['b']);
  });
});

describe('last-writer-wins with versions read elsewhere (regression)', () => {
  it('stamps a write after the version it replaces, so every merge order shows it', async () => {
    const opts = { collections: { c: { policy: 'lww' as const } } };
    const envX = seededEnv(1);
    envX.clock.ms += 50_000; // X's clock runs ahead
    const x = await open('X', { ...opts, env: envX });
    const envT = seededEnv(2);
    envT.clock.ms += 10_000; // T's clock runs ahead of Y's, behind X's
    const t = await open('T', { ...opts, env: envT });
    const y = await open('Y', { ...opts, env: seededEnv(3) });
    const wx = await x.put('c', 'k', 'x');
    await t.put('c', 'k', 't');
    // A client read x at X and writes at Y, which has not received x: its version replaces x.
    await y.put('c', 'k', 'w', { version: wx.version });
    // Y sees t before x; T sees x before w: different orders of the same three writes.
    await sync(t, y);
    await sync(x, t);
    await sync(y, t);
    for (const [a, b] of [
      [x, t],
      [t, y],
      [y, x],
      [x, t],
      [t, y],
    ] as const) {
      await sync(a, b);
      await sync(b, a);
    }
    for (const r of [x, t, y]) expect(await r.get('c', 'k')).toMatchObject({ value: 'w', conflicts: [] });
    expect(new Set([x, t, y].map((r) => r.status().digest)).size).toBe(1);
  });
});

describe('create-only writes', () => {
  it('creates an absent or deleted document and refuses an existing one', async () => {
    const r = await open('a');
    await r.put('c', 'k', 1, { ifAbsent: true });
    await expectCode(r.put('c', 'k', 2, { ifAbsent: true }), 'precondition_failed');
    await r.delete('c', 'k');
    await r.put('c', 'k', 3, { ifAbsent: true });
    expect((await r.get('c', 'k'))?.value).toBe(3);
  });
});
