/**
 * The constraint feature's workload and checker, driven directly over in-memory replicas with
 * random exchanges (the simulator runs it under faults): a correct replica passes the check,
 * and a replica that lists a wrong winner is caught.
 */
import { describe, expect, it } from 'vitest';
import { SeededRandom, seededEnv } from '../env/index.js';
import { openMemoryStorage } from '../storage/memory/index.js';
import { Replica } from '../replication/index.js';
import type { CollectionOptions } from '../replication/index.js';
import type { Violation } from './checker.js';
import { constraintFeature } from './constraint-feature.js';
import type { FeatureContext, SimFeature } from './features.js';

async function cluster(feature: SimFeature, n: number): Promise<Replica[]> {
  const collections: Record<string, CollectionOptions> = {};
  for (const c of feature.collections ?? []) {
    collections[c.spec.name] = { kind: c.spec.kind, policy: c.spec.policy, ...c.options } as CollectionOptions;
  }
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      Replica.open({ id: `r${i}`, storage: openMemoryStorage(), env: seededEnv(i + 1), collections }),
    ),
  );
}

function context(rng: SeededRandom, replicas: Replica[], violations: Omit<Violation, 'atMs'>[]): FeatureContext {
  return {
    rng,
    nowMs: () => 0,
    upReplicas: () => replicas.map((_, i) => i),
    replica: (i) => replicas[i],
    replicaId: (i) => `r${i}`,
    lifetime: () => 1,
    inSafetyPhase: () => true,
    clientWrite: (_i, start) => start(),
    note: () => undefined,
    violation: (v) => violations.push(v),
  };
}

async function sync(from: Replica, to: Replica): Promise<void> {
  const batch = await from.readBatch(0, Number.MAX_SAFE_INTEGER, to.context());
  await to.applyRemote(batch.changes, { context: batch.context });
}

/** Random operations at random replicas with random one-way exchanges, then a full exchange. */
async function run(seed: number, patch?: (r: Replica) => void): Promise<{ violations: unknown[]; listed: number }> {
  const feature = constraintFeature();
  const replicas = await cluster(feature, 3);
  for (const r of replicas) patch?.(r);
  const rng = new SeededRandom(seed);
  const violations: Omit<Violation, 'atMs'>[] = [];
  const ctx = context(rng, replicas, violations);
  for (const [i, r] of replicas.entries()) await feature.opened?.(i, r, ctx);
  for (let step = 0; step < 80; step++) {
    const i = rng.int(3);
    if (rng.int(4) === 0) await sync(replicas[i] as Replica, replicas[rng.int(3)] as Replica);
    else await feature.op(i, replicas[i] as Replica, ctx);
  }
  for (let round = 0; round < 3; round++) for (const a of replicas) for (const b of replicas) await sync(a, b);
  await feature.check(
    replicas.map((replica, index) => ({ index, id: `r${index}`, replica })),
    ctx,
  );
  return { violations, listed: replicas[0]?.status().violations ?? 0 };
}

describe('the constraint feature', () => {
  it('finds nothing wrong with correct replicas, over seeds that make violations', async () => {
    let listed = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const r = await run(seed);
      expect(r.violations).toEqual([]);
      listed += r.listed;
    }
    // The workload does make violations for the checker to judge.
    expect(listed).toBeGreaterThan(0);
  });

  it('reports a replica that flags the wrong document of a shared email', async () => {
    let caught = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const r = await run(seed, (replica) => {
        const conflicts = replica.conflicts.bind(replica);
        replica.conflicts = async (options) => {
          const page = await conflicts(options);
          for (const e of page.results) {
            if (e.kind === 'unique' && e.constraint !== undefined && 'winner' in e.constraint)
              e.id = e.constraint.winner;
          }
          return page;
        };
      });
      caught += r.violations.length;
    }
    expect(caught).toBeGreaterThan(0);
  });
});
