/**
 * A laptop in an ad hoc topology: an SDK replica on SQLite (the Node entry) that meets two real
 * `polyarch serve` leaders, eu and us, one at a time with `db.sync(url)` and `close()`. When eu
 * and us are not peered, the laptop is their only link: it carries what each wrote to the
 * other, and a concurrent update of one document at eu and at the laptop ends as the same
 * conflict everywhere. When they are peered (a ring laptop–eu–us–laptop) every visit leaves
 * all three equal. Every wait is on a condition with a deadline.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { openReplica } from '../../src/index.js';
import type { Database, DocView } from '../../src/index.js';
import { Cluster, converged, getOk, listAll, peersLive, putOk, siblingValues, until } from './harness.js';
import type { Doc, Leader } from './harness.js';

/** Client heartbeats as fast as the leaders' (FAST_HEARTBEAT), and a short backoff. */
const FAST = { heartbeatMs: 300, deadAfterMs: 1200, minBackoffMs: 50, maxBackoffMs: 500, connectTimeoutMs: 1000 };

const LAPTOP = 'laptop';

/**
 * One visit: sync with `leader` until both hold the same documents (same digest), then close
 * the handle and wait until the leader has seen the laptop leave, so nothing flows between
 * visits except through the laptop's own store.
 */
async function visit(db: Database, leader: Leader): Promise<void> {
  const id = leader.options.id;
  const handle = db.sync(leader.url, FAST);
  try {
    await until(`the laptop to be online with ${id}`, () => handle.status === 'online', 30_000);
    expect(handle.peer).toBe(id);
    await sameDigest(db, leader);
  } finally {
    await handle.close();
  }
  expect(handle.status).toBe('closed');
  await until(
    `${id} to drop the laptop`,
    async () => (await leader.status()).peers.every((p) => p.id !== LAPTOP),
    30_000,
  );
}

/** Waits until the laptop and `leader` show the same digest. */
async function sameDigest(db: Database, leader: Leader): Promise<void> {
  await until(
    `the laptop and ${leader.options.id} to hold the same documents`,
    async () => (await leader.status()).digest === db.status().digest,
    30_000,
    100,
  );
}

/** The sibling values of a document at the laptop (winner and conflicts), as sorted JSON strings. */
async function laptopSiblings(db: Database, collection: string, id: string): Promise<string[]> {
  const doc = await laptopDoc(db, collection, id);
  return [doc.value, ...doc.conflicts.filter((c) => !c.deleted).map((c) => c.value)]
    .map((v) => JSON.stringify(v))
    .sort();
}

async function laptopDoc(db: Database, collection: string, id: string): Promise<DocView> {
  const doc = await db.collection(collection).get(id);
  if (doc === null) throw new Error(`${collection}/${id} is absent at the laptop`);
  return doc;
}

/** The ids of a collection's live documents at the laptop, sorted. */
async function laptopIds(db: Database, collection: string): Promise<string[]> {
  const ids: string[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await db.collection(collection).list({ limit: 1000, ...(after === undefined ? {} : { after }) });
    ids.push(...page.results.map((d) => d.id));
    if (page.next === null || page.results.length === 0) return ids.sort();
    after = page.next;
  }
}

async function leaderIds(l: Leader, collection: string): Promise<string[]> {
  return [...(await listAll(l, collection)).keys()].sort();
}

/**
 * eu, us and the laptop hold the same documents (one digest), list the same ids, and show the
 * same conflict on `plan`: the same siblings and the same winner.
 */
async function expectAllEqual(db: Database, eu: Leader, us: Leader, ids: readonly string[]): Promise<void> {
  const [euStatus, usStatus] = await Promise.all([eu.status(), us.status()]);
  const laptop = db.status();
  expect(euStatus.digest).toBe(laptop.digest);
  expect(usStatus.digest).toBe(laptop.digest);
  expect(euStatus.docs).toBe(laptop.docs);
  expect(usStatus.docs).toBe(laptop.docs);
  expect(euStatus.conflicts).toBe(1);
  expect(usStatus.conflicts).toBe(1);
  expect(laptop.conflicts).toBe(1);
  const sorted = [...ids].sort();
  expect(await laptopIds(db, 'notes')).toEqual(sorted);
  expect(await leaderIds(eu, 'notes')).toEqual(sorted);
  expect(await leaderIds(us, 'notes')).toEqual(sorted);

  const both = [JSON.stringify({ v: 'eu' }), JSON.stringify({ v: 'laptop' })].sort();
  const atEu: Doc = await getOk(eu, 'notes', 'plan');
  const atUs: Doc = await getOk(us, 'notes', 'plan');
  const atLaptop = await laptopDoc(db, 'notes', 'plan');
  expect(siblingValues(atEu)).toEqual(both);
  expect(siblingValues(atUs)).toEqual(both);
  expect(await laptopSiblings(db, 'notes', 'plan')).toEqual(both);
  // The winner rule is deterministic: every replica shows the same value on top.
  expect(atUs.value).toEqual(atEu.value);
  expect(atLaptop.value).toEqual(atEu.value);
}

