/**
 * The bench:geo scenarios. Each takes a running three-datacenter topology, leaves it
 * converged, and returns its results (plain JSON) plus the rows of its table.
 */
import { percentile } from '../support.js';
import { boxStats } from '../plot/svg.js';
import type { BoxStats } from '../plot/svg.js';
import { DCS } from './topology.js';
import type { Dc, GeoTopology } from './topology.js';
import { FeedWatcher, Ledger, Writer, newAgent, putDoc } from './load.js';
import type { WriterStats } from './load.js';

export interface Scale {
  latencySeconds: number;
  /** PUTs per second per client in the latency scenario. */
  latencyRate: number;
  lagRate: number;
  lagSeconds: number;
  warmupSeconds: number;
  outageRate: number;
  outageBeforeSeconds: number;
  outageDownSeconds: number;
  outageAfterSeconds: number;
  flakyRate: number;
  flakySeconds: number;
  /** Per connection per second, on the eu-ap link. */
  dropPerSecond: number;
  conflictWrites: number;
  conflictRate: number;
  overlaps: number[];
}

export interface Pcts {
  p50: number;
  p99: number;
}

const pcts = (sorted: number[]): Pcts => ({ p50: percentile(sorted, 50), p99: percentile(sorted, 99) });
const sortNum = (xs: number[]): number[] => xs.sort((a, b) => a - b);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- latency

export interface LatencyResult {
  multiLeader: Record<Dc, Pcts>;
  singleLeader: Record<Dc, Pcts>;
  /** Box statistics per mode and DC, for the plot. */
  boxes: { multiLeader: Record<Dc, BoxStats>; singleLeader: Record<Dc, BoxStats> };
  samples: { multiLeader: Record<Dc, number>; singleLeader: Record<Dc, number> };
  failed: number;
}

/**
 * PUT round trips of one client writing through `base` for `seconds`: one PUT every
 * 1000/`rate` ms whether or not the last has answered (at most 64 in flight), so that both
 * modes carry the same offered load and a far leader does not mean fewer writes.
 */
async function putLoop(base: string, dc: Dc, seconds: number, rate: number, warmupMs: number) {
  const agent = newAgent();
  const samples: number[] = [];
  let failed = 0;
  const t0 = performance.now();
  const end = t0 + warmupMs + seconds * 1000;
  const inflight = new Set<Promise<void>>();
  for (let n = 0; ; n++) {
    const due = t0 + (n * 1000) / rate;
    if (due >= end) break;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
    if (inflight.size >= 64) await Promise.race(inflight);
    const at = performance.now();
    const p = putDoc(agent, base, 'latency', `${dc}-${n}`, { dc, n }).then((r) => {
      if (r.status !== 201) failed++;
      else if (at >= t0 + warmupMs) samples.push(r.ms);
    });
    const tracked = p.finally(() => inflight.delete(tracked));
    inflight.add(tracked);
  }
  await Promise.all(inflight);
  agent.destroy();
  return { samples: sortNum(samples), failed };
}

export async function latency(t: GeoTopology, s: Scale): Promise<LatencyResult> {
  const out = { multiLeader: {}, singleLeader: {}, boxes: { multiLeader: {}, singleLeader: {} } } as LatencyResult;
  out.samples = { multiLeader: {}, singleLeader: {} } as LatencyResult['samples'];
  out.failed = 0;
  for (const [mode, key] of [
    ['multi', 'multiLeader'],
    ['single', 'singleLeader'],
  ] as const) {
    const runs = await Promise.all(
      DCS.map((dc) => putLoop(t.clientUrl(dc, mode), dc, s.latencySeconds, s.latencyRate, s.warmupSeconds * 1000)),
    );
    DCS.forEach((dc, i) => {
      const r = runs[i] as { samples: number[]; failed: number };
      out[key][dc] = pcts(r.samples);
      out.boxes[key][dc] = boxStats(r.samples);
      out.samples[key][dc] = r.samples.length;
      out.failed += r.failed;
    });
  }
  await t.converged();
  return out;
}

// ---------------------------------------------------------------- load with observation

interface Observed {
  ledger: Ledger;
  writers: Map<Dc, Writer>;
  watchers: FeedWatcher[];
  t0: number;
}

