/**
 * Random workloads on 3 to 6 in-process replicas in every topology, with changes delivered
 * late, reordered and duplicated (bundles), or streamed by sessions over links that are cut
 * and restored. After a final heal every replica must hold the same state (equal digests),
 * and every replica must only ever have recorded changes that move a document strictly up
 * the lattice: nothing recorded twice, no loops, no update before the write it modified.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { joinRecords, decodeRecord, encodeRecord, bytesEqual } from '../core/index.js';
import type { Policy } from '../core/index.js';
import { SeededRandom, seededEnv } from '../env/index.js';
import { openMemoryStorage } from '../storage/memory/index.js';
import { ManualNetwork } from '../transport/memory/index.js';
import { RecordingStorage } from '../../test/support/recording-storage.js';
import { topologies } from '../../test/support/topology.js';
import type { Link, TopologyName } from '../../test/support/topology.js';
import { isDbError } from '../shared/errors.js';
import { Replica } from './replica.js';
import type { WriteOp } from './replica.js';
import { SessionDriver } from './session-driver.js';

const COLLECTIONS: Record<string, Policy> = { keep: 'keep', lww: 'lww' };

interface Cluster {
  replicas: Replica[];
  storages: RecordingStorage[];
  links: Link[];
  rng: SeededRandom;
}

async function makeCluster(seed: number, n: number, topology: TopologyName): Promise<Cluster> {
  const rng = new SeededRandom(seed);
  const replicas: Replica[] = [];
  const storages: RecordingStorage[] = [];
  for (let i = 0; i < n; i++) {
    const storage = new RecordingStorage(openMemoryStorage());
    const env = seededEnv(seed * 31 + i);
    env.clock.ms += rng.int(5000); // skewed clocks
    storages.push(storage);
    replicas.push(await Replica.open({ id: `r${i}`, storage, env, collections: { lww: { policy: 'lww' } } }));
  }
  return { replicas, storages, links: topologies[topology](n), rng };
}

/** One random client operation at a random replica; conflicts and not-found are expected outcomes. */
async function randomWrite(c: Cluster): Promise<void> {
  const { rng } = c;
  const r = rng.pick(c.replicas);
  const collection = rng.pick(Object.keys(COLLECTIONS));
  const key = () => `k${rng.int(6)}`;
  const op = async (id: string): Promise<WriteOp> => {
    const useVersion = rng.next() < 0.4;
    // Clients sometimes read at one leader and write at another with that version.
    const reader = rng.next() < 0.3 ? rng.pick(c.replicas) : r;
    const doc = useVersion ? await reader.get(collection, id) : null;
    const version = doc?.version;
    const base =
      rng.next() < 0.2
        ? { type: 'delete' as const, collection, id }
        : { type: 'put' as const, collection, id, value: { n: rng.int(1000), by: r.id } };
    return version === undefined ? base : { ...base, version };
  };
  try {
    if (rng.next() < 0.2) {
      const ids = [...new Set([key(), key(), key()])];
      await r.write(await Promise.all(ids.map(op)));
    } else {
      await r.write([await op(key())]);
    }
  } catch (e) {
    if (!isDbError(e, 'conflict') && !isDbError(e, 'not_found')) throw e;
  }
}

function checkMonotone(c: Cluster): void {
  c.storages.forEach((s, i) => {
    const last = new Map<string, Uint8Array>();
    // A document may be put again unchanged only to keep an atomic change whole (moved to the
    // seq of the change's new part): in a commit that also records a real change.
    const changedIn = new Set<number>();
    const again: { key: string; commit: number }[] = [];
    for (const put of s.puts) {
      const k = `${put.collection}/${put.id}`;
      const prev = last.get(k);
      if (prev !== undefined && bytesEqual(prev, put.state)) again.push({ key: k, commit: put.commit });
      else changedIn.add(put.commit);
      if (prev !== undefined) {
        const policy = COLLECTIONS[put.collection] as Policy;
        const joined = encodeRecord(joinRecords(decodeRecord(prev), decodeRecord(put.state), policy));
        if (!bytesEqual(joined, put.state)) {
          throw new Error(`replica r${i} moved ${k} to a state that does not follow the previous one`);
        }
      }
      last.set(k, put.state);
    }
    for (const a of again) {
      if (!changedIn.has(a.commit)) throw new Error(`replica r${i} recorded ${a.key} again without a change`);
    }
  });
}

async function expectConverged(c: Cluster): Promise<void> {
  const digests = c.replicas.map((r) => r.status().digest);
  expect(new Set(digests).size, `digests: ${digests.join(' ')}`).toBe(1);
  for (const coll of Object.keys(COLLECTIONS)) {
    for (let k = 0; k < 6; k++) {
      const views = await Promise.all(c.replicas.map((r) => r.get(coll, `k${k}`)));
      const values = views.map((v) => JSON.stringify(v === null ? null : [v.value, v.conflicts.length]));
      expect(new Set(values).size).toBe(1);
      if (coll === 'lww') for (const v of views) expect(v?.conflicts ?? []).toEqual([]);
    }
  }
  checkMonotone(c);
}

