/**
 * Partition and heal through fault-injecting TCP proxies (DESIGN.md G1, G2, G3): three
 * leaders whose every link goes through a proxy. All links are partitioned (a black hole: the
 * sessions stall and time out on heartbeats); every leader keeps acknowledging local writes
 * to the same keys; the partition heals; after convergence every leader shows the same
 * winner and the same conflicts, and every acknowledged write is the winner or a conflict.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { startFaultProxy } from '../support/fault-proxy.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { Cluster, converged, getOk, listAll, peersLive, putOk, siblingValues, until } from './harness.js';
import type { Doc, Leader } from './harness.js';

const cluster = new Cluster('partition');
let a: Leader;
let b: Leader;
let c: Leader;
let all: Leader[];
const proxies: FaultProxy[] = [];

const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4'];

beforeAll(async () => {
  const ports = await cluster.ports(['a', 'b', 'c']);
  const proxyTo = async (id: string): Promise<FaultProxy> => {
    const p = await startFaultProxy({ target: { host: '127.0.0.1', port: ports.get(id) as number } });
    proxies.push(p);
    cluster.onTeardown(() => p.close());
    return p;
  };
  // b dials a, c dials a and b: each link through its own proxy.
  const ba = await proxyTo('a');
  const ca = await proxyTo('a');
  const cb = await proxyTo('b');
  a = cluster.define({ id: 'a' }, ports.get('a') as number);
  b = cluster.define({ id: 'b', peers: [ba.url()] }, ports.get('b') as number);
  c = cluster.define({ id: 'c', peers: [ca.url(), cb.url()] }, ports.get('c') as number);
  all = [a, b, c];
  await Promise.all(all.map((l) => l.start()));
  await Promise.all([peersLive(a, ['b', 'c']), peersLive(b, ['a', 'c']), peersLive(c, ['a', 'b'])]);
});

afterAll(async () => {
  await cluster.teardown();
});

/** True when none of the leader's links is live (the partition was noticed). */
async function noLiveLink(l: Leader): Promise<boolean> {
  const s = await l.status();
  return s.peers.every((p) => p.state !== 'live');
}