async function observe(
  t: GeoTopology,
  collection: string,
  rate: number,
  base: (dc: Dc) => string,
  watch = true,
): Promise<Observed> {
  const ledger = new Ledger();
  const watchers = watch
    ? await Promise.all(DCS.map((dc) => new FeedWatcher(dc, t.leader(dc).url, ledger).start()))
    : [];
  const t0 = performance.now();
  const writers = new Map(
    DCS.map((dc) => [dc, new Writer({ dc, base: () => base(dc), collection, rate, ledger }).start()] as const),
  );
  return { ledger, writers, watchers, t0 };
}

async function stopWriters(o: Observed): Promise<Map<Dc, WriterStats>> {
  const out = new Map<Dc, WriterStats>();
  for (const [dc, w] of o.writers) out.set(dc, await w.stop());
  return out;
}

/** Waits (bounded) until every acknowledged write sent in [from, to) was seen at both other leaders. */
async function settle(o: Observed, from: number, to: number, timeoutMs = 60_000): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    let missing = 0;
    for (const [id, s] of o.ledger.sent) {
      if (!s.acked || s.at < from || s.at >= to) continue;
      for (const dc of DCS) if (dc !== s.origin && o.ledger.seenAt.get(dc)?.has(id) !== true) missing++;
    }
    if (missing === 0) return true;
    if (performance.now() > deadline) return false;
    await sleep(100);
  }
}

export type Direction = `${Dc}->${Dc}`;
const DIRECTIONS: Direction[] = DCS.flatMap((a) => DCS.filter((b) => b !== a).map((b) => `${a}->${b}` as Direction));

function lagByDirection(o: Observed, from: number, to: number): Record<Direction, Pcts & { n: number }> {
  const by = new Map<Direction, number[]>(DIRECTIONS.map((d) => [d, []]));
  for (const a of o.ledger.arrivals) {
    if (a.sentAt < from || a.sentAt >= to) continue;
    by.get(`${a.origin}->${a.at}` as Direction)?.push(a.lagMs);
  }
  return Object.fromEntries(
    DIRECTIONS.map((d) => {
      const xs = sortNum(by.get(d) as number[]);
      return [d, { ...pcts(xs), n: xs.length }];
    }),
  ) as Record<Direction, Pcts & { n: number }>;
}

function ackedIn(stats: WriterStats, from: number, to: number): { attempted: number; succeeded: number } {
  let attempted = 0;
  let succeeded = 0;
  for (const r of stats.requests) {
    if (r.at < from || r.at >= to) continue;
    attempted += r.ops;
    if (r.ok) succeeded += r.ops;
  }
  return { attempted, succeeded };
}

// ---------------------------------------------------------------- lag

export interface LagResult {
  offeredPerDc: number;
  achievedPerDc: Record<Dc, number>;
  seconds: number;
  links: Record<Direction, Pcts & { n: number }>;
  boxes: Record<Direction, BoxStats>;
  settled: boolean;
}

export async function lag(t: GeoTopology, s: Scale): Promise<LagResult> {
  const o = await observe(t, 'lag', s.lagRate, (dc) => t.clientUrl(dc, 'multi'));
  await sleep(s.warmupSeconds * 1000);
  const from = performance.now();
  await sleep(s.lagSeconds * 1000);
  const to = performance.now();
  const stats = await stopWriters(o);
  const settled = await settle(o, from, to);
  await Promise.all(o.watchers.map((w) => w.stop()));
  const seconds = (to - from) / 1000;
  const achievedPerDc = Object.fromEntries(
    DCS.map((dc) => [dc, ackedIn(stats.get(dc) as WriterStats, from, to).succeeded / seconds]),
  ) as Record<Dc, number>;
  const boxes = {} as Record<Direction, BoxStats>;
  for (const d of DIRECTIONS) {
    boxes[d] = boxStats(
      sortNum(
        o.ledger.arrivals
          .filter((a) => `${a.origin}->${a.at}` === d && a.sentAt >= from && a.sentAt < to)
          .map((a) => a.lagMs),
      ),
    );
  }
  await t.converged();
  return { offeredPerDc: s.lagRate, achievedPerDc, seconds, links: lagByDirection(o, from, to), boxes, settled };
}

// ---------------------------------------------------------------- outage

