/**
 * Features the default workload ('full') exercises beside records, kinds and text: each one
 * (time ids and sequences, constraints, triggers) brings its own operations and its own final
 * check, in a file of its own, registered in feature-registry.ts. The simulator calls them at
 * fixed points of a run, so a seed still replays bit for bit.
 *
 * An operation runs inside one simulator event: it must not wait for virtual time to pass
 * (the next event only starts when it returns). Start such waits without awaiting them, and
 * note their outcome when they settle.
 */
import type { Replica } from '../replication/index.js';
import type { Violation } from './checker.js';
import type { SeededRandom } from './prng.js';
import type { CollectionSpec } from './workload.js';

export interface FeatureContext {
  /** The workload's random stream: every draw an operation makes comes from it. */
  readonly rng: SeededRandom;
  nowMs(): number;
  /** Indexes of the replicas that are up now. */
  upReplicas(): number[];
  replica(index: number): Replica | undefined;
  replicaId(index: number): string;
  /** How many times replica `index` has been opened: it changes when it crashes and restarts. */
  lifetime(index: number): number;
  /** Whether the safety phase (faults, workload) is still on. */
  inSafetyPhase(): boolean;
  /**
   * Starts a write at replica `index` as a client's: `start` must begin it synchronously (a
   * replica.put, write, delete...). The simulator holds every commit it did not see a client
   * start to the rules of a merge write-back, so a feature's own writes go through here.
   */
  clientWrite<T>(index: number, start: () => Promise<T>): Promise<T>;
  note(text: string, replicas: readonly number[]): void;
  violation(v: Omit<Violation, 'atMs'>): void;
}

/** A collection a feature writes to, as every replica is configured and as the checker models joins. */
export interface FeatureCollection {
  readonly spec: CollectionSpec;
  /** Settings beyond kind and policy (unique fields, references) given to every replica. */
  readonly options?: Readonly<Record<string, unknown>>;
}

export interface SimFeature {
  readonly name: string;
  /** User collections the feature writes to. */
  readonly collections?: readonly FeatureCollection[];
  /** System collections (names starting with '_') it makes replicas write, for the checker's model of joins. */
  readonly systemCollections?: readonly CollectionSpec[];
  /** Replica `index` opened (at the start, and after every restart), before any operation reaches it. */
  opened?(index: number, replica: Replica, ctx: FeatureContext): Promise<void> | void;
  /** Replica `index` crashed: forget what its process held (handlers, pending waits). */
  crashed?(index: number, ctx: FeatureContext): void;
  /** One random operation of the feature at live replica `index`. */
  op(index: number, replica: Replica, ctx: FeatureContext): Promise<void>;
  /** Counts for the run's summary (numbers handed out, deliveries...), summed over seeds. */
  stats?(): Readonly<Record<string, number>>;
  /** True while the feature still has work in flight (deliveries to retry): the heal waits for it. */
  busy?(): boolean;
  /** Once the cluster is quiet after the heal: the feature's checks over every live replica. */
  check(replicas: readonly { index: number; id: string; replica: Replica }[], ctx: FeatureContext): Promise<void>;
}