/** Syncs along every link, both ways, until a full round records nothing. */
async function healByBundles(c: Cluster): Promise<void> {
  for (let round = 0; round < 20; round++) {
    let recorded = 0;
    for (const [i, j] of c.links) {
      for (const [from, to] of [
        [i, j],
        [j, i],
      ] as const) {
        const a = c.replicas[from] as Replica;
        const b = c.replicas[to] as Replica;
        const batch = await a.readBatch(0, Number.MAX_SAFE_INTEGER, b.context());
        recorded += (await b.applyRemote(batch.changes, { context: batch.context })).recorded;
      }
    }
    if (recorded === 0) return;
  }
  throw new Error('no fixpoint after 20 rounds');
}

const configs = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  n: fc.integer({ min: 3, max: 6 }),
  topology: fc.constantFrom<TopologyName>('all-to-all', 'ring', 'star', 'line'),
});

describe('random workloads converge', () => {
  it('when changes travel as bundles delivered late, reordered and duplicated', async () => {
    await fc.assert(
      fc.asyncProperty(configs, async ({ seed, n, topology }) => {
        const c = await makeCluster(seed, n, topology);
        // In-flight bundles per directed link; delivery picks any of them, and may keep it for a duplicate.
        const inflight: {
          to: number;
          bytes: { changes: Parameters<Replica['applyRemote']>[0]; context: Uint8Array | null };
        }[] = [];
        for (let step = 0; step < 120; step++) {
          const roll = c.rng.next();
          if (roll < 0.5) await randomWrite(c);
          else if (roll < 0.75) {
            const [i, j] = c.rng.pick(c.links);
            const [from, to] = c.rng.next() < 0.5 ? [i, j] : [j, i];
            const a = c.replicas[from] as Replica;
            // A stale view of the receiver, as a real sender has, makes more duplicates.
            const view = c.rng.next() < 0.5 ? (c.replicas[to] as Replica).context() : undefined;
            const batch = await a.readBatch(
              0,
              Number.MAX_SAFE_INTEGER,
              view ?? new (a.context().constructor as new () => ReturnType<Replica['context']>)(),
            );
            inflight.push({ to, bytes: { changes: batch.changes, context: batch.context } });
          } else if (inflight.length > 0) {
            const at = c.rng.int(inflight.length);
            const m = inflight[at] as (typeof inflight)[number];
            if (c.rng.next() < 0.7) inflight.splice(at, 1);
            await (c.replicas[m.to] as Replica).applyRemote(m.bytes.changes, { context: m.bytes.context });
          }
        }
        // Late deliveries after everything else, in reverse order.
        for (const m of inflight.reverse())
          await (c.replicas[m.to] as Replica).applyRemote(m.bytes.changes, { context: m.bytes.context });
        await healByBundles(c);
        await expectConverged(c);
      }),
      { numRuns: 40 },
    );
  });

  it('when sessions stream over links that are cut and restored', async () => {
    await fc.assert(
      fc.asyncProperty(configs, async ({ seed, n, topology }) => {
        const c = await makeCluster(seed, n, topology);
        const net = new ManualNetwork();
        const sessions = new Map<number, [SessionDriver, SessionDriver]>();
        const env = seededEnv(seed);
        const connect = (li: number) => {
          const [i, j] = c.links[li] as Link;
          const [x, y] = net.pair();
          const opts = { env, window: 1 + c.rng.int(3), batchDocs: 1 + c.rng.int(5) };
          const s1 = new SessionDriver(c.replicas[i] as Replica, x, opts);
          const s2 = new SessionDriver(c.replicas[j] as Replica, y, opts);
          s1.start();
          s2.start();
          sessions.set(li, [s1, s2]);
        };
        c.links.forEach((_, li) => connect(li));
        const settle = () => new Promise((r) => setTimeout(r, 0));
        for (let step = 0; step < 150; step++) {
          const roll = c.rng.next();
          if (roll < 0.35) await randomWrite(c);
          else if (roll < 0.9) {
            for (let k = c.rng.int(4); k >= 0; k--) net.deliverOne();
            await settle();
          } else {
            const li = c.rng.int(c.links.length);
            const pair = sessions.get(li);
            if (pair !== undefined && pair[0].info().phase !== 'closed') pair[0].close('cut', 'link cut by the test');
            else connect(li);
          }
        }
        // Heal: every link up, deliver until nothing moves.
        c.links.forEach((_, li) => {
          const pair = sessions.get(li);
          if (pair === undefined || pair[0].info().phase === 'closed' || pair[1].info().phase === 'closed') {
            pair?.[0].close();
            pair?.[1].close();
            connect(li);
          }
        });
        for (let quiet = 0; quiet < 3; ) {
          if (net.deliverOne()) quiet = 0;
          else quiet++;
          await settle();
        }
        for (const [s1, s2] of sessions.values()) {
          expect(s1.info().phase).toBe('open');
          expect(s1.idle && s2.idle).toBe(true);
        }
        await expectConverged(c);
        // Quiescence: nothing is sent once everyone holds everything.
        expect(net.pending).toBe(0);
      }),
      { numRuns: 30 },
    );
  });
});
