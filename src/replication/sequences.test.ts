import { describe, expect, it } from 'vitest';
import { seededEnv } from '../env/index.js';
import { openMemoryStorage } from '../storage/memory/index.js';
import type { Storage } from '../storage/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { Replica } from './replica.js';

type Env = ReturnType<typeof seededEnv>;

/** A storage whose close() is a no-op, to reopen the same memory store in one test. */
function keepOpen(s: Storage): Storage {
  return { name: s.name, read: (fn) => s.read(fn), write: (fn) => s.write(fn), close: async () => {} };
}

async function sync(from: Replica, to: Replica): Promise<void> {
  const batch = await from.readBatch(0, Number.MAX_SAFE_INTEGER, to.context());
  if (batch.changes.length > 0) await to.applyRemote(batch.changes, { context: batch.context });
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Replicates every replica to every other one, and lets background work (grants) run, until quiet. */
async function pump(replicas: readonly Replica[]): Promise<void> {
  for (let round = 0; round < 4; round++) {
    await turn();
    for (const r of replicas) await r.settled();
    for (const from of replicas) for (const to of replicas) if (from !== to) await sync(from, to);
  }
}

/** Awaits `p` while the replicas in `connected` replicate among themselves. */
async function driven<T>(p: Promise<T>, connected: readonly Replica[]): Promise<T> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  for (let i = 0; i < 50 && !done; i++) await pump(connected);
  return p;
}

async function rejection(p: Promise<unknown>): Promise<DbError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(DbError);
  return e as DbError;
}

/** Replicas a (the allocator), b and c, all on one manual clock, the sequence known everywhere. */
async function cluster(
  blockSize: number,
): Promise<{ env: Env; stores: Storage[]; replicas: Replica[]; reopen: (i: number) => Promise<Replica> }> {
  const env = seededEnv(5);
  const ids = ['a', 'b', 'c'];
  const stores = ids.map(() => keepOpen(openMemoryStorage()));
  const replicas = await Promise.all(ids.map((id, i) => Replica.open({ id, env, storage: stores[i] as Storage })));
  await (replicas[0] as Replica).configureSequence('invoice', { allocator: 'a', blockSize });
  await pump(replicas);
  const reopen = async (i: number): Promise<Replica> =>
    Replica.open({ id: ids[i] as string, env, storage: stores[i] as Storage });
  return { env, stores, replicas, reopen };
}

async function grantsDoc(
  r: Replica,
  id: string,
): Promise<{ next: number; grants: Record<string, [number, number, number][]> }> {
  const state = await r.getState('_sequences', id);
  const value = state?.siblings[0]?.value;
  if (value === undefined || value === null) throw new Error(`no document _sequences/${id}`);
  return JSON.parse(new TextDecoder().decode(value)) as {
    next: number;
    grants: Record<string, [number, number, number][]>;
  };
}

function expectDistinct(numbers: readonly number[]): void {
  const dup = numbers.filter((n, i) => numbers.indexOf(n) !== i);
  expect(dup, `numbers handed out twice: ${dup.join(', ')}`).toEqual([]);
}