describe('a laptop meeting two unpeered leaders in turn carries changes between them', () => {
  const cluster = new Cluster('laptop-unpeered');
  let eu: Leader;
  let us: Leader;
  let db: Database;

  beforeAll(async () => {
    [eu, us] = (await cluster.start([{ id: 'eu' }, { id: 'us' }])) as [Leader, Leader];
    db = await openReplica({ id: LAPTOP, storage: path.join(cluster.dir, 'laptop.db') });
    cluster.onTeardown(() => db.close());
  });

  afterAll(async () => {
    await cluster.teardown();
  });

  it('morning at eu: each side gets what the other wrote, and us hears nothing of it', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await putOk(eu, 'notes', 'eu-0', { from: 'eu', n: 0 });
    await putOk(us, 'notes', 'us-0', { from: 'us', n: 0 });
    await db.collection('notes').put('laptop-0', { from: 'laptop', n: 0 });
    await db.collection('notes').put('plan', { v: 'draft' });

    await visit(db, eu);

    expect((await laptopDoc(db, 'notes', 'eu-0')).value).toEqual({ from: 'eu', n: 0 });
    expect((await getOk(eu, 'notes', 'laptop-0')).value).toEqual({ from: 'laptop', n: 0 });
    expect((await getOk(eu, 'notes', 'plan')).value).toEqual({ v: 'draft' });
    expect(await db.collection('notes').get('us-0')).toBeNull();
    expect(await us.get('notes', 'laptop-0')).toBeNull();
    expect(await us.get('notes', 'eu-0')).toBeNull();
  });

  it('evening at us: the laptop brings eu its morning and its commute, and takes us home', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    // While apart: eu and the laptop both update `plan` (neither sees the other's), and each
    // side writes something new.
    await putOk(eu, 'notes', 'plan', { v: 'eu' });
    await putOk(eu, 'notes', 'eu-1', { from: 'eu', n: 1 });
    await db.collection('notes').put('plan', { v: 'laptop' });
    await db.collection('notes').put('laptop-1', { from: 'laptop', n: 1 });
    await putOk(us, 'notes', 'us-1', { from: 'us', n: 1 });

    await visit(db, us);

    // Carried from eu by the laptop: eu's morning document, not what eu wrote after the laptop left.
    expect((await getOk(us, 'notes', 'eu-0')).value).toEqual({ from: 'eu', n: 0 });
    expect(await us.get('notes', 'eu-1')).toBeNull();
    expect((await getOk(us, 'notes', 'laptop-1')).value).toEqual({ from: 'laptop', n: 1 });
    expect(siblingValues(await getOk(us, 'notes', 'plan'))).toEqual([JSON.stringify({ v: 'laptop' })]);
    expect((await laptopDoc(db, 'notes', 'us-0')).value).toEqual({ from: 'us', n: 0 });
    expect((await laptopDoc(db, 'notes', 'us-1')).value).toEqual({ from: 'us', n: 1 });
    expect(await eu.get('notes', 'us-0')).toBeNull();
  });

  it('next morning at eu: us reaches eu through the laptop, and the concurrent updates show as one conflict', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await putOk(eu, 'notes', 'eu-2', { from: 'eu', n: 2 });
    await db.collection('notes').put('laptop-2', { from: 'laptop', n: 2 });

    await visit(db, eu);

    expect((await getOk(eu, 'notes', 'us-0')).value).toEqual({ from: 'us', n: 0 });
    expect((await getOk(eu, 'notes', 'us-1')).value).toEqual({ from: 'us', n: 1 });
    expect((await getOk(eu, 'notes', 'laptop-2')).value).toEqual({ from: 'laptop', n: 2 });
    expect((await laptopDoc(db, 'notes', 'eu-2')).value).toEqual({ from: 'eu', n: 2 });
    const both = [JSON.stringify({ v: 'eu' }), JSON.stringify({ v: 'laptop' })].sort();
    const atEu = await getOk(eu, 'notes', 'plan');
    expect(siblingValues(atEu)).toEqual(both);
    expect(await laptopSiblings(db, 'notes', 'plan')).toEqual(both);
    expect((await laptopDoc(db, 'notes', 'plan')).value).toEqual(atEu.value);
    // us has not met the laptop since: it still lacks what eu wrote after the first morning.
    expect(await us.get('notes', 'eu-2')).toBeNull();
  });

  it('evening at us again: eu, us and the laptop hold the same documents and the same conflict', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    // What eu wrote after the laptop's first visit can reach us only on its next visit there.
    await visit(db, us);

    await expectAllEqual(db, eu, us, [
      'eu-0',
      'eu-1',
      'eu-2',
      'us-0',
      'us-1',
      'laptop-0',
      'laptop-1',
      'laptop-2',
      'plan',
    ]);
    // A visit with nothing new records nothing: what the laptop got from eu is not sent back
    // as new (eu's vector covers it), so eu's feed does not grow.
    const before = (await eu.status()).seq;
    await visit(db, eu);
    expect((await eu.status()).seq).toBe(before);
    await expectAllEqual(db, eu, us, [
      'eu-0',
      'eu-1',
      'eu-2',
      'us-0',
      'us-1',
      'laptop-0',
      'laptop-1',
      'laptop-2',
      'plan',
    ]);
  });
});

