/**
 * Three real leaders all-to-all (DESIGN.md G2, G3, G5): eu dials nobody, us dials eu, ap dials
 * eu and us. Writes at every leader reach every other, digests become equal, and GET shows
 * the same winner and the same conflicts everywhere.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { Cluster, converged, getOk, listAll, peersLive, putOk, siblingValues, stopLeader, until } from './harness.js';
import type { Leader } from './harness.js';

const cluster = new Cluster('three');
let eu: Leader;
let us: Leader;
let ap: Leader;
let all: Leader[];

beforeAll(async () => {
  [eu, us, ap] = (await cluster.start([
    { id: 'eu' },
    { id: 'us', peers: ['eu'] },
    { id: 'ap', peers: ['eu', 'us'] },
  ])) as [Leader, Leader, Leader];
  all = [eu, us, ap];
});

afterAll(async () => {
  await cluster.teardown();
});

describe('three leaders all-to-all', () => {
  it('connects every pair, in the directions given', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    const [euStatus, usStatus, apStatus] = await Promise.all([
      peersLive(eu, ['us', 'ap']),
      peersLive(us, ['eu', 'ap']),
      peersLive(ap, ['eu', 'us']),
    ]);
    const links = (s: typeof euStatus): string[] => s.peers.map((p) => `${p.id ?? '?'}:${p.direction}`).sort();
    expect(links(euStatus)).toEqual(['ap:incoming', 'us:incoming']);
    expect(links(usStatus)).toEqual(['ap:incoming', 'eu:outgoing']);
    expect(links(apStatus)).toEqual(['eu:outgoing', 'us:outgoing']);
  });

  it('replicates writes made at every leader to every other', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    const PER_LEADER = 15;
    const expected = new Map<string, unknown>();
    await Promise.all(
      all.map(async (l) => {
        for (let i = 0; i < PER_LEADER; i++) {
          const id = `${l.options.id}-${i}`;
          const value = { from: l.options.id, i, tags: ['x', i % 3] };
          expected.set(id, value);
          await putOk(l, 'notes', id, value);
        }
      }),
    );
    for (const l of all) {
      await until(`${l.options.id} to hold every note`, async () => (await listAll(l, 'notes')).size === expected.size);
      const docs = await listAll(l, 'notes');
      for (const [id, value] of expected) {
        expect(docs.get(id)?.value, `${id} at ${l.options.id}`).toEqual(value);
        expect(docs.get(id)?.conflicts, `${id} at ${l.options.id}`).toEqual([]);
      }
    }
    const statuses = await converged(all);
    expect(new Set(statuses.map((s) => s.digest)).size).toBe(1);
    for (const s of statuses) expect(s.docs).toBe(expected.size);
  });

  it('shows one winner and the same conflicts everywhere after concurrent writes to one key', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    // Written at the same moment at every leader: whether they end up concurrent depends on
    // timing, but whatever happened, every leader must show the same thing.
    await Promise.all(all.map((l) => putOk(l, 'shared', 'k', { by: l.options.id })));
    const statuses = await converged(all);
    expect(new Set(statuses.map((s) => s.digest)).size).toBe(1);
    const docs = await Promise.all(all.map((l) => getOk(l, 'shared', 'k')));
    for (const d of docs) {
      expect(d.value).toEqual(docs[0]?.value);
      expect(d.version).toBe(docs[0]?.version);
      expect(siblingValues(d)).toEqual(siblingValues(docs[0] as typeof d));
    }
    // Resolve at ap with the version it read: the conflicts disappear everywhere.
    const seen = await getOk(ap, 'shared', 'k');
    await putOk(ap, 'shared', 'k', { resolved: true }, { 'if-match': seen.version });
    await converged(all);
    for (const l of all) {
      const d = await getOk(l, 'shared', 'k');
      expect(d.value).toEqual({ resolved: true });
      expect(d.conflicts).toEqual([]);
    }
  });

  it('carries an update made at one leader over a value written at another', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await putOk(eu, 'profiles', 'ada', { name: 'Ada', v: 1 });
    const first = await until('ap to see the profile', async () => (await ap.get('profiles', 'ada')) ?? undefined);
    await putOk(ap, 'profiles', 'ada', { name: 'Ada Lovelace', v: 2 }, { 'if-match': first.version });
    await until('eu to see the update', async () => {
      const d = await eu.get('profiles', 'ada');
      return d !== null && (d.value as { v: number }).v === 2 ? d : undefined;
    });
    const statuses = await converged(all);
    expect(new Set(statuses.map((s) => s.digest)).size).toBe(1);
    for (const l of all) {
      const d = await getOk(l, 'profiles', 'ada');
      expect(d.value).toEqual({ name: 'Ada Lovelace', v: 2 });
      expect(d.conflicts).toEqual([]);
    }
  });

  it('survives a leader stopped with SIGTERM: it exits 0, the others go on, it catches up on restart', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    expect(await stopLeader(ap)).toBe(0);
    await until('eu and us to drop their links to ap', async () => {
      const ss = await Promise.all([eu.status(), us.status()]);
      return ss.every((s) => s.peers.every((p) => p.id !== 'ap' || p.state !== 'live'));
    });
    await putOk(eu, 'later', 'one', { while: 'ap was down' });
    await putOk(us, 'later', 'two', { while: 'ap was down' });
    await converged([eu, us]);
    await ap.start();
    await peersLive(ap, ['eu', 'us']);
    const statuses = await converged(all);
    expect(new Set(statuses.map((s) => s.digest)).size).toBe(1);
    expect((await getOk(ap, 'later', 'one')).value).toEqual({ while: 'ap was down' });
    expect((await getOk(ap, 'later', 'two')).value).toEqual({ while: 'ap was down' });
    // And all three shut down cleanly.
    expect(await Promise.all(all.map((l) => stopLeader(l)))).toEqual([0, 0, 0]);
  });
});
