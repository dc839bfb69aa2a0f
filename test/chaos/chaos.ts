/**
 * Chaos on real processes: 3 to 5 `polyarch serve` leaders linked all-to-all through fault
 * proxies, clients writing to every leader and recording each acknowledged write, and a
 * nemesis that kills (SIGKILL) and restarts leaders, partitions and heals links, and cuts
 * connections, at random for a bounded time. Then everything heals, the cluster goes quiet,
 * and the guarantees are checked over HTTP:
 *   G1 every acknowledged write is reflected at every leader (its dot is in the document's
 *      context there: present as a sibling, or superseded by a write that followed it);
 *   G2 every leader shows the same digest;
 *   G3 every leader shows the same winner for every document;
 *   G5 after quiescence the feeds stop growing.
 */
import { SeededRandom } from '../../src/env/index.js';
import { parseToken } from '../../src/core/index.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { Cluster, converged, until } from '../integration/harness.js';
import type { Leader } from '../integration/harness.js';

export interface ChaosOptions {
  seconds: number;
  leaders?: number;
  seed?: number;
  log?: (line: string) => void;
}

export interface ChaosResult {
  seed: number;
  leaders: number;
  acked: number;
  refused: number;
  batches: number;
  kills: number;
  partitions: number;
  cuts: number;
  convergeMs: number;
  violations: string[];
}

interface Acked {
  key: string;
  replica: string;
  counter: number;
}

