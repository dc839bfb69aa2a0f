/**
 * Time ids and sequences under the simulator's faults (src/core/time-id.ts,
 * src/replication/sequences.ts). Replica 0 configures the sequence `sim-seq` with itself as
 * allocator and blocks of 5 numbers, so that partitioned leaders run out, ask, wait and get
 * grants within a short run. The operations call `nextval` at a live replica (without waiting
 * for it: a leader short of numbers waits for a grant in virtual time; the outcome is noted
 * when it settles) or make a few `newId`s.
 *
 * Checks:
 *  - every number any `nextval` returned, at every replica and across crashes, is distinct
 *    (a crash may lose numbers, never repeat one);
 *  - every id `newId` returned is distinct, and ids of one process lifetime increase;
 *  - once the cluster is quiet, no leader still waits for a block it asked for (the
 *    allocator is up and connected, so every request must have been granted).
 */
import { decodeTimeId } from '../core/index.js';
import type { Replica } from '../replication/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import type { FeatureContext, SimFeature } from './features.js';

const SEQUENCE = 'sim-seq';
const BLOCK_SIZE = 5;
const WAIT_MS = 300;

class SequenceFeature implements SimFeature {
  readonly name = 'sequences';
  readonly systemCollections = [{ name: '_sequences', kind: 'record', policy: 'lww' }] as const;
  /** Who returned each number: replica index and lifetime. */
  private readonly numbers = new Map<number, { index: number; lifetime: number }>();
  private readonly ids = new Map<string, { index: number; lifetime: number }>();
  /** The last id each replica's current lifetime made. */
  private readonly lastId = new Map<number, { lifetime: number; id: string }>();
  /** nextval calls still waiting, per replica (dropped when it crashes: its timers die with it). */
  private readonly waiting = new Map<number, number>();
  private outcomes = { returned: 0, exhausted: 0, unknown: 0, lost: 0, handovers: 0 };

  async opened(index: number, replica: Replica, ctx: FeatureContext): Promise<void> {
    this.waiting.delete(index);
    if (index !== 0) return;
    // At the first open, and again should that first configure have been lost to a crash.
    try {
      await replica.sequenceStatus(SEQUENCE);
    } catch (e) {
      if (!(e instanceof DbError) || e.code !== ErrorCode.notFound) throw e;
      await replica
        .configureSequence(SEQUENCE, { allocator: ctx.replicaId(0), blockSize: BLOCK_SIZE })
        .catch(() => undefined);
      ctx.note(`${ctx.replicaId(0)} configures sequence ${SEQUENCE} (block ${BLOCK_SIZE})`, [0]);
    }
  }

  /** At the allocator (as this replica sees it): hands the sequence over to another leader. */
  private async handOver(index: number, replica: Replica, ctx: FeatureContext): Promise<void> {
    const me = ctx.replicaId(index);
    const others = ctx.upReplicas().filter((i) => i !== index);
    if (others.length === 0) return;
    const to = ctx.replicaId(ctx.rng.pick(others));
    try {
      if ((await replica.sequenceStatus(SEQUENCE)).allocator !== me) return;
      await replica.configureSequence(SEQUENCE, { allocator: to, blockSize: BLOCK_SIZE });
      this.outcomes.handovers++;
      ctx.note(`${me} hands sequence ${SEQUENCE} over to ${to}`, [index]);
    } catch (e) {
      // Not configured here yet, or the process died under the write.
      if (e instanceof DbError && (e.code === ErrorCode.notFound || e.code === ErrorCode.closed)) return;
      ctx.violation({
        invariant: 'internal',
        message: `${me} could not hand sequence ${SEQUENCE} over to ${to}: ${(e as Error).message}`,
        keys: [],
        replicas: [index],
      });
    }
  }

  crashed(index: number): void {
    this.waiting.delete(index);
    this.lastId.delete(index);
  }