export interface OutageRun {
  mode: 'multiLeader' | 'singleLeader';
  killed: Dc;
  downSeconds: number;
  /** % of attempted writes acknowledged, per client, while the killed leader was down. */
  availabilityDuringOutage: Record<Dc, number>;
  /** The same over the whole run (before, during, after). */
  availabilityOverall: Record<Dc, number>;
}

export interface OutageResult {
  rate: number;
  multiLeader: OutageRun & {
    /** From the restart (spawn) until it answered /status again. */
    restartSeconds: number;
    /**
     * From its answering /status again until it held every write acknowledged at eu or ap
     * before its restart (0 if that was done before it answered).
     */
    catchUpSeconds: number;
    /** Writes acknowledged at eu or ap while us was down, that us had to fetch. */
    owed: number;
    /** From the end of the load until all three digests were equal. */
    convergeAfterLoadSeconds: number;
    /** Lag of arrivals over time (s since the start of the run), max per bucket, per direction. */
    timeline: Record<string, [number, number][]>;
    window: { from: number; to: number };
  };
  singleLeader: OutageRun;
}

const pct = (a: { attempted: number; succeeded: number }): number =>
  a.attempted === 0 ? NaN : (100 * a.succeeded) / a.attempted;

async function outageRun(t: GeoTopology, s: Scale, mode: 'multi' | 'single', killed: Dc) {
  const o = await observe(t, `outage-${mode}`, s.outageRate, (dc) => t.clientUrl(dc, mode), mode === 'multi');
  await sleep(s.outageBeforeSeconds * 1000);
  const leader = t.leader(killed);
  await leader.stop('SIGKILL');
  const killedAt = performance.now();
  await sleep(s.outageDownSeconds * 1000);
  const restartAt = performance.now();
  await leader.start();
  const upAt = performance.now();
  await sleep(s.outageAfterSeconds * 1000);
  const stats = await stopWriters(o);
  const stoppedAt = performance.now();
  const availabilityDuringOutage = {} as Record<Dc, number>;
  const availabilityOverall = {} as Record<Dc, number>;
  for (const dc of DCS) {
    const st = stats.get(dc) as WriterStats;
    availabilityDuringOutage[dc] = pct(ackedIn(st, killedAt, upAt));
    availabilityOverall[dc] = pct(st);
  }
  return { o, killedAt, restartAt, upAt, stoppedAt, availabilityDuringOutage, availabilityOverall };
}

export async function outage(t: GeoTopology, s: Scale): Promise<OutageResult> {
  const m = await outageRun(t, s, 'multi', 'us');
  // Catch-up: every write acknowledged at eu or ap before us came back must reach us.
  const owed = [...m.o.ledger.sent].filter(([, w]) => w.acked && w.origin !== 'us' && w.at < m.restartAt);
  const seenAtUs = await (async () => {
    const deadline = performance.now() + 120_000;
    for (;;) {
      const seen = m.o.ledger.seenAt.get('us');
      if (owed.every(([id]) => seen?.has(id) === true)) return seen;
      if (performance.now() > deadline) throw new Error('us did not catch up within 120 s of the end of the load');
      await sleep(100);
    }
  })();
  const caughtUpAt = Math.max(m.upAt, ...owed.map(([id]) => seenAtUs?.get(id) ?? m.upAt));
  await t.converged();
  const convergedAt = performance.now();
  await Promise.all(m.o.watchers.map((w) => w.stop()));
  // Lag over time, by the send time of each write, max per bucket.
  const bucket = Math.max(0.1, (m.stoppedAt - m.o.t0) / 1000 / 120);
  const timeline: Record<string, [number, number][]> = {};
  for (const d of ['eu->us', 'ap->us', 'eu->ap', 'us->eu'] as const) {
    const buckets = new Map<number, number>();
    for (const a of m.o.ledger.arrivals) {
      if (`${a.origin}->${a.at}` !== d) continue;
      const b = Math.floor((a.sentAt - m.o.t0) / 1000 / bucket);
      buckets.set(b, Math.max(buckets.get(b) ?? 0, a.lagMs));
    }
    timeline[d] = [...buckets]
      .sort((x, y) => x[0] - y[0])
      .map(([b, v]) => [Number((b * bucket).toFixed(2)), Math.round(v * 10) / 10] as [number, number]);
  }
  // Single leader, the fair counterpart: the same failure (one datacenter's leader dies) hits
  // the datacenter every client depends on. (Killing us there would change nothing for anyone.)
  const sgl = await outageRun(t, s, 'single', 'eu');
  await t.allLive();
  await t.converged();
  return {
    rate: s.outageRate,
    multiLeader: {
      mode: 'multiLeader',
      killed: 'us',
      downSeconds: (m.upAt - m.killedAt) / 1000,
      availabilityDuringOutage: m.availabilityDuringOutage,
      availabilityOverall: m.availabilityOverall,
      restartSeconds: (m.upAt - m.restartAt) / 1000,
      catchUpSeconds: (caughtUpAt - m.upAt) / 1000,
      owed: owed.length,
      convergeAfterLoadSeconds: (convergedAt - m.stoppedAt) / 1000,
      timeline,
      window: { from: (m.killedAt - m.o.t0) / 1000, to: (m.upAt - m.o.t0) / 1000 },
    },
    singleLeader: {
      mode: 'singleLeader',
      killed: 'eu',
      downSeconds: (sgl.upAt - sgl.killedAt) / 1000,
      availabilityDuringOutage: sgl.availabilityDuringOutage,
      availabilityOverall: sgl.availabilityOverall,
    },
  };
}

