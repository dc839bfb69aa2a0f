/**
 * Unique fields and references under the simulator's faults (src/replication/constraints.ts).
 * `users` has a unique `email` drawn from a tiny domain and `tasks` reference users through
 * `owner`; operations put and delete both at random live replicas, so partitions make
 * duplicates and dangling references that no leader could refuse. Local refusals
 * (constraint_violation), deletes of what is not there (not_found) and writes cut short by a
 * crash (closed) are expected outcomes; any other error is a violation.
 *
 * Check, once the cluster is quiet: every replica's constraint entries of `conflicts()` are
 * exactly those its final values give (the least id keeps a shared email, every other is
 * flagged; a task naming a user absent there is flagged), `status().violations` counts them,
 * and every replica lists the same ones.
 */
import { canonicalJson } from '../crdt/index.js';
import type { JsonValue } from '../core/index.js';
import type { Replica } from '../replication/index.js';
import type { ConflictEntry } from '../replication/replica.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import type { FeatureContext, SimFeature } from './features.js';

const USERS = 'users';
const TASKS = 'tasks';
const USER_IDS = 6;
const TASK_IDS = 5;
const EMAILS = 3;

/** Errors an operation may meet without anything being wrong. */
const EXPECTED: readonly string[] = [ErrorCode.constraint, ErrorCode.notFound, ErrorCode.closed, ErrorCode.unavailable];

type Listed = [collection: string, id: string, kind: string, constraint: unknown];

const byText = (a: Listed, b: Listed): number => {
  const x = JSON.stringify(a);
  const y = JSON.stringify(b);
  return x < y ? -1 : x > y ? 1 : 0;
};

class ConstraintFeature implements SimFeature {
  readonly name = 'constraints';
  readonly collections = [
    { spec: { name: USERS, kind: 'record', policy: 'keep' } as const, options: { unique: ['email'] } },
    { spec: { name: TASKS, kind: 'record', policy: 'keep' } as const, options: { references: { owner: USERS } } },
  ];
  private refused = 0;
  /** Users created once and never written again, so a duplicate made apart lasts to the end. */
  private created = 0;
  private flagged = 0;
  /** Per replica, what onViolation last said of each document (seeded from conflicts() at open). */
  private readonly heard = new Map<number, Map<string, string>>();

  async opened(index: number, replica: Replica): Promise<void> {
    const heard = new Map<string, string>();
    this.heard.set(index, heard);
    // What is flagged already when the process starts (its indexes are built at open).
    const byDoc = new Map<string, unknown[]>();
    for (const [collection, id, kind, constraint] of await listedOf(replica)) {
      const k = `${collection}/${id}`;
      byDoc.set(k, [...(byDoc.get(k) ?? []), { kind, ...(constraint as object) }]);
    }
    for (const [k, v] of byDoc) heard.set(k, canonicalJson(v as JsonValue));
    replica.onViolation((e) => {
      if (this.heard.get(index) !== heard) return; // a process that is gone
      const k = `${e.collection}/${e.id}`;
      if (e.violations.length === 0) heard.delete(k);
      else heard.set(k, canonicalJson(e.violations as unknown as JsonValue));
    });
  }

  crashed(index: number): void {
    this.heard.delete(index);
  }

  stats(): Record<string, number> {
    return { 'local refusals': this.refused, 'flagged after the heal': this.flagged };
  }

  async op(index: number, replica: Replica, ctx: FeatureContext): Promise<void> {
    const roll = ctx.rng.int(12);
    const me = ctx.replicaId(index);
    let what: string;
    let key: string;
    let write: () => Promise<unknown>;
    if (roll >= 10) {
      await this.signUpTwice(index, ctx);
      return;
    } else if (roll < 4) {
      const id = `u${ctx.rng.int(USER_IDS)}`;
      const email = ctx.rng.int(EMAILS + 1);
      const value = email === EMAILS ? { name: id } : { email: `e${email}@x` };
      key = `${USERS}/${id}`;
      what = `put ${key} ${JSON.stringify(value)}`;
      write = () => replica.put(USERS, id, value);
    } else if (roll < 5) {
      const id = `u${ctx.rng.int(USER_IDS)}`;
      key = `${USERS}/${id}`;
      what = `delete ${key}`;
      write = () => replica.delete(USERS, id);
    } else if (roll < 9) {
      const id = `t${ctx.rng.int(TASK_IDS)}`;
      const owner = ctx.rng.int(USER_IDS + 1);
      const value = { owner: owner === USER_IDS ? null : `u${owner}` };
      key = `${TASKS}/${id}`;
      what = `put ${key} ${JSON.stringify(value)}`;
      write = () => replica.put(TASKS, id, value);
    } else {
      const id = `t${ctx.rng.int(TASK_IDS)}`;
      key = `${TASKS}/${id}`;
      what = `delete ${key}`;
      write = () => replica.delete(TASKS, id);
    }
    try {
      await ctx.clientWrite(index, write);
      ctx.note(`${me} constraint ${what}`, [index]);
    } catch (e) {
      if (e instanceof DbError && EXPECTED.includes(e.code)) {
        if (e.code === ErrorCode.constraint) this.refused++;
        ctx.note(`${me} constraint ${what} refused: ${e.code}`, [index]);
        return;
      }
      ctx.violation({
        invariant: 'internal',
        message: `${me} constraint ${what} failed unexpectedly: ${(e as Error).message}`,
        keys: [key],
        replicas: [index],
      });
    }
  }