describe('sequences', () => {
  it('hands out increasing numbers at the allocator without waiting for anyone', async () => {
    const { replicas } = await cluster(10);
    const a = replicas[0] as Replica;
    const got: number[] = [];
    for (let i = 0; i < 25; i++) got.push(await a.nextval('invoice'));
    expect(got).toEqual(Array.from({ length: 25 }, (_, i) => i + 1));
    const status = await a.sequenceStatus('invoice');
    expect(status).toMatchObject({ name: 'invoice', allocator: 'a', blockSize: 10, last: 25, requested: 3 });
    expect(status.remaining).toBe(5);
    expect(status.blocks).toEqual([[26, 30]]);
  });

  it('hands out distinct numbers at every leader, concurrently', async () => {
    const { replicas } = await cluster(5);
    const calls = replicas.flatMap((r) => Array.from({ length: 12 }, () => r.nextval('invoice')));
    const got = await driven(Promise.all(calls), replicas);
    expectDistinct(got);
    expect(got).toHaveLength(36);
  });

  it('keeps a partitioned leader to its blocks, fails it clearly when they run out, and resumes on reconnect', async () => {
    const { env, replicas } = await cluster(5);
    const [a, b, c] = replicas as [Replica, Replica, Replica];
    const got: number[] = [];
    got.push(...(await driven(Promise.all([a, b, c].map((r) => r.nextval('invoice'))), replicas)));
    // c is cut off: a and b go on, c spends what it holds (its block, and a prefetched one if it had asked).
    const held = (await c.sequenceStatus('invoice')).remaining;
    let spent = 0;
    let exhausted: DbError | undefined;
    for (let i = 0; i < 40 && exhausted === undefined; i++) {
      got.push(await driven(a.nextval('invoice'), [a, b]));
      got.push(await driven(b.nextval('invoice'), [a, b]));
      if ((await c.sequenceStatus('invoice')).remaining > 0) {
        got.push(await c.nextval('invoice', { waitMs: 500 }));
        spent++;
        continue;
      }
      const p = c.nextval('invoice', { waitMs: 500 });
      let settled = false;
      p.then(
        () => (settled = true),
        () => (settled = true),
      );
      // Its wait, in virtual time: the clock moves past waitMs until the timer fires.
      for (let t = 0; t < 20 && !settled; t++) {
        await turn();
        env.clock.advance(500);
        env.timers.runDue();
      }
      exhausted = await rejection(p);
    }
    expect(exhausted?.code).toBe(ErrorCode.sequenceExhausted);
    expect(spent).toBe(held);
    expect(held).toBeGreaterThan(0);
    expect(exhausted?.message).toMatch(/sequence invoice: leader c has used every number granted to it/);
    expect(exhausted?.message).toMatch(/allocator a granted no new block within 500 ms/);
    expect(exhausted?.message).toMatch(/no number is reused/);
    // It held about two blocks: its numbers before the partition plus those it spent cut off.
    expect((await c.sequenceStatus('invoice')).remaining).toBe(0);
    expectDistinct(got);
    // Reconnected, it gets a new block and goes on.
    const after = await driven(c.nextval('invoice'), replicas);
    got.push(after);
    got.push(...(await driven(Promise.all(replicas.map((r) => r.nextval('invoice'))), replicas)));
    expectDistinct(got);
    expect(after).toBeGreaterThan(Math.max(...got.filter((n) => n !== after).slice(0, 3)));
  });

  it('continues above the last number it returned after a restart or a crash, never reusing one', async () => {
    const { replicas, reopen } = await cluster(10);
    const got: number[] = [];
    for (let i = 0; i < 3; i++) got.push(await driven((replicas[1] as Replica).nextval('invoice'), replicas));
    await (replicas[1] as Replica).close();
    replicas[1] = await reopen(1);
    for (let i = 0; i < 3; i++) got.push(await driven((replicas[1] as Replica).nextval('invoice'), replicas));
    // A crash: the process is gone without closing anything; the store stays.
    const crashed = await reopen(1);
    replicas[1] = crashed;
    for (let i = 0; i < 12; i++) got.push(await driven(crashed.nextval('invoice'), replicas));
    expectDistinct(got);
    expect(got).toEqual([...got].sort((x, y) => x - y));
  });

  it('a new allocator grants above every grant it has seen', async () => {
    const { replicas } = await cluster(5);
    const [a, b, c] = replicas as [Replica, Replica, Replica];
    const got: number[] = [];
    got.push(
      ...(await driven(Promise.all(replicas.flatMap((r) => [r.nextval('invoice'), r.nextval('invoice')])), replicas)),
    );
    await a.configureSequence('invoice', { allocator: 'b', blockSize: 5 });
    await pump(replicas);
    for (let i = 0; i < 8; i++) {
      got.push(...(await driven(Promise.all([a, b, c].map((r) => r.nextval('invoice'))), replicas)));
    }
    expectDistinct(got);
    const status = await c.sequenceStatus('invoice');
    expect(status.allocator).toBe('b');
    // a no longer grants, and b granted only above what a had granted.
    const aGrants = await grantsDoc(c, 'invoice/grants/a');
    const bGrants = await grantsDoc(c, 'invoice/grants/b');
    const bFroms = Object.values(bGrants.grants).flatMap((blocks) => blocks.map((blk) => blk[1]));
    expect(bFroms.length).toBeGreaterThan(0);
    expect(Math.min(...bFroms)).toBeGreaterThanOrEqual(aGrants.next);
  });

  it('hands over only at the allocator, with its last grants, even to a leader cut off from them', async () => {
    const { replicas } = await cluster(5);
    const [a, b, c] = replicas as [Replica, Replica, Replica];
    // b is cut off while a grants c (and itself) block after block: b never sees those grants.
    const got: number[] = [];
    for (let i = 0; i < 12; i++)
      got.push(...(await driven(Promise.all([a.nextval('invoice'), c.nextval('invoice')]), [a, c])));
    // At b, a handover would not know what a granted: refused, and nothing is written.
    const seq = b.seq;
    const refused = await rejection(b.configureSequence('invoice', { allocator: 'b', blockSize: 5 }));
    expect(refused.code).toBe(ErrorCode.conflict);
    expect(refused.message).toMatch(/hand over at a/);
    expect(b.seq).toBe(seq);
    // At a: the settings and a's grants travel as one change, through c, to b.
    await a.configureSequence('invoice', { allocator: 'b', blockSize: 5 });
    await pump([a, c]);
    await pump([c, b]);
    const aGrants = await grantsDoc(b, 'invoice/grants/a');
    for (let i = 0; i < 6; i++)
      got.push(...(await driven(Promise.all(replicas.map((r) => r.nextval('invoice'))), replicas)));
    expectDistinct(got);
    const bGrants = await grantsDoc(b, 'invoice/grants/b');
    const bFroms = Object.values(bGrants.grants).flatMap((blocks) => blocks.map((blk) => blk[1]));
    expect(Math.min(...bFroms)).toBeGreaterThanOrEqual(aGrants.next);
    // An allocator gone for good: forced elsewhere, with a start above anything it granted.
    expect((await rejection(c.configureSequence('invoice', { allocator: 'c', force: true }))).code).toBe(
      ErrorCode.invalidInput,
    );
    await c.configureSequence('invoice', { allocator: 'c', blockSize: 5, start: 10_000, force: true });
    await pump(replicas);
    for (let i = 0; i < 12; i++)
      got.push(...(await driven(Promise.all(replicas.map((r) => r.nextval('invoice'))), replicas)));
    expectDistinct(got);
    expect(Math.max(...got)).toBeGreaterThanOrEqual(10_000);
  });

  it('refuses unknown sequences, bad names and bad settings', async () => {
    const env = seededEnv(1);
    const r = await Replica.open({ id: 'a', env, storage: openMemoryStorage() });
    expect((await rejection(r.nextval('nope'))).code).toBe(ErrorCode.notFound);
    expect((await rejection(r.sequenceStatus('nope'))).code).toBe(ErrorCode.notFound);
    expect((await rejection(r.nextval('bad name'))).code).toBe(ErrorCode.invalidName);
    expect((await rejection(r.configureSequence('_x', { allocator: 'a' }))).code).toBe(ErrorCode.invalidName);
    const bad: unknown[] = [
      {},
      { allocator: '' },
      { allocator: 'a', blockSize: 0 },
      { allocator: 'a', blockSize: 1.5 },
      { allocator: 'a', start: -1 },
      { allocator: 'a', extra: 1 },
      null,
    ];
    for (const o of bad) {
      expect((await rejection(r.configureSequence('s', o as never))).code, JSON.stringify(o)).toMatch(
        /invalid_input|invalid_name/,
      );
    }
    await r.configureSequence('s', { allocator: 'a' });
    expect((await rejection(r.nextval('s', { waitMs: -1 }))).code).toBe(ErrorCode.invalidInput);
  });

  it('keeps its documents out of the user counts and conflicts, and _config works as before', async () => {
    const env = seededEnv(1);
    const a = await Replica.open({ id: 'a', env, storage: openMemoryStorage() });
    const b = await Replica.open({ id: 'b', env, storage: openMemoryStorage() });
    await a.configure('notes', { kind: 'record', policy: 'lww' });
    // Two leaders configure the sequence concurrently: last writer wins, no conflict shows.
    await a.configureSequence('s', { allocator: 'a', blockSize: 3 });
    env.clock.advance(1);
    await b.configureSequence('s', { allocator: 'b', blockSize: 4 });
    await pump([a, b]);
    await driven(Promise.all([a.nextval('s'), b.nextval('s')]), [a, b]);
    await pump([a, b]);
    for (const r of [a, b]) {
      expect(r.status()).toMatchObject({ docs: 0, conflicts: 0 });
      expect((await r.conflicts()).results).toEqual([]);
      expect(r.collectionConfig('notes')).toMatchObject({ policy: 'lww', replicated: true });
      expect(await r.sequenceStatus('s')).toMatchObject({ allocator: 'b', blockSize: 4 });
    }
    expect(a.status().digest).toBe(b.status().digest);
  });

  it('a waiting next() fails when the replica closes', async () => {
    const env = seededEnv(1);
    const b = await Replica.open({ id: 'b', env, storage: openMemoryStorage() });
    await b.configureSequence('s', { allocator: 'elsewhere' });
    const p = b.nextval('s');
    await turn();
    await b.close();
    expect((await rejection(p)).code).toBe(ErrorCode.closed);
  });
});