// ---------------------------------------------------------------- flaky

export interface FlakyRun {
  /** Acknowledged writes per second, all three clients. */
  writesPerSec: number;
  /** eu's writes arriving at ap per second (what crosses the flaky link, or goes around it). */
  euToApPerSec: number;
  links: Record<Direction, Pcts & { n: number }>;
  boxes: { 'eu->ap': BoxStats; 'ap->eu': BoxStats };
}

export interface FlakyResult {
  rate: number;
  dropPerSecond: number;
  seconds: number;
  clean: FlakyRun;
  flaky: FlakyRun;
  /** Ten times the drop rate (capped at 1/s), to show where drops start to cost. */
  heavyDropPerSecond: number;
  heavy: FlakyRun;
}

async function flakyRun(t: GeoTopology, s: Scale, name: string): Promise<FlakyRun> {
  const o = await observe(t, `flaky-${name}`, s.flakyRate, (dc) => t.clientUrl(dc, 'multi'));
  await sleep(s.warmupSeconds * 1000);
  const from = performance.now();
  await sleep(s.flakySeconds * 1000);
  const to = performance.now();
  const stats = await stopWriters(o);
  await settle(o, from, to);
  await Promise.all(o.watchers.map((w) => w.stop()));
  const seconds = (to - from) / 1000;
  let acked = 0;
  for (const st of stats.values()) acked += ackedIn(st, from, to).succeeded;
  const links = lagByDirection(o, from, to);
  const box = (d: Direction) =>
    boxStats(
      sortNum(
        o.ledger.arrivals
          .filter((a) => `${a.origin}->${a.at}` === d && a.sentAt >= from && a.sentAt < to)
          .map((a) => a.lagMs),
      ),
    );
  return {
    writesPerSec: acked / seconds,
    euToApPerSec: links['eu->ap'].n / seconds,
    links,
    boxes: { 'eu->ap': box('eu->ap'), 'ap->eu': box('ap->eu') },
  };
}

export async function flaky(t: GeoTopology, s: Scale): Promise<FlakyResult> {
  const clean = await flakyRun(t, s, 'clean');
  await t.converged();
  const dropping = async (p: number, name: string): Promise<FlakyRun> => {
    t.link('eu-ap').dropConnectionsRandomly({ probabilityPerSecond: p, random: Math.random });
    try {
      return await flakyRun(t, s, name);
    } finally {
      t.link('eu-ap').stopDropping();
      await t.converged();
    }
  };
  const bad = await dropping(s.dropPerSecond, 'flaky');
  const heavyDropPerSecond = Math.min(1, 10 * s.dropPerSecond);
  const heavy = await dropping(heavyDropPerSecond, 'heavy');
  return {
    rate: s.flakyRate,
    dropPerSecond: s.dropPerSecond,
    seconds: s.flakySeconds,
    clean,
    flaky: bad,
    heavyDropPerSecond,
    heavy,
  };
}

// ---------------------------------------------------------------- conflicts

