/**
 * The durable triggers under the simulator's faults (src/replication/triggers.ts). Every replica,
 * each time it opens, attaches one `origin` and one `every-replica` trigger (declared at its first
 * open, before anything reaches it); their handlers record what they were given and fail now and
 * then. A commit hook of the feature's own notes the key (dot) of every local write each replica
 * commits, so the check knows every acknowledged write, superseded or not. The operations detach
 * a handler and attach a new one, perhaps while a delivery is in flight.
 *
 * Checks, once the cluster is quiet and every outbox drained:
 *  - every acknowledged write of ours reached the origin trigger of the replica that accepted it
 *    (never skipped, across crashes);
 *  - no origin-trigger delivery ever happened at a replica other than the write's origin;
 *  - for every replica and every document it holds (user collections, text excluded), each entry
 *    of the document's final context `r:c` reached that replica's every-replica trigger, and
 *    those of the replica's own writes also its origin trigger.
 */
import { isTextState } from '../core/index.js';
import type { Replica, Trigger, TriggerEvent } from '../replication/index.js';
import type { FeatureContext, SimFeature } from './features.js';

const ORIGIN = 'origin';
const EVERY = 'every-replica';
/** Short backoff, so failing deliveries are retried within a run's heal bound. */
const RETRY = { minMs: 20, maxMs: 400 };

/** FNV-1a: a deterministic per-event choice that draws nothing from the workload's stream. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A quarter of the events fail their first two attempts: three attempts, one delivery. */
function failsNow(trigger: string, e: TriggerEvent): boolean {
  return hash(`${trigger}|${e.key}`) % 4 === 0 && e.attempt <= 2;
}

const originOf = (key: string): string => key.slice(0, key.lastIndexOf(':'));

class TriggerFeature implements SimFeature {
  readonly name = 'triggers';
  /** Keys each replica's handlers acted on, by trigger, over all its lifetimes. */
  private readonly delivered = new Map<number, { origin: Set<string>; every: Set<string> }>();
  /** The replicas up now, for `busy`. */
  private readonly live = new Map<number, Replica>();
  /** The attached triggers of each live replica, by name, and how to attach them again. */
  private readonly handles = new Map<number, Map<string, { trigger: Trigger; attach: () => Trigger }>>();
  /** Every committed local write: the replica that accepted it, and its key. */
  private readonly acked: { index: number; key: string; doc: string }[] = [];
  /** Origin deliveries at a replica that did not accept the write (should stay empty). */
  private readonly misplaced: { index: number; key: string }[] = [];
  private failed = 0;

  stats(): Record<string, number> {
    let origin = 0;
    let every = 0;
    for (const d of this.delivered.values()) {
      origin += d.origin.size;
      every += d.every.size;
    }
    return {
      'local writes': this.acked.length,
      'origin keys': origin,
      'every-replica keys': every,
      'handler failures': this.failed,
    };
  }

  private seen(index: number): { origin: Set<string>; every: Set<string> } {
    let d = this.delivered.get(index);
    if (d === undefined) {
      d = { origin: new Set(), every: new Set() };
      this.delivered.set(index, d);
    }
    return d;
  }

  async opened(index: number, replica: Replica, ctx: FeatureContext): Promise<void> {
    const lifetime = ctx.lifetime(index);
    const me = ctx.replicaId(index);
    const d = this.seen(index);
    // A handler of a dead process that is still called records nothing: its process is gone.
    const current = (): boolean => ctx.lifetime(index) === lifetime && this.live.get(index) === replica;
    this.live.set(index, replica);
    replica.addCommitHook({
      committed: (changes) => {
        if (!current()) return;
        for (const c of changes) {
          if (c.origin !== 'local' || c.collection.startsWith('_') || isTextState(c.after)) continue;
          const n = c.after.context.get(me) ?? 0;
          if (n > (c.before?.context.get(me) ?? 0))
            this.acked.push({ index, key: `${me}:${n}`, doc: `${c.collection}/${c.id}` });
        }
      },
    });
    const handler =
      (name: string, record: Set<string>) =>
      (e: TriggerEvent): void => {
        if (!current()) throw new Error('process gone');
        if (failsNow(name, e)) {
          this.failed++;
          throw new Error(`simulated failure of ${e.key}, attempt ${e.attempt}`);
        }
        if (name === ORIGIN && originOf(e.key) !== me) this.misplaced.push({ index, key: e.key });
        record.add(e.key);
      };
    const attachOrigin = (): Trigger =>
      replica.on('change', handler(ORIGIN, d.origin), { where: 'origin', retry: RETRY });
    const attachEvery = (): Trigger =>
      replica.on('change', handler(EVERY, d.every), { where: 'every-replica', retry: RETRY });
    const origin = attachOrigin();
    const every = attachEvery();
    this.handles.set(
      index,
      new Map([
        [ORIGIN, { trigger: origin, attach: attachOrigin }],
        [EVERY, { trigger: every, attach: attachEvery }],
      ]),
    );
    // Declared before anything reaches the replica (at its first open; later opens load them).
    await Promise.all([origin.ready, every.ready]).catch(() => undefined);
  }