describe('a laptop meeting two peered leaders (a ring laptop–eu–us–laptop)', () => {
  const cluster = new Cluster('laptop-peered');

  afterAll(async () => {
    await cluster.teardown();
  });

  it('converges after every visit: all three hold the same documents and the same conflict', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    const [eu, us] = (await cluster.start([{ id: 'eu', peers: ['us'] }, { id: 'us' }])) as [Leader, Leader];
    await Promise.all([peersLive(eu, ['us']), peersLive(us, ['eu'])]);
    const db = await openReplica({ id: LAPTOP, storage: path.join(cluster.dir, 'laptop.db') });
    cluster.onTeardown(() => db.close());

    /** After a visit the other leader catches up through the eu–us link too. */
    const allThreeEqual = async (): Promise<void> => {
      await converged([eu, us]);
      await sameDigest(db, eu);
      await sameDigest(db, us);
    };

    await putOk(eu, 'notes', 'eu-0', { from: 'eu', n: 0 });
    await putOk(us, 'notes', 'us-0', { from: 'us', n: 0 });
    await db.collection('notes').put('laptop-0', { from: 'laptop', n: 0 });
    await db.collection('notes').put('plan', { v: 'draft' });
    await visit(db, eu);
    await allThreeEqual();
    expect((await getOk(us, 'notes', 'laptop-0')).value).toEqual({ from: 'laptop', n: 0 });
    expect((await laptopDoc(db, 'notes', 'us-0')).value).toEqual({ from: 'us', n: 0 });

    // Apart: the same concurrent update as above, and new documents on every side.
    await putOk(eu, 'notes', 'plan', { v: 'eu' });
    await putOk(eu, 'notes', 'eu-1', { from: 'eu', n: 1 });
    await putOk(us, 'notes', 'us-1', { from: 'us', n: 1 });
    await db.collection('notes').put('plan', { v: 'laptop' });
    await db.collection('notes').put('laptop-1', { from: 'laptop', n: 1 });
    await visit(db, us);
    await allThreeEqual();

    await db.collection('notes').put('laptop-2', { from: 'laptop', n: 2 });
    await putOk(us, 'notes', 'us-2', { from: 'us', n: 2 });
    await visit(db, eu);
    await allThreeEqual();

    await expectAllEqual(db, eu, us, [
      'eu-0',
      'eu-1',
      'us-0',
      'us-1',
      'us-2',
      'laptop-0',
      'laptop-1',
      'laptop-2',
      'plan',
    ]);
  });
});
