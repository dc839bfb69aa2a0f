/**
 * Ring and star of four real leaders (DESIGN.md G5): every write at any leader reaches every
 * leader, forwarded through the others; a change already known joins to nothing and is not
 * recorded again, so feeds stop growing once everyone has everything (no loops).
 *
 * The bound on feeds: a leader's seq grows by one per change it records, local or remote, and
 * each distinct change is recorded at most once per leader. With W writes in all (here each a
 * single document), every leader's seq is therefore at most W, and at least the number of
 * distinct documents it holds (each was recorded once).
 */
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { Cluster, converged, getOk, listAll, peersLive, putOk, until } from './harness.js';
import type { Leader, LeaderSpec, Status } from './harness.js';

const IDS = ['n0', 'n1', 'n2', 'n3'];

const topologies: Record<string, LeaderSpec[]> = {
  // Each dials the next: n0 -> n1 -> n2 -> n3 -> n0.
  'ring of four': IDS.map((id, i) => ({ id, peers: [IDS[(i + 1) % IDS.length] as string] })),
  // n1, n2 and n3 dial the hub n0.
  'star of four': IDS.map((id, i) => (i === 0 ? { id } : { id, peers: ['n0'] })),
};

/** Neighbours of each leader in the topology (both directions). */
function neighbours(specs: readonly LeaderSpec[], id: string): string[] {
  const out = new Set<string>();
  for (const s of specs) {
    for (const p of s.peers ?? []) {
      if (s.id === id) out.add(p);
      if (p === id) out.add(s.id);
    }
  }
  return [...out];
}

const clusters: Cluster[] = [];
afterAll(async () => {
  await Promise.all(clusters.map((c) => c.teardown()));
});

describe.each(Object.entries(topologies))('%s', (name, specs) => {
  it('delivers every write to every leader, records each once, then goes quiet', async () => {
    const cluster = new Cluster(name.replace(/ /g, '-'));
    clusters.push(cluster);
    onTestFailed(() => console.error(cluster.logs()));
    try {
      await run(cluster, specs);
    } finally {
      // Four processes fewer before the next topology starts (2 cores in CI).
      await cluster.teardown();
    }
  });
});

async function run(cluster: Cluster, specs: LeaderSpec[]): Promise<void> {
  const leaders = await cluster.start(specs);
  await Promise.all(leaders.map((l) => peersLive(l, neighbours(specs, l.options.id))));

  let writes = 0;
  // Round 1: five new documents at every leader, written concurrently.
  const PER_LEADER = 5;
  await Promise.all(
    leaders.map(async (l) => {
      for (let i = 0; i < PER_LEADER; i++)
        await putOk(l, 'docs', `${l.options.id}-${i}`, { at: l.options.id, i, v: 1 });
    }),
  );
  writes += leaders.length * PER_LEADER;
  const docCount = writes;
  for (const l of leaders) {
    await until(`${l.options.id} to hold every document`, async () => (await listAll(l, 'docs')).size === docCount);
  }
  await converged(leaders);

  // Round 2: each leader updates two documents written by the leader across from it,
  // with the version it read: causal overwrites that travel the whole topology.
  await Promise.all(
    leaders.map(async (l, k) => {
      const other = leaders[(k + 2) % leaders.length] as Leader;
      for (let i = 0; i < 2; i++) {
        const id = `${other.options.id}-${i}`;
        const d = await getOk(l, 'docs', id);
        await putOk(l, 'docs', id, { at: other.options.id, i, v: 2, by: l.options.id }, { 'if-match': d.version });
      }
    }),
  );
  writes += leaders.length * 2;

  const statuses = await converged(leaders);
  expect(new Set(statuses.map((s) => s.digest)).size).toBe(1);
  for (const l of leaders) {
    const docs = await listAll(l, 'docs');
    expect(docs.size).toBe(docCount);
    leaders.forEach((o, k) => {
      const updater = leaders[(k + 2) % leaders.length] as Leader;
      for (let i = 0; i < PER_LEADER; i++) {
        const d = docs.get(`${o.options.id}-${i}`);
        const expected = i < 2 ? { at: o.options.id, i, v: 2, by: updater.options.id } : { at: o.options.id, i, v: 1 };
        expect(d?.value, `${o.options.id}-${i} at ${l.options.id}`).toEqual(expected);
        expect(d?.conflicts, `${o.options.id}-${i} at ${l.options.id}`).toEqual([]);
      }
    });
  }

  // No change recorded twice: seq is at most the number of writes made anywhere.
  for (const s of statuses) {
    expect(s.docs, s.replica).toBe(docCount);
    expect(s.seq, `seq of ${s.replica}`).toBeLessThanOrEqual(writes);
    expect(s.seq, `seq of ${s.replica}`).toBeGreaterThanOrEqual(docCount);
  }

  // Quiescence: two seconds later, no feed has grown and nothing changed.
  const before = await Promise.all(leaders.map((l) => l.status()));
  await new Promise((r) => setTimeout(r, 2000));
  const after = await Promise.all(leaders.map((l) => l.status()));
  const brief = (xs: Status[]): unknown => xs.map((s) => ({ replica: s.replica, seq: s.seq, digest: s.digest }));
  expect(brief(after)).toEqual(brief(before));
  expect(brief(after)).toEqual(brief(statuses));
}