  crashed(index: number): void {
    this.live.delete(index);
    this.handles.delete(index);
  }

  /** Detaches one trigger's handler and attaches a new one: events wait in the outbox meanwhile. */
  async op(index: number, replica: Replica, ctx: FeatureContext): Promise<void> {
    const handles = this.handles.get(index);
    if (handles === undefined || replica.isClosed) return;
    const name = ctx.rng.pick([ORIGIN, EVERY]);
    const h = handles.get(name);
    if (h === undefined) return;
    const pending = h.trigger.status().pending;
    h.trigger.close();
    h.trigger = h.attach();
    ctx.note(`${ctx.replicaId(index)} trigger ${name} handler replaced (${pending} pending)`, [index]);
  }

  busy(): boolean {
    for (const replica of this.live.values()) {
      if (replica.isClosed) continue;
      if (replica.triggerStatus().some((t) => t.pending > 0)) return true;
    }
    return false;
  }

  async check(
    replicas: readonly { index: number; id: string; replica: Replica }[],
    ctx: FeatureContext,
  ): Promise<void> {
    for (const { index, id, replica } of replicas) {
      const status = replica.triggerStatus();
      for (const name of [ORIGIN, EVERY]) {
        const t = status.find((s) => s.name === name);
        if (t === undefined || !t.attached || t.pending > 0) {
          ctx.violation({
            invariant: 'liveness',
            message: `trigger ${name} at ${id} did not drain: ${JSON.stringify(t ?? null)}`,
            keys: [],
            replicas: [index],
          });
        }
      }
    }
    for (const w of this.acked) {
      if (this.seen(w.index).origin.has(w.key)) continue;
      ctx.violation({
        invariant: 'G1',
        message: `the origin trigger at ${ctx.replicaId(w.index)} never ran for the acknowledged write ${w.key}`,
        keys: [w.doc],
        replicas: [w.index],
      });
    }
    for (const m of this.misplaced) {
      ctx.violation({
        invariant: 'G5',
        message: `the origin trigger ran at ${ctx.replicaId(m.index)} for ${m.key}, a write accepted elsewhere`,
        keys: [],
        replicas: [m.index],
      });
    }
    for (const { index, id, replica } of replicas) await this.checkContexts(index, id, replica, ctx);
  }

  /** Each write in a document's final context reached this replica's triggers. */
  private async checkContexts(index: number, me: string, replica: Replica, ctx: FeatureContext): Promise<void> {
    const d = this.seen(index);
    for (let since = 0; ; ) {
      const page = await replica.changes({ since, limit: 1000 });
      for (const entry of page.results) {
        if (entry.collection.startsWith('_')) continue;
        const state = await replica.getState(entry.collection, entry.id);
        if (state === undefined || isTextState(state)) continue;
        const doc = `${entry.collection}/${entry.id}`;
        for (const [r, c] of state.context) {
          const key = `${r}:${c}`;
          if (!d.every.has(key)) {
            ctx.violation({
              invariant: 'G1',
              message: `the every-replica trigger at ${me} never ran for ${key}, the latest write of ${r} to ${doc} there`,
              keys: [doc],
              replicas: [index],
            });
          }
          if (r === me && !d.origin.has(key)) {
            ctx.violation({
              invariant: 'G1',
              message: `the origin trigger at ${me} never ran for its own write ${key} to ${doc}`,
              keys: [doc],
              replicas: [index],
            });
          }
        }
      }
      if (page.results.length === 0 || page.last_seq <= since) return;
      since = page.last_seq;
    }
  }
}

/** A fresh instance for one simulation (feature-registry.ts). */
export function triggerFeature(): SimFeature {
  return new TriggerFeature();
}
