/**
 * The deterministic simulator (in the spirit of FoundationDB's simulation and TigerBeetle's
 * VOPR). One seed drives everything: the cluster's shape (3-7 replicas in a topology), the
 * network's delays, the faults (crashes, partitions, cuts, clock skew and jumps) and the
 * client workload. A run is a single-threaded loop: take the next event off the virtual-time
 * agenda, run it, then let the replicas' promises settle (they resolve in microtasks: the
 * memory store is in-process) before the next event. No real time and no ambient randomness
 * enter, so a seed replays bit for bit.
 *
 *   safety phase   faults + workload, `ops` client operations
 *   heal           every replica up, every link up, no faults, until quiescent (bounded)
 *   quiet round    three heartbeats more: nothing but pings may move
 *   check          checker.ts, over the history, the commit logs and the final states
 */
import {
  EMPTY_RECORD,
  Encoder,
  bytesEqual,
  decodeRecord,
  dotToString,
  encodeRecord,
  fromUtf8,
  hash128,
  toHex,
  vvCovers,
} from '../core/index.js';
import type { RecordState } from '../core/index.js';
import type { Env, Logger } from '../env/index.js';
import { Replica, SessionDriver } from '../replication/index.js';
import type { ChangeEvent, CollectionOptions } from '../replication/index.js';
import type { Storage } from '../storage/index.js';
import { openMemoryStorage } from '../storage/memory/index.js';
import { Checker, History, describeState, writeBackProblem } from './checker.js';
import type { FinalReplica, ReadView, Violation, WriteRecord } from './checker.js';
import { canonicalText, conflictCount } from './kind-model.js';
import type { CollectionModel } from './kind-model.js';
import type { EventHandle } from './event-queue.js';
import { between, chance, randomStreams, shuffled, weighted } from './prng.js';
import type { RandomStreams, SeededRandom } from './prng.js';
import { ReplicaClock, ReplicaTimers, START_MS, VirtualTime } from './sim-clock.js';
import { FRAME_TYPES, SimNetwork, TAG_PING, TAG_PONG } from './sim-network.js';
import type { SimConnection } from './sim-network.js';
import { ActivityMonitor, ReplicaLog, SimStorage, docKey } from './sim-storage.js';
import type { CommitRecord, StorageHooks } from './sim-storage.js';
import { topologyLinks } from './topology.js';
import type { Link, Topology } from './topology.js';
import { Trace } from './trace.js';
import type { TraceEntry } from './trace.js';
import {
  COLLECTIONS,
  MERGE_FUNCTIONS,
  clientRead,
  collectionModel,
  emptyWorkloadStats,
  runClientOp,
} from './workload.js';
import type { ClientCluster, WorkloadMix, WorkloadStats } from './workload.js';
import { TEXT_COLLECTION, TextHistory, checkTexts } from './text-workload.js';
import { FEATURES } from './feature-registry.js';
import type { FeatureContext, SimFeature } from './features.js';