const COLLECTION = 'chaos';
const KEYS = 24;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The dot a write got, read from the version its leader answered with. */
function dotOf(key: string, version: string, replica: string): Acked {
  const basis = parseToken(COLLECTION, key, version);
  if (basis.kind !== 'context') throw new Error('a write answered with a sibling version');
  const counter = basis.context.get(replica);
  if (counter === undefined) throw new Error(`the version of ${key} does not name its writer ${replica}`);
  return { key, replica, counter };
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const n = Math.min(5, Math.max(3, options.leaders ?? 3));
  const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
  const log = options.log ?? (() => {});
  const rng = new SeededRandom(seed);
  const ids = ['eu', 'us', 'ap', 'sa', 'af'].slice(0, n);
  const cluster = new Cluster('chaos');
  const result: ChaosResult = {
    seed,
    leaders: n,
    acked: 0,
    refused: 0,
    batches: 0,
    kills: 0,
    partitions: 0,
    cuts: 0,
    convergeMs: 0,
    violations: [],
  };
  const acked: Acked[] = [];
  try {
    // Every pair linked once, through a proxy in front of the dialled leader.
    const ports = await cluster.ports(ids);
    const proxies: FaultProxy[] = [];
    const peers = new Map<string, string[]>(ids.map((id) => [id, []]));
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const proxy = await startFaultProxy({
          target: { host: '127.0.0.1', port: ports.get(ids[i] as string) as number },
        });
        cluster.onTeardown(() => proxy.close());
        proxies.push(proxy);
        peers.get(ids[j] as string)?.push(proxy.url());
      }
    }
    const leaders = ids.map((id) => cluster.define({ id, peers: peers.get(id) ?? [] }, ports.get(id) as number));
    await Promise.all(leaders.map((l) => l.start()));
    const down = new Set<Leader>();
    const deadline = Date.now() + options.seconds * 1000;
    let writes = 0;

    const client = async (c: number): Promise<void> => {
      const crng = new SeededRandom(seed * 7 + c);
      while (Date.now() < deadline) {
        const up = leaders.filter((l) => !down.has(l));
        const leader = crng.pick(up.length > 0 ? up : leaders);
        const replica = leader.options.id;
        const key = `k${crng.int(KEYS)}`;
        const roll = crng.next();
        try {
          if (roll < 0.12) {
            const keys = [...new Set([key, `k${crng.int(KEYS)}`, `k${crng.int(KEYS)}`])];
            const res = await fetch(`${leader.url}/db/_batch`, {
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              body: JSON.stringify({
                ops: keys.map((id) => ({ op: 'put', collection: COLLECTION, id, value: { w: writes++, at: replica } })),
              }),
              signal: AbortSignal.timeout(3000),
            });
            if (res.status !== 200) {
              result.refused++;
              continue;
            }
            const body = (await res.json()) as { results: { id: string; version: string }[] };
            for (const r of body.results) acked.push(dotOf(r.id, r.version, replica));
            result.batches++;
          } else {
            const headers: Record<string, string> = { 'content-type': 'application/json' };
            if (roll < 0.3) {
              // Read, then write with that version: resolves whatever conflicts it saw.
              const got = await fetch(`${leader.url}/db/${COLLECTION}/${key}`, { signal: AbortSignal.timeout(3000) });
              if (got.status === 200) headers['if-match'] = ((await got.json()) as { version: string }).version;
            }
            const res = await fetch(`${leader.url}/db/${COLLECTION}/${key}`, {
              method: 'PUT',
              headers,
              body: JSON.stringify({ w: writes++, at: replica }),
              signal: AbortSignal.timeout(3000),
            });
            if (res.status !== 201) {
              result.refused++;
              continue;
            }
            acked.push(dotOf(key, ((await res.json()) as { version: string }).version, replica));
          }
        } catch {
          result.refused++; // a killed leader, a timeout: not acknowledged, nothing to check
          await sleep(20);
        }
      }
    };

    const nemesis = async (): Promise<void> => {
      while (Date.now() < deadline - 1500) {
        await sleep(800 + rng.int(1500));
        const roll = rng.next();
        if (roll < 0.35 && down.size === 0) {
          const victim = rng.pick(leaders);
          log(`nemesis: kill -9 ${victim.options.id}`);
          down.add(victim);
          await victim.stop('SIGKILL');
          result.kills++;
          await sleep(500 + rng.int(2000));
          await victim.start();
          down.delete(victim);
          log(`nemesis: restarted ${victim.options.id}`);
        } else if (roll < 0.75) {
          const cut = proxies.filter(() => rng.next() < 0.5);
          log(`nemesis: partition ${cut.length} of ${proxies.length} links`);
          for (const p of cut) p.partition();
          result.partitions += cut.length;
          await sleep(1000 + rng.int(2500));
          for (const p of cut) p.heal();
          log('nemesis: healed');
        } else {
          const p = rng.pick(proxies);
          p.cut();
          result.cuts++;
          log('nemesis: cut the connections of one link');
        }
      }
    };

    await Promise.all([nemesis(), ...[0, 1, 2].map(client)]);
    result.acked = acked.length;

    // Heal: every link open, every leader up, then wait until the cluster is quiet.
    for (const p of proxies) p.heal();
    for (const l of leaders) if (l.exitCode !== null || l.child === undefined) await l.start();
    const t0 = Date.now();
    const statuses = await converged(leaders, 90_000);
    result.convergeMs = Date.now() - t0;
    log(`converged in ${result.convergeMs} ms`);

    // G2: one digest.
    if (new Set(statuses.map((s) => s.digest)).size !== 1)
      result.violations.push('G2: digests differ after quiescence');

    // G1: every acknowledged write is in the context of its document at every leader.
    for (const l of leaders) {
      const contexts = new Map<string, ReadonlyMap<string, number>>();
      for (let since = 0; ; ) {
        const res = await fetch(`${l.url}/changes?since=${since}&limit=10000`);
        const page = (await res.json()) as {
          results: { collection: string; id: string; version: string }[];
          last_seq: number;
        };
        for (const e of page.results) {
          const basis = parseToken(e.collection, e.id, e.version);
          if (basis.kind === 'context') contexts.set(e.id, basis.context);
        }
        if (page.results.length === 0 || page.last_seq === since) break;
        since = page.last_seq;
      }
      for (const a of acked) {
        const seen = contexts.get(a.key)?.get(a.replica) ?? 0;
        if (seen < a.counter) {
          result.violations.push(
            `G1: ${l.options.id} lacks the acknowledged write ${a.replica}:${a.counter} to ${a.key}`,
          );
        }
      }
    }

    // G3: the same winner everywhere.
    for (let k = 0; k < KEYS; k++) {
      const views = await Promise.all(leaders.map((l) => l.get(COLLECTION, `k${k}`)));
      const shown = new Set(
        views.map((v) => JSON.stringify(v === null ? null : [v.value, v.origin, v.conflicts.length])),
      );
      if (shown.size !== 1)
        result.violations.push(`G3: leaders show different winners for k${k}: ${[...shown].join(' | ')}`);
    }

    // G5: once quiet, nothing more is recorded anywhere.
    const before = (await Promise.all(leaders.map((l) => l.status()))).map((s) => s.seq);
    await sleep(1500);
    const after = (await Promise.all(leaders.map((l) => l.status()))).map((s) => s.seq);
    if (before.join() !== after.join())
      result.violations.push(`G5: feeds still grow after quiescence: ${before.join()} -> ${after.join()}`);
    await until('the leaders to stop', async () => {
      await Promise.all(leaders.map((l) => l.stop('SIGTERM')));
      return true;
    });
    return result;
  } catch (e) {
    log(cluster.logs());
    throw e;
  } finally {
    await cluster.teardown();
  }
}