export interface ConflictRun {
  overlap: number;
  writesPerDc: number;
  sharedKeys: number;
  /** Documents the leaders report as holding conflicts, after convergence. */
  conflictedDocs: number;
  /** conflictedDocs / sharedKeys, in %. */
  detectedOfExpected: number;
  /** Writes that took part in a conflict / all writes, in %; the overlap predicts it. */
  conflictingWriteRate: number;
  expectedRate: number;
  /** Per leader: the change of GET /status `conflicts` over the run. */
  statusDelta: Record<Dc, number>;
  /** Per leader: documents of the collection GET /conflicts lists (all pages). */
  listed: Record<Dc, number>;
}

/** Counts documents with conflicts in one collection, following GET /conflicts pages to the end. */
async function countConflicts(url: string, collection: string): Promise<number> {
  let count = 0;
  let after: string | null = null;
  for (;;) {
    const q = `collection=${encodeURIComponent(collection)}&limit=1000${after === null ? '' : `&after=${encodeURIComponent(after)}`}`;
    const res = await fetch(`${url}/conflicts?${q}`);
    if (!res.ok) throw new Error(`GET /conflicts: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { results: unknown[]; next?: string | null };
    count += page.results.length;
    // A page scans a bounded part of the feed: it may be empty while `next` is not null.
    if (page.next === undefined || page.next === null) return count;
    after = page.next;
  }
}

export async function conflicts(t: GeoTopology, s: Scale): Promise<ConflictRun[]> {
  const out: ConflictRun[] = [];
  for (const overlap of s.overlaps) {
    const collection = `conflicts-${String(overlap).replace('.', '_')}`;
    // Every `period`-th write of each DC goes to a shared key, written by all three at about
    // the same moment (same schedule), so well within one replication lag: concurrent.
    const period = Math.max(1, Math.round(1 / overlap));
    const ledger = new Ledger();
    const before = await Promise.all(DCS.map((dc) => t.leader(dc).status()));
    const writers = DCS.map((dc) =>
      new Writer({
        dc,
        base: () => t.clientUrl(dc, 'multi'),
        collection,
        rate: s.conflictRate,
        ledger,
        limit: s.conflictWrites,
        idOf: (n) => (n % period === 0 ? `shared-${n}` : `${dc}-${n}`),
      }).start(),
    );
    const stats = await Promise.all(writers.map((w) => w.done()));
    const allAcked = stats.every((st) => st.succeeded === s.conflictWrites);
    await t.converged();
    const shared = Array.from({ length: Math.ceil(s.conflictWrites / period) }, (_, i) => `shared-${i * period}`);
    // The measure: each shared document, read at each leader, holds conflicts or not.
    const perDoc = await Promise.all(
      DCS.map(async (dc) => {
        let n = 0;
        for (const id of shared) if (((await t.leader(dc).get(collection, id))?.conflicts.length ?? 0) > 0) n++;
        return n;
      }),
    );
    if (new Set(perDoc).size !== 1) throw new Error(`leaders disagree on conflicted documents: ${perDoc.join(', ')}`);
    const after = await Promise.all(DCS.map((dc) => t.leader(dc).status()));
    // Cross-checks: the /status count (all collections, so as a difference) and GET /conflicts.
    const statusDelta = Object.fromEntries(
      DCS.map((dc, i) => [dc, (after[i]?.conflicts ?? NaN) - (before[i]?.conflicts ?? NaN)]),
    ) as Record<Dc, number>;
    const listed = Object.fromEntries(
      await Promise.all(DCS.map(async (dc) => [dc, await countConflicts(t.leader(dc).url, collection)] as const)),
    ) as Record<Dc, number>;
    const conflictedDocs = perDoc[0] as number;
    const sharedKeys = Math.ceil(s.conflictWrites / period);
    const writes = DCS.length * s.conflictWrites;
    if (!allAcked) throw new Error('some conflict-scenario writes failed');
    out.push({
      overlap,
      writesPerDc: s.conflictWrites,
      sharedKeys,
      conflictedDocs,
      detectedOfExpected: (100 * conflictedDocs) / sharedKeys,
      conflictingWriteRate: (100 * conflictedDocs * DCS.length) / writes,
      expectedRate: (100 * sharedKeys * DCS.length) / writes,
      statusDelta,
      listed,
    });
  }
  return out;
}