describe('a full partition, local writes on every side, then heal', () => {
  it('keeps every acknowledged write and shows the same winner and conflicts everywhere', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    // A common ancestor for every key, seen everywhere.
    for (const k of [...KEYS, 'del']) await putOk(a, 'kv', k, { base: k });
    await converged(all);

    for (const p of proxies) p.partition();
    // The stalled sessions time out on heartbeats; wait until every leader has noticed.
    await until('every leader to notice the partition', async () =>
      (await Promise.all(all.map(noLiveLink))).every(Boolean),
    );
    // The dialling side says why: its session timed out on heartbeats (or, redialling into
    // the black hole, its handshake did).
    for (const l of [b, c]) {
      for (const p of (await l.status()).peers)
        expect(p.lastError, `${l.options.id} -> ${p.url}`).toMatch(/timeout|timed out/);
    }

    // G1: every leader acknowledges writes to the same keys while cut off from all others.
    const acked = new Map<string, string[]>();
    await Promise.all(
      all.map(async (l) => {
        for (const k of KEYS) {
          const value = { key: k, by: l.options.id };
          await putOk(l, 'kv', k, value);
          acked.set(k, [...(acked.get(k) ?? []), JSON.stringify(value)]);
        }
        // Documents only one side has, too.
        for (let i = 0; i < 5; i++) await putOk(l, 'solo', `${l.options.id}-${i}`, { i });
      }),
    );
    // A delete on one side, an update on another.
    const delAt = await fetch(`${a.url}/db/kv/del`, { method: 'DELETE' });
    expect(delAt.status).toBe(200);
    await putOk(b, 'kv', 'del', { key: 'del', by: 'b' });

    // Still partitioned: each leader shows its own write and nothing of the others'.
    for (const l of all) {
      for (const k of KEYS) {
        const d = await getOk(l, 'kv', k);
        expect(d.value).toEqual({ key: k, by: l.options.id });
        expect(d.conflicts).toEqual([]);
      }
      expect((await l.status()).docs).toBe(KEYS.length + 5 + (l === a ? 0 : 1));
    }

    for (const p of proxies) p.heal();
    const statuses = await converged(all, 40_000);
    expect(new Set(statuses.map((s) => s.digest)).size).toBe(1);
    for (const s of statuses) expect(s.docs).toBe(KEYS.length + 1 + 15);

    for (const k of KEYS) {
      const docs = await Promise.all(all.map((l) => getOk(l, 'kv', k)));
      const first = docs[0] as Doc;
      for (const d of docs) {
        expect(d.value, `winner of ${k}`).toEqual(first.value);
        expect(d.version, `version of ${k}`).toBe(first.version);
        expect(siblingValues(d), `siblings of ${k}`).toEqual(siblingValues(first));
      }
      // The three concurrent writes are all kept: the winner and two conflicts, nothing else.
      expect(first.conflicts).toHaveLength(2);
      expect(siblingValues(first)).toEqual([...(acked.get(k) ?? [])].sort());
    }

    // The update beats the concurrent delete, which is kept beside it as a tombstone.
    const dels = await Promise.all(all.map((l) => getOk(l, 'kv', 'del')));
    for (const d of dels) {
      expect(d.value).toEqual({ key: 'del', by: 'b' });
      expect(d.conflicts.map((x) => x.deleted)).toEqual([true]);
      expect(d.version).toBe(dels[0]?.version);
    }
    for (const l of all) {
      for (const o of all) {
        for (let i = 0; i < 5; i++) expect((await getOk(l, 'solo', `${o.options.id}-${i}`)).value).toEqual({ i });
      }
    }
  });

  it('replicates normally again after the heal, and resolving a conflict clears it everywhere', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await Promise.all([peersLive(a, ['b', 'c']), peersLive(b, ['a', 'c']), peersLive(c, ['a', 'b'])]);
    const seen = await getOk(c, 'kv', 'k0');
    await putOk(c, 'kv', 'k0', { key: 'k0', resolved: true }, { 'if-match': seen.version });
    await putOk(b, 'kv', 'after-heal', { ok: true });
    await converged(all);
    for (const l of all) {
      const d = await getOk(l, 'kv', 'k0');
      expect(d.value).toEqual({ key: 'k0', resolved: true });
      expect(d.conflicts).toEqual([]);
      expect((await getOk(l, 'kv', 'after-heal')).value).toEqual({ ok: true });
    }
  });

  it('converges after flaky, slow links under a write load, with no acknowledged write lost', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    let seed = 42;
    const random = (): number => {
      // A small LCG: the drops are reproducible from the seed.
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (const p of proxies) {
      p.setLatency({ ms: 5, jitterMs: 15 });
      p.dropConnectionsRandomly({ probabilityPerSecond: 1.5, random });
    }
    const ended = (): number => all.reduce((k, l) => k + l.output.split('replication session ended').length - 1, 0);
    const endedBefore = ended();
    const acked = new Map<string, unknown>();
    const deadline = Date.now() + 2500;
    await Promise.all(
      all.map(async (l) => {
        for (let n = 0; Date.now() < deadline; n++) {
          const id = `${l.options.id}-${n}`;
          const value = { at: l.options.id, n };
          await putOk(l, 'flaky', id, value);
          acked.set(id, value);
          // Everyone also keeps overwriting a few shared keys.
          if (n % 10 === 0) await putOk(l, 'flaky-shared', `s${n % 3}`, { by: l.options.id, n });
        }
      }),
    );
    for (const p of proxies) {
      p.stopDropping();
      p.setLatency({ ms: 0 });
    }
    // The links did break under the load (dialling leaders log each session that ends).
    expect(ended()).toBeGreaterThan(endedBefore);
    const statuses = await converged(all, 40_000);
    expect(new Set(statuses.map((s) => s.digest)).size).toBe(1);
    for (const l of all) {
      const docs = await listAll(l, 'flaky');
      const missing = [...acked.keys()].filter((id) => docs.get(id) === undefined);
      expect(missing, `missing at ${l.options.id}`).toEqual([]);
      for (const [id, value] of acked) expect(docs.get(id)?.value).toEqual(value);
    }
    for (const k of ['s0', 's1', 's2']) {
      const docs = await Promise.all(all.map((l) => getOk(l, 'flaky-shared', k)));
      for (const d of docs) {
        expect(d.value).toEqual(docs[0]?.value);
        expect(siblingValues(d)).toEqual(siblingValues(docs[0] as Doc));
      }
    }
  });
});