  /**
   * Two users sign up with one new email at two leaders at the same moment: both leaders
   * accept (neither has the other's write yet), as two datacenters would. Neither user is
   * written again, so the duplicate lasts to the end of the run, where every replica must flag
   * the same one.
   */
  private async signUpTwice(index: number, ctx: FeatureContext): Promise<void> {
    const others = ctx.upReplicas().filter((i) => i !== index);
    if (others.length === 0) return;
    const second = ctx.rng.pick(others);
    const n = this.created++;
    const email = `p${n}@x`;
    const writes = [index, second].map(async (i, side) => {
      const replica = ctx.replica(i);
      if (replica === undefined) return;
      const id = `s${n}${side === 0 ? 'a' : 'b'}`;
      try {
        await ctx.clientWrite(i, () => replica.put(USERS, id, { email }, { ifAbsent: true }));
        ctx.note(`${ctx.replicaId(i)} constraint create ${USERS}/${id} ${email}`, [i]);
      } catch (e) {
        if (e instanceof DbError && EXPECTED.includes(e.code)) return;
        ctx.violation({
          invariant: 'internal',
          message: `${ctx.replicaId(i)} constraint create ${USERS}/${id} failed unexpectedly: ${(e as Error).message}`,
          keys: [`${USERS}/${id}`],
          replicas: [i],
        });
      }
    });
    await Promise.all(writes);
  }

  async check(
    replicas: readonly { index: number; id: string; replica: Replica }[],
    ctx: FeatureContext,
  ): Promise<void> {
    let first: { id: string; listed: Listed[] } | undefined;
    for (const { index, id, replica } of replicas) {
      await replica.settled();
      const listed = await listedOf(replica);
      const expected = await expectedOf(replica);
      const fail = (message: string): void =>
        ctx.violation({
          invariant: 'G3',
          message,
          keys: listed.slice(0, 3).map((l) => `${l[0]}/${l[1]}`),
          replicas: [index],
        });
      if (JSON.stringify(listed) !== JSON.stringify(expected)) {
        fail(
          `${id}'s constraint entries ${JSON.stringify(listed)} differ from its values' ${JSON.stringify(expected)}`,
        );
      }
      const count = replica.status().violations;
      if (count !== listed.length)
        fail(`${id}'s status counts ${count} violations; conflicts() lists ${listed.length}`);
      // What onViolation told, over the process's life, must be what conflicts() lists now.
      const told = this.heard.get(index) ?? new Map<string, string>();
      const byDoc = new Map<string, unknown[]>();
      for (const [collection, docId, kind, constraint] of listed) {
        const k = `${collection}/${docId}`;
        byDoc.set(k, [...(byDoc.get(k) ?? []), { kind, ...(constraint as object) }]);
      }
      const shown = new Map([...byDoc].map(([k, v]) => [k, canonicalJson(v as JsonValue)]));
      const differ = [...new Set([...told.keys(), ...shown.keys()])].filter((k) => told.get(k) !== shown.get(k));
      if (differ.length > 0) {
        fail(
          `${id}'s onViolation events disagree with its conflicts() for ${differ
            .map((k) => `${k} (told ${told.get(k) ?? 'nothing'}, listed ${shown.get(k) ?? 'nothing'})`)
            .join('; ')}`,
        );
      }
      if (first === undefined) first = { id, listed };
      else if (JSON.stringify(first.listed) !== JSON.stringify(listed)) {
        fail(
          `${id} and ${first.id} list different constraint entries: ${JSON.stringify(listed)} and ${JSON.stringify(first.listed)}`,
        );
      }
    }
    this.flagged = first?.listed.length ?? 0;
    ctx.note(`constraints: ${this.refused} local refusals; ${this.flagged} violations after the heal`, []);
  }
}

/** Every constraint entry `conflicts()` lists, over all its pages, sorted. */
async function listedOf(replica: Replica): Promise<Listed[]> {
  const out: Listed[] = [];
  let after: string | undefined;
  for (let page = 0; page < 1000; page++) {
    const { results, next } = await replica.conflicts(after === undefined ? { limit: 50 } : { after, limit: 50 });
    for (const e of results as ConflictEntry[]) {
      if (e.kind !== 'siblings') out.push([e.collection, e.id, e.kind, e.constraint]);
    }
    if (next === null) break;
    after = next;
  }
  return out.sort(byText);
}

/** The entries a direct computation from the replica's live values gives. */
async function expectedOf(replica: Replica): Promise<Listed[]> {
  const users = (await replica.list(USERS, { limit: 1000 })).results;
  const tasks = (await replica.list(TASKS, { limit: 1000 })).results;
  const out: Listed[] = [];
  const byEmail = new Map<string, string[]>();
  for (const u of users) {
    const email = fieldOf(u.value, 'email');
    if (email === undefined || email === null) continue;
    const k = canonicalJson(email);
    byEmail.set(k, [...(byEmail.get(k) ?? []), u.id]);
  }
  for (const [k, ids] of byEmail) {
    const winner = ids.reduce((a, b) => (b < a ? b : a));
    for (const id of ids) {
      if (id !== winner) out.push([USERS, id, 'unique', { field: 'email', value: JSON.parse(k), winner }]);
    }
  }
  const live = new Set(users.map((u) => u.id));
  for (const t of tasks) {
    const owner = fieldOf(t.value, 'owner');
    if (typeof owner === 'string' && !live.has(owner)) {
      out.push([TASKS, t.id, 'reference', { field: 'owner', target: { collection: USERS, id: owner } }]);
    }
  }
  return out.sort(byText);
}

function fieldOf(value: JsonValue, field: string): JsonValue | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? value[field] : undefined;
}

/** A fresh instance for one simulation (feature-registry.ts). */
export function constraintFeature(): SimFeature {
  return new ConstraintFeature();
}