export const FAULT_KINDS = ['crash', 'partition', 'cut', 'skew', 'clockjump'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export function isFaultKind(name: string): name is FaultKind {
  return (FAULT_KINDS as readonly string[]).includes(name);
}

export interface SimOptions {
  seed: number;
  /** 3-7; drawn from the seed when absent. */
  replicas?: number;
  /** Client operations in the safety phase (30-200, drawn from the seed when absent). */
  ops?: number;
  /** Fault kinds to inject (default: all). */
  faults?: readonly FaultKind[];
  /** Drawn from the seed when absent. */
  topology?: Topology;
  /** Documents per collection (2-8); drawn from the seed when absent. */
  keys?: number;
  /** Name of a mutant of mutant-catalog.ts (for the repro line; the spec comes in `extras`). */
  mutant?: string;
  /** 'full' (default): 'all' plus the features (ids, sequences, constraints, triggers); 'all': records, every kind and text; 'mixed': records and kinds, as before text; 'records': records only. */
  workload?: WorkloadMix;
}

export interface ResolvedOptions {
  readonly seed: number;
  readonly replicas: number;
  readonly ops: number;
  readonly faults: readonly FaultKind[];
  readonly topology: Topology;
  readonly keys: number;
  readonly mutant: string | undefined;
  readonly workload: WorkloadMix;
}

/** A deliberate bug, built at the seams the simulator controls (see mutant-catalog.ts). */
export interface MutantSpec {
  readonly name: string;
  storageHooks?(ctx: MutantContext): StorageHooks;
  patchReplica?(replica: Replica, ctx: MutantContext): void;
}

export interface MutantContext {
  readonly replica: number;
  readonly rng: SeededRandom;
  /** True during the safety phase (mutants that crash replicas stop for the heal). */
  inSafetyPhase(): boolean;
}

export interface SimStats extends WorkloadStats {
  faults: Record<FaultKind, number>;
  crashes: number;
  deliveries: number;
  connections: number;
  commits: number;
  events: number;
  virtualMs: number;
  healMs: number;
  /** The features' counts (features.ts `stats`), keyed `feature: what`. */
  features: Record<string, number>;
}

export interface SimResult {
  readonly options: ResolvedOptions;
  readonly violations: readonly Violation[];
  readonly stats: SimStats;
  readonly traceHash: string;
  readonly digests: readonly string[];
  readonly trace: readonly TraceEntry[];
  readonly links: readonly Link[];
  readonly replicaIds: readonly string[];
}

const HEARTBEAT_MS = 2000;
const DEAD_AFTER_MS = 6000;
/** Microtask turns without storage activity after which the system counts as settled. */
const SETTLE_IDLE_TICKS = 16;
const HEAL_VIRTUAL_MS_MAX = 10 * 60_000;
const HEAL_EVENTS_MAX = 400_000;

/** Fills in what the options leave to the seed. The shape stream is drawn the same way whatever is given. */
export function resolveOptions(options: SimOptions): ResolvedOptions {
  const drawn = drawShape(randomStreams(options.seed).shape);
  return {
    seed: options.seed >>> 0,
    replicas: options.replicas ?? drawn.replicas,
    ops: options.ops ?? drawn.ops,
    faults: options.faults ?? FAULT_KINDS,
    topology: options.topology ?? drawn.topology,
    keys: options.keys ?? drawn.keys,
    mutant: options.mutant,
    workload: options.workload ?? 'full',
  };
}

/** The first draws of the shape stream: what a seed picks when the options leave it open. */
function drawShape(shape: SeededRandom): { replicas: number; topology: Topology; keys: number; ops: number } {
  const replicas = between(shape, 3, 7);
  const topology = weighted<Topology>(shape, [
    ['all-to-all', 3],
    ['star', 2],
    ['ring', 2],
    ['line', 1],
    ['random', 3],
  ]);
  const keys = between(shape, 2, 8);
  const ops = between(shape, 30, 200);
  return { replicas, topology, keys, ops };
}

/** The command that replays a run exactly. */
export function replayCommand(o: ResolvedOptions): string {
  const parts = [
    `npm run sim -- --seed ${o.seed}`,
    `--replicas ${o.replicas}`,
    `--ops ${o.ops}`,
    `--topology ${o.topology}`,
  ];
  parts.push(`--keys ${o.keys}`);
  parts.push(`--faults ${o.faults.length === 0 ? 'none' : o.faults.join(',')}`);
  if (o.mutant !== undefined) parts.push(`--mutant ${o.mutant}`);
  if (o.workload !== 'full') parts.push(`--workload ${o.workload}`);
  return parts.join(' ');
}

interface ReplicaSlot {
  readonly index: number;
  readonly id: string;
  readonly durable: Storage;
  readonly log: ReplicaLog;
  readonly clock: ReplicaClock;
  timers: ReplicaTimers;
  env: Env;
  storage: SimStorage | undefined;
  replica: Replica | undefined;
  restart: EventHandle | undefined;
  jumpRestore: EventHandle | undefined;
  /** Crash after this many microtask turns of the next frame delivered to it. */
  crashArmedTicks: number | undefined;
  lifetimes: number;
}

interface LinkSlot {
  readonly a: number;
  readonly b: number;
  conn: SimConnection | undefined;
  drivers: readonly [SessionDriver, SessionDriver] | undefined;
  dial: EventHandle | undefined;
  attempts: number;
  readonly window: number;
  readonly batchDocs: number;
}

class Simulation implements ClientCluster {
  readonly time = new VirtualTime();
  readonly streams: RandomStreams;
  readonly history = new History();
  readonly texts = new TextHistory();
  readonly features: readonly SimFeature[];
  readonly stats: SimStats;
  readonly trace: Trace;
  readonly checker: Checker;
  readonly keys: number;
  readonly workload: WorkloadMix;
  private readonly monitor = new ActivityMonitor();
  private readonly net: SimNetwork;
  private readonly slots: ReplicaSlot[] = [];
  private readonly links: LinkSlot[] = [];
  private readonly linkSpecs: Link[];
  private readonly collections: Record<string, CollectionOptions>;
  private readonly models = new Map<string, CollectionModel>();
  private phase: 'safety' | 'heal' | 'quiet' | 'done' = 'safety';
  private opsDone = 0;
  private faultEvent: EventHandle | undefined;
  private partitionHeal: EventHandle | undefined;
  private pendingCrash: { slot: ReplicaSlot; ticks: number } | undefined;
  private readonly crashRequests: ReplicaSlot[] = [];

  constructor(
    readonly options: ResolvedOptions,
    private readonly mutant: MutantSpec | undefined,
    keepTrace: boolean,
  ) {
    this.streams = randomStreams(options.seed);
    // The shape stream's first draws made resolveOptions' choices; replay them to stay aligned.
    drawShape(this.streams.shape);
    this.trace = new Trace(keepTrace);
    this.keys = options.keys;
    this.workload = options.workload;
    this.stats = {
      ...emptyWorkloadStats(),
      faults: { crash: 0, partition: 0, cut: 0, skew: 0, clockjump: 0 },
      crashes: 0,
      deliveries: 0,
      connections: 0,
      commits: 0,
      events: 0,
      virtualMs: 0,
      healMs: 0,
      features: {},
    };
    this.collections = {};
    for (const c of COLLECTIONS) {
      const o: CollectionOptions = { kind: c.kind, policy: c.policy };
      if (c.merge !== undefined) o.merge = c.merge;
      if (c.fields !== undefined) o.fields = c.fields;
      this.collections[c.name] = o;
      this.models.set(c.name, collectionModel(c));
    }
    this.features = options.workload === 'full' ? FEATURES.map((make) => make()) : [];
    for (const f of this.features) {
      for (const c of f.collections ?? []) {
        const o: CollectionOptions = { kind: c.spec.kind, policy: c.spec.policy };
        if (c.spec.merge !== undefined) o.merge = c.spec.merge;
        if (c.spec.fields !== undefined) o.fields = c.spec.fields;
        this.collections[c.spec.name] = { ...o, ...c.options } as CollectionOptions;
        this.models.set(c.spec.name, collectionModel(c.spec));
      }
      for (const c of f.systemCollections ?? []) this.models.set(c.name, collectionModel(c));
    }
    const ids = Array.from({ length: options.replicas }, (_, i) => `r${i}`);
    this.checker = new Checker((c) => this.modelOf(c), ids);
    this.net = new SimNetwork(this.time, this.streams.network, {
      delivered: (conn, fromSide, bytes) => this.onDelivered(conn, fromSide, bytes),
      closed: (conn, side, info, how) => {
        const who = this.slots[conn.replicas[side]]?.id ?? '?';
        this.note(`c${conn.id} ${who} end closed (${how}): ${info.code}: ${info.message}`, {
          replicas: [...conn.replicas],
          noise: how !== 'cut',
        });
      },
    });
    const shape = this.streams.shape;
    this.linkSpecs = topologyLinks(options.topology, options.replicas, shape);
    for (const [a, b] of this.linkSpecs) {
      this.net.setLatency(a, b, { baseMs: between(shape, 1, 30), jitterMs: between(shape, 0, 25) });
      this.links.push({
        a,
        b,
        conn: undefined,
        drivers: undefined,
        dial: undefined,
        attempts: 0,
        window: between(shape, 1, 4),
        batchDocs: between(shape, 1, 8),
      });
    }
    for (let i = 0; i < options.replicas; i++) {
      const clock = new ReplicaClock(this.time, between(shape, -2000, 2000), between(shape, -300, 300));
      const timers = new ReplicaTimers(this.time, clock, `timer r${i}`);
      this.slots.push({
        index: i,
        id: ids[i] as string,
        durable: openMemoryStorage(),
        log: new ReplicaLog(),
        clock,
        timers,
        env: this.envFor(i, clock, timers),
        storage: undefined,
        replica: undefined,
        restart: undefined,
        jumpRestore: undefined,
        crashArmedTicks: undefined,
        lifetimes: 0,
      });
    }
  }

  // ------------------------------------------------------------------ ClientCluster

  get rng(): SeededRandom {
    return this.streams.workload;
  }

  modelOf(collection: string): CollectionModel {
    return this.models.get(collection) ?? collectionModel({ name: collection, kind: 'record', policy: 'keep' });
  }

  nowMs(): number {
    return this.time.nowMs;
  }

  upReplicas(): number[] {
    return this.slots.filter((s) => s.replica !== undefined).map((s) => s.index);
  }

  handle(i: number): { replica: Replica; storage: SimStorage } | undefined {
    const s = this.slots[i];
    if (s?.replica === undefined || s.storage === undefined) return undefined;
    return { replica: s.replica, storage: s.storage };
  }

  replicaId(i: number): string {
    return this.slots[i]?.id ?? `#${i}`;
  }

  featureContext(): FeatureContext {
    return {
      rng: this.streams.workload,
      nowMs: () => this.time.nowMs,
      upReplicas: () => this.upReplicas(),
      replica: (i) => this.slots[i]?.replica,
      replicaId: (i) => this.replicaId(i),
      lifetime: (i) => this.slots[i]?.lifetimes ?? 0,
      inSafetyPhase: () => this.phase === 'safety',
      clientWrite: <T>(i: number, start: () => Promise<T>): Promise<T> => {
        const storage = this.slots[i]?.storage;
        storage?.armWrite();
        try {
          return start();
        } finally {
          storage?.disarm();
        }
      },
      note: (text, replicas) => this.note(text, { replicas }),
      violation: (v) => this.violation(v),
    };
  }

  traceOp(text: string, keys: readonly string[], replicas: readonly number[]): void {
    this.note(text, { keys, replicas });
  }

  violation(v: Omit<Violation, 'atMs'>): void {
    this.checker.report({ ...v, atMs: this.time.nowMs });
    this.note(`VIOLATION ${v.invariant}: ${v.message}`, { keys: v.keys, replicas: v.replicas });
  }

  // ------------------------------------------------------------------ the run

  async run(): Promise<SimResult> {
    const o = this.options;
    this.note(
      `seed ${o.seed}: ${o.replicas} replicas, ${o.topology} (${this.linkSpecs.map(([a, b]) => `r${a}-r${b}`).join(' ')}), ` +
        `${o.ops} ops, ${o.keys} keys, faults ${o.faults.join(',') || 'none'}${o.mutant === undefined ? '' : `, mutant ${o.mutant}`}`,
    );
    for (const s of this.slots) await this.open(s);
    await this.settle();
    for (const l of this.links) this.dial(l);
    await this.settle();
    this.scheduleOp();
    this.scheduleFault();
    while (this.opsDone < o.ops) {
      if (!(await this.step())) break;
    }
    const healStart = this.time.nowMs;
    await this.heal();
    let quiet = false;
    for (let events = 0; events < HEAL_EVENTS_MAX && this.time.nowMs - healStart < HEAL_VIRTUAL_MS_MAX; events++) {
      if (this.quiescent()) {
        quiet = true;
        break;
      }
      if (!(await this.step())) break;
    }
    this.stats.healMs = this.time.nowMs - healStart;
    if (!quiet) {
      this.violation({
        invariant: 'liveness',
        message: `the cluster did not become quiet within the heal bound (${this.stats.healMs} ms virtual): ${this.whyNotQuiet()}`,
        keys: [],
        replicas: [],
      });
    } else {
      this.note(`quiescent after ${this.stats.healMs} ms of heal`);
      await this.quietRound();
    }
    this.phase = 'done';
    const digests = await this.finalChecks(quiet);
    this.stats.deliveries = this.net.stats.delivered;
    this.stats.connections = this.net.stats.connections;
    this.stats.virtualMs = this.time.elapsedMs();
    for (const s of this.slots) this.stats.commits += s.log.commits.length;
    for (const f of this.features) {
      for (const [k, v] of Object.entries(f.stats?.() ?? {})) this.stats.features[`${f.name}: ${k}`] = v;
    }
    return {
      options: o,
      violations: this.checker.violations,
      stats: this.stats,
      traceHash: this.trace.hash,
      digests,
      trace: this.trace.entries,
      links: this.linkSpecs,
      replicaIds: this.slots.map((s) => s.id),
    };
  }

  /** Runs the next event and lets everything it started settle. False when the agenda is empty. */
  private async step(): Promise<boolean> {
    const ev = this.time.agenda.pop();
    if (ev === undefined) return false;
    this.time.nowMs = Math.max(this.time.nowMs, ev.at);
    this.stats.events++;
    await ev.run();
    await this.settle();
    return true;
  }

  /**
   * Lets the microtasks the last event started run out: replicas' storage transactions and
   * the session drivers' continuations. Settled means no transaction in flight for a number
   * of turns (a continuation that starts a new one resets the count).
   */
  private async settle(): Promise<void> {
    let idle = 0;
    for (let turn = 1; ; turn++) {
      await Promise.resolve();
      const armed = this.pendingCrash;
      if (armed !== undefined && turn >= armed.ticks) {
        this.pendingCrash = undefined;
        this.crash(armed.slot, `crashed mid-flight (${turn} microtask turns into a delivery)`);
        idle = 0;
      }
      while (this.crashRequests.length > 0) {
        const s = this.crashRequests.shift() as ReplicaSlot;
        this.crash(s, 'crashed by the mutant between its checkpoint and its batch');
      }
      if (this.monitor.pending > 0) idle = 0;
      else if (++idle >= SETTLE_IDLE_TICKS) return;
      if (turn > 10_000_000) throw new Error('the simulation does not settle');
    }
  }

  // ------------------------------------------------------------------ replicas

  private envFor(i: number, clock: ReplicaClock, timers: ReplicaTimers): Env {
    const logger: Logger = {
      log: (level, msg, fields) => {
        const text = `r${i} log ${level}: ${msg}${fields === undefined ? '' : ` ${JSON.stringify(fields)}`}`;
        if (level === 'error') {
          this.violation({ invariant: 'internal', message: text, keys: [], replicas: [i] });
        } else this.note(text, { replicas: [i] });
      },
    };
    return { clock, timers, random: this.streams.env, logger };
  }

  private mutantContext(s: ReplicaSlot): MutantContext {
    return {
      replica: s.index,
      rng: this.streams.mutant,
      inSafetyPhase: () => this.phase === 'safety',
    };
  }

  private async open(s: ReplicaSlot): Promise<void> {
    const hooks = this.mutant?.storageHooks?.(this.mutantContext(s)) ?? {};
    const storage = new SimStorage(s.durable, s.log, this.monitor, this.time, hooks, {
      committed: (c) => this.onCommit(s, c),
      crashRequested: () => this.crashRequests.push(s),
    });
    s.storage = storage;
    const replica = await Replica.open({
      storage,
      id: s.id,
      env: s.env,
      collections: this.collections,
      mergeFunctions: MERGE_FUNCTIONS,
      // Snapshots every few changes, so their races with deltas happen in short runs.
      textCompaction: { minBytes: 48, maxDeltas: 3 },
    });
    if (storage.isFenced) return; // crashed while opening
    this.watchEvents(s, replica);
    this.mutant?.patchReplica?.(replica, this.mutantContext(s));
    s.replica = replica;
    s.lifetimes++;
    for (const f of this.features) await f.opened?.(s.index, replica, this.featureContext());
  }

  private crash(s: ReplicaSlot, why: string): void {
    if (s.replica === undefined) return;
    this.stats.crashes++;
    s.storage?.fence();
    s.timers.killAll();
    this.net.crash(s.index);
    s.replica = undefined;
    s.storage = undefined;
    s.crashArmedTicks = undefined;
    for (const f of this.features) f.crashed?.(s.index, this.featureContext());
    if (this.pendingCrash?.slot === s) this.pendingCrash = undefined;
    for (const l of this.links) {
      if (l.a !== s.index && l.b !== s.index) continue;
      l.conn = undefined;
      l.drivers = undefined;
      l.dial?.cancel();
      l.dial = undefined;
    }
    this.note(`${s.id} ${why}`, { replicas: [s.index] });
    const downMs =
      this.phase === 'safety' ? between(this.streams.faults, 200, 5000) : between(this.streams.faults, 20, 300);
    s.restart?.cancel();
    s.restart = this.time.after(downMs, `restart ${s.id}`, () => this.restart(s));
  }

  private async restart(s: ReplicaSlot): Promise<void> {
    s.restart?.cancel();
    s.restart = undefined;
    if (s.replica !== undefined) return;
    s.timers = new ReplicaTimers(this.time, s.clock, `timer ${s.id}`);
    s.env = this.envFor(s.index, s.clock, s.timers);
    await this.open(s);
    const reopened = s.replica as Replica | undefined;
    this.note(`${s.id} restarted (lifetime ${s.lifetimes}) at seq ${reopened?.seq ?? '?'}`, { replicas: [s.index] });
    for (const l of this.links) if (l.a === s.index || l.b === s.index) this.dial(l);
  }

  /**
   * Every change event must say whether the document shows a conflict in the state its commit
   * stored, and onConflict must be told of exactly the events that say so.
   */
  private watchEvents(s: ReplicaSlot, replica: Replica): void {
    let last: ChangeEvent | undefined;
    replica.subscribe((e) => {
      last = e;
      const key = docKey(e.collection, e.id);
      let put: { state: Uint8Array; local: boolean } | undefined;
      for (let i = s.log.commits.length - 1; i >= 0 && put === undefined; i--) {
        const c = s.log.commits[i] as CommitRecord;
        const p = c.puts.find((x) => x.key === key && x.seq === e.seq);
        if (p !== undefined) put = { state: p.state, local: c.checkpoint === undefined };
      }
      if (put === undefined) {
        this.violation({
          invariant: 'internal',
          message: `${s.id} reported a change of ${key} at seq ${e.seq} that it never committed`,
          keys: [key],
          replicas: [s.index],
        });
        return;
      }
      const conflict = conflictCount(decodeRecord(put.state), this.modelOf(e.collection)) > 0;
      if (e.conflict !== conflict || (e.origin === 'local') !== put.local) {
        this.violation({
          invariant: 'G3',
          message:
            `${s.id}'s change event for ${key} at seq ${e.seq} says origin ${e.origin}, conflict ${e.conflict}; ` +
            `its commit was ${put.local ? 'local' : 'remote'} and stored ${describeState(decodeRecord(put.state))}`,
          keys: [key],
          replicas: [s.index],
        });
      }
    });
    replica.onConflict((e) => {
      if (last === e && e.conflict) return;
      this.violation({
        invariant: 'G3',
        message: `${s.id} called onConflict for ${e.collection}/${e.id} at seq ${e.seq} without a change event showing a conflict`,
        keys: [docKey(e.collection, e.id)],
        replicas: [s.index],
      });
    });
  }

  private onCommit(s: ReplicaSlot, c: CommitRecord): void {
    if (c.checkpoint === undefined && !c.client && c.puts.length > 0) this.onBackgroundCommit(s, c);
    if (c.checkpoint === undefined || c.puts.length === 0) return;
    const docs = c.puts.map((p) => `${p.key} ${describeState(decodeRecord(p.state))}`);
    this.note(`${s.id} applied from ${c.checkpoint.peer} through ${c.checkpoint.seq}: ${docs.join('; ')}`, {
      keys: c.puts.map((p) => p.key),
      replicas: [s.index],
    });
  }

  /**
   * A commit the replica made by itself: a merge function's resolution written back. It is a
   * write like a client's (its version covered every sibling it resolved), so the record checks
   * hold it to the same rules; its value must be the merge of the siblings it replaced.
   */
  private onBackgroundCommit(s: ReplicaSlot, c: CommitRecord): void {
    const keys = c.puts.map((p) => p.key);
    for (const put of c.puts) {
      // System documents (sequence requests and grants...) are the features' to check.
      if (put.collection.startsWith('_')) continue;
      const model = this.modelOf(put.collection);
      const merge = model.kind === 'record' ? model.mergeAt('') : undefined;
      const prev: RecordState = put.prev === undefined ? EMPTY_RECORD : decodeRecord(put.prev);
      const state = decodeRecord(put.state);
      const problem =
        merge === undefined
          ? `it is not a merge write-back: ${describeState(prev)} -> ${describeState(state)}`
          : writeBackProblem(prev, state, s.id, merge);
      const sibling = state.siblings.find((x) => x.dot.replica === s.id && !vvCovers(prev.context, x.dot));
      if (problem !== undefined || sibling === undefined) {
        this.violation({
          invariant: 'G3',
          message: `${s.id} wrote ${put.key} by itself, wrongly: ${problem ?? 'no new sibling'}`,
          keys: [put.key],
          replicas: [s.index],
        });
        continue;
      }
      const valueText = sibling.value === null ? null : fromUtf8(sibling.value);
      const w: WriteRecord = {
        n: 0,
        replica: s.index,
        collection: put.collection,
        id: put.id,
        key: put.key,
        valueText,
        dot: sibling.dot,
        hlc: sibling.hlc,
        basis: { kind: 'context', vv: prev.context },
        token: 'none',
        prevContext: prev.context,
        batch: undefined,
        atMs: this.time.nowMs,
        ackSeq: this.history.tick(),
        origin: 'merge',
      };
      this.history.writes.push(w);
      this.stats.writeBacks++;
      this.note(`${s.id} merge write-back ${put.key} ${valueText ?? 'del'} -> ${dotToString(sibling.dot)}`, {
        keys,
        replicas: [s.index],
      });
    }
  }

  // ------------------------------------------------------------------ links

  private dial(l: LinkSlot): void {
    l.dial?.cancel();
    l.dial = undefined;
    if (l.conn !== undefined) return;
    const a = this.slots[l.a] as ReplicaSlot;
    const b = this.slots[l.b] as ReplicaSlot;
    if (a.replica === undefined || b.replica === undefined) return; // the restart dials
    if (this.net.isPartitioned(l.a, l.b)) {
      this.redial(l);
      return;
    }
    const conn = this.net.connect(l.a, l.b, (c) => {
      if (l.conn !== c) return;
      l.conn = undefined;
      l.drivers = undefined;
      this.redial(l);
    });
    const options = (env: Env) => ({
      env,
      window: l.window,
      batchDocs: l.batchDocs,
      heartbeatMs: HEARTBEAT_MS,
      deadAfterMs: DEAD_AFTER_MS,
    });
    const da = new SessionDriver(a.replica, conn.ends[0], options(a.env));
    const db = new SessionDriver(b.replica, conn.ends[1], options(b.env));
    l.conn = conn;
    l.drivers = [da, db];
    l.attempts++;
    this.note(`c${conn.id} ${a.id}-${b.id} connected`, { replicas: [l.a, l.b], noise: true });
    da.start();
    db.start();
  }

  /** Dials again after a seeded backoff that grows with the attempts. */
  private redial(l: LinkSlot): void {
    if (l.dial !== undefined) return;
    const rng = this.streams.network;
    const ms = this.phase === 'safety' ? between(rng, 50, 400) * Math.min(1 + l.attempts, 6) : between(rng, 20, 250);
    l.dial = this.time.after(ms, `dial r${l.a}-r${l.b}`, () => this.dial(l));
  }

  private onDelivered(conn: SimConnection, fromSide: 0 | 1, bytes: Uint8Array): void {
    const from = conn.replicas[fromSide];
    const to = conn.replicas[fromSide === 0 ? 1 : 0];
    const tag = bytes[0] ?? 0;
    this.note(`c${conn.id} r${from}>r${to} ${FRAME_TYPES[tag] ?? tag} ${bytes.length}B`, {
      replicas: [from, to],
      noise: true,
    });
    const target = this.slots[to] as ReplicaSlot;
    if (target.crashArmedTicks !== undefined && this.pendingCrash === undefined) {
      this.pendingCrash = { slot: target, ticks: target.crashArmedTicks };
      target.crashArmedTicks = undefined;
    }
  }

  // ------------------------------------------------------------------ workload and faults

  private scheduleOp(): void {
    this.time.after(between(this.streams.workload, 5, 150), 'op', async () => {
      this.opsDone++;
      await runClientOp(this);
      if (this.opsDone < this.options.ops) this.scheduleOp();
    });
  }

  private scheduleFault(): void {
    const kinds = this.options.faults;
    if (kinds.length === 0 || this.phase !== 'safety') return;
    const rng = this.streams.faults;
    this.faultEvent = this.time.after(between(rng, 200, 2500), 'fault', () => {
      this.faultEvent = undefined;
      if (this.phase !== 'safety') return;
      this.inject(rng.pick(kinds));
      this.scheduleFault();
    });
  }

  private inject(kind: FaultKind): void {
    const rng = this.streams.faults;
    switch (kind) {
      case 'crash': {
        const up = this.slots.filter((s) => s.replica !== undefined && s.crashArmedTicks === undefined);
        if (up.length <= 1) return;
        const s = rng.pick(up);
        this.stats.faults.crash++;
        if (chance(rng, 0.5)) {
          this.crash(s, 'crashed');
        } else {
          // Crash in the middle of whatever the next frame to it starts.
          s.crashArmedTicks = between(rng, 1, 40);
          this.note(`${s.id} will crash ${s.crashArmedTicks} turns into its next delivery`, { replicas: [s.index] });
          this.time.after(500, `crash ${s.id}`, () => {
            if (s.crashArmedTicks !== undefined) this.crash(s, 'crashed (no delivery came)');
          });
        }
        return;
      }
      case 'partition': {
        if (this.net.hasPartition) {
          this.partitionHeal?.cancel();
          this.healPartition();
          return;
        }
        const n = this.slots.length;
        let side: Set<number>;
        if (chance(rng, 0.5)) side = new Set([rng.int(n)]);
        else {
          const order = shuffled(
            rng,
            Array.from({ length: n }, (_, i) => i),
          );
          side = new Set(order.slice(0, between(rng, 1, n - 1)));
        }
        const cut = this.linkSpecs.filter(([a, b]) => side.has(a) !== side.has(b));
        if (cut.length === 0) return;
        this.stats.faults.partition++;
        this.net.partition(cut);
        this.note(
          `partition {${[...side].map((i) => `r${i}`).join(',')}} | rest: ${cut.map(([a, b]) => `r${a}-r${b}`).join(' ')} stall`,
          {
            replicas: [...side],
          },
        );
        this.partitionHeal = this.time.after(between(rng, 500, 12_000), 'heal partition', () => this.healPartition());
        return;
      }
      case 'cut': {
        const live = this.links.filter((l) => l.conn !== undefined && !l.conn.dead);
        if (live.length === 0) return;
        const l = rng.pick(live);
        this.stats.faults.cut++;
        this.note(`cut c${l.conn?.id} r${l.a}-r${l.b}`, { replicas: [l.a, l.b] });
        this.net.cut(l.conn as SimConnection, 'connection cut by the simulator');
        return;
      }
      case 'skew': {
        const s = rng.pick(this.slots);
        this.stats.faults.skew++;
        const before = s.clock.skewMs;
        s.clock.skewMs = between(rng, -3000, 3000);
        this.note(`${s.id} clock jumps ${s.clock.skewMs - before} ms (skew ${s.clock.skewMs} ms)`, {
          replicas: [s.index],
        });
        return;
      }
      case 'clockjump': {
        const s = rng.pick(this.slots);
        if (s.jumpRestore !== undefined) return;
        this.stats.faults.clockjump++;
        const before = s.clock.skewMs;
        s.clock.skewMs += between(rng, 61_000, 100_000);
        this.note(`${s.id} clock jumps ${s.clock.skewMs - before} ms ahead, past the skew bound`, {
          replicas: [s.index],
        });
        s.jumpRestore = this.time.after(between(rng, 500, 6000), `clock fix ${s.id}`, () => this.fixClock(s));
        return;
      }
    }
  }

  private healPartition(): void {
    this.partitionHeal = undefined;
    if (!this.net.hasPartition) return;
    this.net.heal();
    this.note('partition healed');
  }

  private fixClock(s: ReplicaSlot): void {
    s.jumpRestore?.cancel();
    s.jumpRestore = undefined;
    s.clock.skewMs = between(this.streams.faults, -1000, 1000);
    this.note(`${s.id} clock fixed (skew ${s.clock.skewMs} ms)`, { replicas: [s.index] });
  }

  // ------------------------------------------------------------------ heal and quiescence

  private async heal(): Promise<void> {
    this.phase = 'heal';
    this.note('heal: faults stop, every replica and link comes back');
    this.faultEvent?.cancel();
    this.partitionHeal?.cancel();
    this.healPartition();
    this.pendingCrash = undefined;
    for (const s of this.slots) {
      s.crashArmedTicks = undefined;
      if (s.jumpRestore !== undefined) this.fixClock(s);
    }
    for (const s of this.slots) if (s.replica === undefined) await this.restart(s);
    for (const l of this.links) if (l.conn === undefined) this.dial(l);
    await this.settle();
  }

  /** Quiet: every session idle and nothing on the wire. */
  private quiescent(): boolean {
    return (
      this.net.pending === 0 &&
      this.monitor.pending === 0 &&
      this.sessionsIdle() &&
      this.features.every((f) => f.busy?.() !== true)
    );
  }

  /** Every replica up, every link connected by exactly one open session pair, each idle. */
  private sessionsIdle(): boolean {
    if (this.net.connections().length !== this.links.length) return false;
    for (const s of this.slots) if (s.replica === undefined) return false;
    for (const l of this.links) {
      if (l.conn === undefined || l.drivers === undefined || l.conn.stalled) return false;
      for (const d of l.drivers) if (!d.idle || d.info().phase !== 'open') return false;
    }
    return true;
  }

  private whyNotQuiet(): string {
    const out: string[] = [];
    for (const s of this.slots) if (s.replica === undefined) out.push(`${s.id} down`);
    for (const f of this.features) if (f.busy?.() === true) out.push(`feature ${f.name} busy`);
    for (const l of this.links) {
      if (l.drivers === undefined) {
        out.push(`r${l.a}-r${l.b} not connected`);
        continue;
      }
      l.drivers.forEach((d, i) => {
        const info = d.info();
        if (!d.idle || info.phase !== 'open') {
          out.push(
            `r${i === 0 ? l.a : l.b}->r${i === 0 ? l.b : l.a} ${info.phase}${d.idle ? '' : ' busy'} acked ${info.acked} ` +
              `checkpoint ${info.checkpoint}${info.closeReason === null ? '' : ` (${info.closeReason.code}: ${info.closeReason.message})`}`,
          );
        }
      });
    }
    out.push(`${this.net.pending} frames queued, ${this.net.connections().length} connections`);
    return out.join('; ');
  }

  /** G5: once quiet, three heartbeats more move nothing but pings and pongs, and record nothing. */
  private async quietRound(): Promise<void> {
    this.phase = 'quiet';
    const sentBefore = [...this.net.stats.sentByTag];
    const commitsBefore = this.slots.map((s) => s.log.commits.length);
    const end = this.time.nowMs + 3 * HEARTBEAT_MS + 500;
    for (;;) {
      const next = this.time.agenda.peekTime();
      if (next === undefined || next > end) break;
      await this.step();
    }
    this.time.nowMs = end;
    const moved: string[] = [];
    this.net.stats.sentByTag.forEach((n, tag) => {
      const d = n - (sentBefore[tag] ?? 0);
      if (d > 0 && tag !== TAG_PING && tag !== TAG_PONG) moved.push(`${d} ${FRAME_TYPES[tag] ?? tag}`);
    });
    const recorded = this.slots.filter((s, i) => s.log.commits.length !== commitsBefore[i]).map((s) => s.id);
    if (moved.length > 0 || recorded.length > 0 || !this.sessionsIdle()) {
      this.violation({
        invariant: 'G5',
        message:
          `after quiescence the cluster did not stay quiet: frames ${moved.join(', ') || 'none'}; ` +
          `commits at ${recorded.join(',') || 'none'}; ${this.sessionsIdle() ? 'sessions idle' : this.whyNotQuiet()}`,
        keys: [],
        replicas: [],
      });
    }
  }

  private async finalChecks(quiet: boolean): Promise<string[]> {
    const keys = new Set<string>();
    for (const w of this.history.writes) keys.add(w.key);
    for (const s of this.slots) for (const k of s.log.current.keys()) keys.add(k);
    const sorted = [...keys].sort();
    const finals: FinalReplica[] = [];
    const views: { replica: number; key: string; view: ReadView | null }[] = [];
    const digests: string[] = [];
    for (const s of this.slots) {
      const replica = s.replica;
      if (replica === undefined) continue;
      const states = new Map<string, Uint8Array>();
      for (const k of sorted) {
        const [collection, id] = splitKey(k);
        const state = await replica.getState(collection, id);
        if (state === undefined) continue;
        const bytes = encodeRecord(state);
        states.set(k, bytes);
        const logged = s.log.current.get(k);
        if (logged === undefined || !bytesEqual(logged, bytes)) {
          this.violation({
            invariant: 'internal',
            message: `the simulator's log of ${s.id} disagrees with its store for ${k}`,
            keys: [k],
            replicas: [s.index],
          });
        }
      }
      const status = replica.status();
      const digest = status.digest;
      digests.push(digest);
      this.checkStatus(s, status, states);
      await this.checkConflictList(s, replica, states);
      this.trace.mix(this.time.nowMs, `${s.id} digest ${digest}`);
      finals.push({ index: s.index, id: s.id, digest, states });
      for (const k of sorted) {
        const [collection, id] = splitKey(k);
        if (collection === TEXT_COLLECTION) continue; // checked by checkTexts
        if (collection.startsWith('_')) continue; // system documents: the features check their own
        const v = await clientRead(this, s.index, { collection, id }, true);
        views.push({
          replica: s.index,
          key: k,
          view:
            v === null
              ? null
              : {
                  valueText: canonicalText(v.value),
                  origin: v.origin,
                  version: v.version,
                  conflicts: v.conflicts.length,
                },
        });
      }
    }
    await this.settle();
    this.checker.checkLogs(
      this.history,
      this.slots.map((s) => s.log),
    );
    this.checker.checkReads(this.history);
    if (quiet) {
      this.checker.checkFinal(this.history, finals, this.time.nowMs);
      const handles = this.slots.flatMap((s) =>
        s.replica === undefined
          ? []
          : [...this.texts.handlesOf(s.replica)].map(([id, h]) => ({
              index: s.index,
              key: docKey(TEXT_COLLECTION, id),
              text: h.toString(),
            })),
      );
      checkTexts(this.texts, finals, handles, (v) => this.violation(v));
      this.checker.checkKinds(
        this.history,
        this.slots.map((s) => s.log),
        finals,
        views,
        this.time.nowMs,
      );
      this.checker.checkSameViews(views, this.time.nowMs);
      const live = this.slots.flatMap((s) =>
        s.replica === undefined ? [] : [{ index: s.index, id: s.id, replica: s.replica }],
      );
      for (const f of this.features) await f.check(live, this.featureContext());
    }
    this.checker.checkWriteBacks(this.history, this.time.nowMs);
    return digests;
  }

  /** The status a replica reports (digest, counts) must be the one its stored states give. */
  private checkStatus(
    s: ReplicaSlot,
    status: { digest: string; docs: number; conflicts: number },
    states: ReadonlyMap<string, Uint8Array>,
  ): void {
    const acc = new Uint8Array(16);
    let docs = 0;
    let conflicts = 0;
    for (const [k, bytes] of states) {
      const [collection, id] = splitKey(k);
      // The digest term of replica.ts: hash128 of the key's two strings and the state bytes.
      const term = hash128(new Encoder(bytes.length + 32).string(collection).string(id).raw(bytes).finish());
      for (let i = 0; i < 16; i++) acc[i] = (acc[i] as number) ^ (term[i] as number);
      const state = decodeRecord(bytes);
      // System documents (settings, sequences) replicate, so they are in the digest, not in the counts.
      if (collection.startsWith('_')) continue;
      if (state.siblings.some((x) => x.value !== null)) docs++;
      if (conflictCount(state, this.modelOf(collection)) > 0) conflicts++;
    }
    const expected = toHex(acc);
    if (expected !== status.digest || docs !== status.docs || conflicts !== status.conflicts) {
      this.violation({
        invariant: 'G2',
        message:
          `${s.id}'s status does not match its stored documents: digest ${status.digest.slice(0, 12)} ` +
          `(states give ${expected.slice(0, 12)}), docs ${status.docs} (${docs}), conflicts ${status.conflicts} (${conflicts})`,
        keys: [],
        replicas: [s.index],
      });
    }
  }

  /** `conflicts()` lists, over all its pages, exactly the documents whose view shows a conflict. */
  private async checkConflictList(
    s: ReplicaSlot,
    replica: Replica,
    states: ReadonlyMap<string, Uint8Array>,
  ): Promise<void> {
    const listed = new Set<string>();
    let after: string | undefined;
    for (let page = 0; page < 100; page++) {
      const { results, next } = await replica.conflicts(after === undefined ? { limit: 50 } : { after, limit: 50 });
      // Constraint entries (kind 'unique', 'reference') are the constraint feature's to check.
      for (const c of results) if (c.kind === 'siblings') listed.add(docKey(c.collection, c.id));
      if (next === null) break;
      after = next;
    }
    const expected = new Set<string>();
    for (const [k, bytes] of states) {
      if (k.startsWith('_')) continue;
      if (conflictCount(decodeRecord(bytes), this.modelOf(splitKey(k)[0])) > 0) expected.add(k);
    }
    const missing = [...expected].filter((k) => !listed.has(k));
    const extra = [...listed].filter((k) => !expected.has(k));
    if (missing.length === 0 && extra.length === 0) return;
    this.violation({
      invariant: 'G3',
      message:
        `${s.id}'s conflicts() ${missing.length > 0 ? `misses ${missing.join(', ')}` : ''}` +
        `${missing.length > 0 && extra.length > 0 ? ' and ' : ''}${extra.length > 0 ? `lists ${extra.join(', ')}, which show no conflict` : ''}`,
      keys: [...missing, ...extra].slice(0, 3),
      replicas: [s.index],
    });
  }

  private note(
    text: string,
    tags: { keys?: readonly string[]; replicas?: readonly number[]; noise?: boolean } = {},
  ): void {
    this.trace.add(this.time.nowMs, text, tags);
  }
}

function splitKey(key: string): [string, string] {
  const at = key.indexOf('/');
  return [key.slice(0, at), key.slice(at + 1)];
}

export interface RunExtras {
  mutant?: MutantSpec;
  /** Keep the trace lines (default true); the fingerprint is computed either way. */
  keepTrace?: boolean;
}

/** Runs one simulation. Never throws for a violation: it returns it. */
export async function runSimulation(options: SimOptions, extras: RunExtras = {}): Promise<SimResult> {
  const resolved = resolveOptions(options);
  const sim = new Simulation(resolved, extras.mutant, extras.keepTrace ?? true);
  return sim.run();
}

export { START_MS, docKey };