  async op(index: number, replica: Replica, ctx: FeatureContext): Promise<void> {
    if (replica.isClosed) return;
    const lifetime = ctx.lifetime(index);
    const me = ctx.replicaId(index);
    const current = (): boolean => ctx.lifetime(index) === lifetime && ctx.replica(index) === replica;
    const roll = ctx.rng.next();
    if (roll < 0.06) {
      await this.handOver(index, replica, ctx);
      return;
    }
    if (roll < 0.6) {
      this.waiting.set(index, (this.waiting.get(index) ?? 0) + 1);
      const settled = (): void => {
        if (current()) this.waiting.set(index, (this.waiting.get(index) ?? 1) - 1);
      };
      replica.nextval(SEQUENCE, { waitMs: WAIT_MS }).then(
        (n) => {
          settled();
          // A process that is gone returned nothing to anyone.
          if (!current()) return;
          this.outcomes.returned++;
          ctx.note(`${me} nextval ${SEQUENCE} = ${n}`, [index]);
          const before = this.numbers.get(n);
          if (before !== undefined) {
            ctx.violation({
              invariant: 'internal',
              message: `sequence ${SEQUENCE}: ${n} handed out twice, by ${ctx.replicaId(before.index)} (lifetime ${before.lifetime}) and ${me} (lifetime ${lifetime})`,
              keys: [],
              replicas: [before.index, index],
            });
          }
          this.numbers.set(n, { index, lifetime });
        },
        (e: unknown) => {
          settled();
          if (!current()) return;
          const code = e instanceof DbError ? e.code : 'error';
          if (code === ErrorCode.sequenceExhausted) this.outcomes.exhausted++;
          else if (code === ErrorCode.notFound) this.outcomes.unknown++;
          else this.outcomes.lost++;
          ctx.note(`${me} nextval ${SEQUENCE} failed: ${code}`, [index]);
          if (code !== ErrorCode.sequenceExhausted && code !== ErrorCode.notFound && code !== ErrorCode.closed) {
            ctx.violation({
              invariant: 'internal',
              message: `nextval at ${me} failed unexpectedly: ${(e as Error).message}`,
              keys: [],
              replicas: [index],
            });
          }
        },
      );
      return;
    }
    const count = 1 + ctx.rng.int(3);
    for (let i = 0; i < count; i++) this.noteId(index, lifetime, replica.newId(), ctx);
  }

  private noteId(index: number, lifetime: number, id: string, ctx: FeatureContext): void {
    const me = ctx.replicaId(index);
    const fail = (message: string): void =>
      ctx.violation({ invariant: 'internal', message, keys: [], replicas: [index] });
    const before = this.ids.get(id);
    if (before !== undefined) {
      fail(`newId ${id} made twice: at ${ctx.replicaId(before.index)} (lifetime ${before.lifetime}) and ${me}`);
    }
    this.ids.set(id, { index, lifetime });
    if (decodeTimeId(id)?.replica !== me) fail(`newId at ${me} made ${id}, which does not name it`);
    const last = this.lastId.get(index);
    if (last !== undefined && last.lifetime === lifetime && !(id > last.id)) {
      fail(`newId at ${me} made ${id} after ${last.id}: not increasing`);
    }
    this.lastId.set(index, { lifetime, id });
  }

  stats(): Record<string, number> {
    const o = this.outcomes;
    return { numbers: o.returned, exhausted: o.exhausted, handovers: o.handovers, ids: this.ids.size };
  }

  busy(): boolean {
    for (const n of this.waiting.values()) if (n > 0) return true;
    return false;
  }

  async check(
    replicas: readonly { index: number; id: string; replica: Replica }[],
    ctx: FeatureContext,
  ): Promise<void> {
    const o = this.outcomes;
    ctx.note(
      `sequences: ${o.returned} numbers, ${o.exhausted} exhausted, ${o.unknown} before the settings arrived, ${o.lost} lost; ${this.ids.size} ids`,
      [],
    );
    if (!replicas.some((r) => r.index === 0)) return;
    for (const { index, id, replica } of replicas) {
      let status;
      try {
        status = await replica.sequenceStatus(SEQUENCE);
      } catch (e) {
        ctx.violation({
          invariant: 'liveness',
          message: `sequence ${SEQUENCE} unknown at ${id} after the heal: ${(e as Error).message}`,
          keys: [],
          replicas: [index],
        });
        continue;
      }
      if (status.requested > status.granted) {
        ctx.violation({
          invariant: 'liveness',
          message: `${id} asked for ${status.requested} blocks of ${SEQUENCE} and was granted ${status.granted}, after the heal`,
          keys: [],
          replicas: [index],
        });
      }
    }
  }
}

export function sequenceFeature(): SimFeature {
  return new SequenceFeature();
}
