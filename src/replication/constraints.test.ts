import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { seededEnv } from '../env/index.js';
import { openMemoryStorage } from '../storage/memory/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { canonicalJson } from '../crdt/index.js';
import type { JsonValue } from '../core/index.js';
import { Replica } from './replica.js';
import type { ConflictEntry, ReplicaOptions } from './replica.js';

const USERS = { users: { unique: ['email'] } };
const USERS_TASKS = { users: { unique: ['email'] }, tasks: { references: { owner: 'users' } } };

async function open(id: string, extra: Partial<ReplicaOptions> = {}, seed = 1): Promise<Replica> {
  return Replica.open({ id, storage: openMemoryStorage(), env: seededEnv(seed), ...extra });
}

async function sync(from: Replica, to: Replica): Promise<number> {
  const batch = await from.readBatch(0, Number.MAX_SAFE_INTEGER, to.context());
  return (await to.applyRemote(batch.changes, { context: batch.context })).recorded;
}

/** Syncs every pair both ways until nothing new is recorded. */
async function heal(replicas: Replica[]): Promise<void> {
  for (let round = 0; round < 10; round++) {
    let recorded = 0;
    for (const a of replicas) for (const b of replicas) if (a !== b) recorded += await sync(a, b);
    if (recorded === 0) return;
  }
  throw new Error('no fixpoint');
}

async function refusal(p: Promise<unknown>): Promise<DbError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DbError);
  expect((err as DbError).code).toBe(ErrorCode.constraint);
  return err as DbError;
}

/** Every conflicts() entry of the replica, all pages, as comparable tuples. */
async function allEntries(r: Replica, collection?: string): Promise<ConflictEntry[]> {
  const out: ConflictEntry[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await r.conflicts({
      limit: 3,
      ...(after === undefined ? {} : { after }),
      ...(collection === undefined ? {} : { collection }),
    });
    out.push(...page.results);
    if (page.next === null) return out;
    after = page.next;
  }
}

async function constraintEntries(r: Replica): Promise<unknown[]> {
  return (await allEntries(r))
    .filter((e) => e.kind !== 'siblings')
    .map((e) => [e.collection, e.id, e.kind, e.constraint])
    .sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
}

describe('local refusals', () => {
  it('refuses a put giving a document a unique value another shows, with details, and changes nothing', async () => {
    const r = await open('a', { collections: USERS });
    await r.put('users', 'u1', { email: 'alice@x' });
    const before = r.status();
    const err = await refusal(r.put('users', 'u2', { email: 'alice@x' }));
    expect(err.details).toEqual({
      kind: 'unique',
      collection: 'users',
      id: 'u2',
      field: 'email',
      value: 'alice@x',
      other: { collection: 'users', id: 'u1' },
    });
    expect(err.message).toContain('users/u1');
    expect(r.status()).toEqual(before);
    expect(await r.get('users', 'u2')).toBeNull();
    // The refusal left the index as it was: the value is still taken, another is free.
    await refusal(r.put('users', 'u3', { email: 'alice@x' }));
    await r.put('users', 'u2', { email: 'bob@x' });
    expect(r.status().violations).toBe(0);
  });

  it('leaves null and absent values unconstrained, and compares values by canonical JSON', async () => {
    const r = await open('a', { collections: { users: { unique: ['email', '/profile/key'] } } });
    await r.put('users', 'u1', { email: null });
    await r.put('users', 'u2', { email: null });
    await r.put('users', 'u3', { name: 'no email' });
    await r.put('users', 'u4', 'not an object');
    await r.put('users', 'u5', { profile: { key: { a: 1, b: 2 } } });
    const err = await refusal(r.put('users', 'u6', { profile: { key: { b: 2, a: 1 } } }));
    expect(err.details).toMatchObject({ field: '/profile/key', value: { a: 1, b: 2 }, other: { id: 'u5' } });
    // Values of different types differ: "1" is not 1.
    await r.put('users', 'u7', { email: 1 });
    await r.put('users', 'u8', { email: '1' });
  });

  it('lets a document keep its value: rewriting it, or another field, is no violation', async () => {
    const r = await open('a', { collections: USERS });
    await r.put('users', 'u1', { email: 'a@x', n: 1 });
    await r.put('users', 'u1', { email: 'a@x', n: 2 });
    expect((await r.get('users', 'u1'))?.value).toEqual({ email: 'a@x', n: 2 });
  });

  it('refuses a patch of a map that would share a unique value', async () => {
    const r = await open('a', { collections: { users: { kind: 'map', unique: ['email'] } } });
    await r.put('users', 'u1', { email: 'a@x' });
    await r.put('users', 'u2', { email: 'b@x', name: 'bob' });
    const err = await refusal(r.patch('users', 'u2', [{ op: 'set', path: '/email', value: 'a@x' }]));
    expect(err.details).toMatchObject({ kind: 'unique', id: 'u2', value: 'a@x', other: { id: 'u1' } });
    expect((await r.get('users', 'u2'))?.value).toEqual({ email: 'b@x', name: 'bob' });
    await r.patch('users', 'u2', [{ op: 'set', path: '/name', value: 'robert' }]);
    await r.patch('users', 'u1', [{ op: 'remove', path: '/email' }]);
    await r.patch('users', 'u2', [{ op: 'set', path: '/email', value: 'a@x' }]);
  });

  it('judges a batch on the state after all of it: a swap of two values is allowed', async () => {
    const r = await open('a', { collections: USERS });
    await r.put('users', 'u1', { email: 'a@x' });
    await r.put('users', 'u2', { email: 'b@x' });
    await r.write([
      { type: 'put', collection: 'users', id: 'u1', value: { email: 'b@x' } },
      { type: 'put', collection: 'users', id: 'u2', value: { email: 'a@x' } },
    ]);
    expect((await r.get('users', 'u1'))?.value).toEqual({ email: 'b@x' });
    expect((await r.get('users', 'u2'))?.value).toEqual({ email: 'a@x' });
    await refusal(r.put('users', 'u3', { email: 'a@x' }));
  });

  it('refuses a whole batch creating a duplicate: nothing of it is applied', async () => {
    const r = await open('a', { collections: USERS });
    await r.put('users', 'u1', { email: 'a@x' });
    const before = r.status();
    const err = await refusal(
      r.write([
        { type: 'put', collection: 'users', id: 'u0', value: { email: 'fine@x' } },
        { type: 'put', collection: 'users', id: 'u2', value: { email: 'z@x' } },
        { type: 'put', collection: 'users', id: 'u3', value: { email: 'z@x' } },
      ]),
    );
    expect(err.details).toMatchObject({ kind: 'unique', value: 'z@x' });
    expect(r.status()).toEqual(before);
    for (const id of ['u0', 'u2', 'u3']) expect(await r.get('users', id)).toBeNull();
    // The index forgot the refused batch: its values are free.
    await r.put('users', 'u2', { email: 'z@x' });
    await r.put('users', 'u0', { email: 'fine@x' });
  });

  it('refuses a reference to an absent or deleted document, and a reference that is not a string', async () => {
    const r = await open('a', { collections: USERS_TASKS });
    const err = await refusal(r.put('tasks', 't1', { owner: 'ghost' }));
    expect(err.details).toEqual({
      kind: 'reference',
      collection: 'tasks',
      id: 't1',
      field: 'owner',
      value: 'ghost',
      other: { collection: 'users', id: 'ghost' },
    });
    await r.put('users', 'u1', { email: 'a@x' });
    await r.delete('users', 'u1');
    await refusal(r.put('tasks', 't1', { owner: 'u1' }));
    await refusal(r.put('tasks', 't1', { owner: 42 }));
    await r.put('tasks', 't1', { owner: null, title: 'unowned' });
    await r.put('users', 'u1', { email: 'a@x' });
    await r.put('tasks', 't1', { owner: 'u1' });
    // Creating the target and the referrer in one batch is fine.
    await r.write([
      { type: 'put', collection: 'tasks', id: 't2', value: { owner: 'u2' } },
      { type: 'put', collection: 'users', id: 'u2', value: { email: 'b@x' } },
    ]);
  });

  it('refuses to delete a referenced document (RESTRICT) until nothing live references it', async () => {
    const r = await open('a', { collections: USERS_TASKS });
    await r.put('users', 'u1', { email: 'a@x' });
    await r.put('tasks', 't1', { owner: 'u1' });
    await r.put('tasks', 't2', { owner: 'u1' });
    const err = await refusal(r.delete('users', 'u1'));
    expect(err.details).toEqual({
      kind: 'reference',
      collection: 'users',
      id: 'u1',
      field: 'owner',
      value: 'u1',
      other: { collection: 'tasks', id: 't1' },
    });
    expect(await r.get('users', 'u1')).not.toBeNull();
    await r.delete('tasks', 't1');
    await refusal(r.delete('users', 'u1'));
    // Deleting the last referrer and the target together is fine.
    await r.write([
      { type: 'delete', collection: 'tasks', id: 't2' },
      { type: 'delete', collection: 'users', id: 'u1' },
    ]);
    expect(await r.get('users', 'u1')).toBeNull();
  });

  it('forgets what a commit another hook aborted had changed', async () => {
    const r = await open('a', { collections: USERS_TASKS });
    await r.put('users', 'u1', { email: 'a@x' });
    r.addCommitHook({
      beforeCommit: (_tx, changes) => {
        if (changes.some((c) => c.id === 'boom')) throw new Error('another feature refused');
      },
    });
    await expect(
      r.write([
        { type: 'put', collection: 'users', id: 'u2', value: { email: 'b@x' } },
        { type: 'delete', collection: 'users', id: 'u1' },
        { type: 'put', collection: 'users', id: 'boom', value: {} },
      ]),
    ).rejects.toThrow('another feature refused');
    await refusal(r.put('users', 'u3', { email: 'a@x' }));
    await r.put('users', 'u3', { email: 'b@x' });
    await r.put('tasks', 't1', { owner: 'u1' });
    expect(r.status().violations).toBe(0);
  });

  it('handles a collection referencing itself', async () => {
    const r = await open('a', { collections: { people: { references: { manager: 'people' } } } });
    await r.put('people', 'boss', { manager: 'boss' });
    await r.put('people', 'p1', { manager: 'boss' });
    await refusal(r.delete('people', 'boss'));
    await r.delete('people', 'p1');
    await r.delete('people', 'boss');
    expect(r.status().violations).toBe(0);
  });

  it('refuses the settings on counters and sets, and does not constrain other collections', async () => {
    const r = await open('a', { collections: USERS });
    await expect(r.configure('hits', { kind: 'counter', unique: ['n'] })).rejects.toMatchObject({
      code: ErrorCode.invalidInput,
    });
    await r.put('other', 'o1', { email: 'a@x' });
    await r.put('other', 'o2', { email: 'a@x' });
  });
});

describe('violations after replication', () => {
  it('flags the same duplicate on every leader after a partition heals, and clears it everywhere once fixed', async () => {
    const [a, b, c] = await Promise.all(['a', 'b', 'c'].map((id, i) => open(id, { collections: USERS }, i + 1)));
    const rs = [a, b, c] as Replica[];
    const ua = a as Replica;
    const ub = b as Replica;
    await ua.put('users', 'u2', { email: 'alice@x' });
    await ub.put('users', 'u1', { email: 'alice@x' });
    await ub.put('users', 'u3', { email: 'carol@x' });
    await heal(rs);
    const expected = [['users', 'u2', 'unique', { field: 'email', value: 'alice@x', winner: 'u1' }]];
    for (const r of rs) {
      expect(await constraintEntries(r)).toEqual(expected);
      expect(r.status().violations).toBe(1);
      // The sibling conflict count is unchanged: there is none.
      expect(r.status().conflicts).toBe(0);
      expect((await r.get('users', 'u2'))?.violations).toEqual([
        { kind: 'unique', field: 'email', value: 'alice@x', winner: 'u1' },
      ]);
      expect((await r.get('users', 'u1'))?.violations).toBeUndefined();
    }
    // conflicts() is the same everywhere, but for the local feed positions.
    const entries = await Promise.all(rs.map(async (r) => (await allEntries(r)).map(({ seq: _, ...e }) => e)));
    expect(entries[1]).toEqual(entries[0]);
    expect(entries[2]).toEqual(entries[0]);
    expect(entries[0]).toEqual([
      expect.objectContaining({ collection: 'users', id: 'u2', kind: 'unique', value: { email: 'alice@x' } }),
    ]);
    // Local writes to the flagged document that keep the value are not refused.
    await (c as Replica).put('users', 'u2', { email: 'alice@x', name: 'a2' });
    // The fix at one leader clears the flag everywhere.
    await (c as Replica).put('users', 'u2', { email: 'alice2@x' });
    await heal(rs);
    for (const r of rs) {
      expect(await constraintEntries(r)).toEqual([]);
      expect(r.status().violations).toBe(0);
      expect((await r.conflicts()).results).toEqual([]);
    }
  });

  it('flags a reference whose target was deleted concurrently, and clears it when the target is recreated', async () => {
    const [a, b] = await Promise.all(['a', 'b'].map((id, i) => open(id, { collections: USERS_TASKS }, i + 1)));
    const ra = a as Replica;
    const rb = b as Replica;
    await ra.put('users', 'u1', { email: 'a@x' });
    await heal([ra, rb]);
    await ra.delete('users', 'u1');
    await rb.put('tasks', 't1', { owner: 'u1', title: 'write docs' });
    await heal([ra, rb]);
    for (const r of [ra, rb]) {
      expect(await constraintEntries(r)).toEqual([
        ['tasks', 't1', 'reference', { field: 'owner', target: { collection: 'users', id: 'u1' } }],
      ]);
      expect(r.status().violations).toBe(1);
      expect((await r.conflicts({ collection: 'users' })).results).toEqual([]);
      expect((await r.conflicts({ collection: 'tasks' })).results).toHaveLength(1);
    }
    await rb.put('users', 'u1', { email: 'a@x' });
    await heal([ra, rb]);
    for (const r of [ra, rb]) {
      expect(await constraintEntries(r)).toEqual([]);
      expect(r.status().violations).toBe(0);
    }
  });

  it('lists a document with both a siblings entry and a constraint entry', async () => {
    const [a, b] = await Promise.all(['a', 'b'].map((id, i) => open(id, { collections: USERS }, i + 1)));
    const ra = a as Replica;
    const rb = b as Replica;
    // Concurrent writes of u2: its winner is x@x or y@x, and either is held by a lesser id.
    await ra.put('users', 'u1', { email: 'y@x' });
    await ra.put('users', 'u2', { email: 'x@x' });
    await rb.put('users', 'u0', { email: 'x@x' });
    await rb.put('users', 'u2', { email: 'y@x' });
    await heal([ra, rb]);
    const listed = (await allEntries(ra)).map((e) => [e.id, e.kind]);
    expect(listed).toEqual([
      ['u2', 'siblings'],
      ['u2', 'unique'],
    ]);
    expect((await allEntries(rb)).map((e) => [e.id, e.kind])).toEqual(listed);
    expect(await constraintEntries(ra)).toEqual(await constraintEntries(rb));
    expect(ra.status()).toMatchObject({ conflicts: 1, violations: 1 });
  });

  it('flags duplicates already there when the settings arrive after the data, instead of refusing', async () => {
    const r = await open('a');
    await r.put('users', 'u3', { email: 'a@x' });
    await r.put('users', 'u1', { email: 'a@x' });
    await r.put('users', 'u2', { email: 'a@x' });
    await r.put('tasks', 't1', { owner: 'nobody' });
    await r.configure('users', { unique: ['email'] });
    await r.configure('tasks', { references: { owner: 'users' } });
    await r.settled();
    expect(await constraintEntries(r)).toEqual([
      ['tasks', 't1', 'reference', { field: 'owner', target: { collection: 'users', id: 'nobody' } }],
      ['users', 'u2', 'unique', { field: 'email', value: 'a@x', winner: 'u1' }],
      ['users', 'u3', 'unique', { field: 'email', value: 'a@x', winner: 'u1' }],
    ]);
    expect(r.status().violations).toBe(3);
    // Settings replicate: another leader flags the same.
    const other = await open('b', {}, 2);
    await sync(r, other);
    await other.settled();
    expect(await constraintEntries(other)).toEqual(await constraintEntries(r));
    // Dropping the setting drops the flags.
    await r.configure('users', {});
    await r.settled();
    expect((await constraintEntries(r)).map((e) => (e as unknown[])[0])).toEqual(['tasks']);
  });

  it('rebuilds its indexes on open from the stored data', async () => {
    const storage = openMemoryStorage();
    const r = await Replica.open({ id: 'a', storage, env: seededEnv(1), collections: USERS });
    const other = await open('b', { collections: USERS }, 2);
    await r.put('users', 'u1', { email: 'a@x' });
    await other.put('users', 'u0', { email: 'a@x' });
    await sync(other, r);
    expect(r.status().violations).toBe(1);
    // A second replica over the same store builds its indexes from what is stored.
    const again = await Replica.open({ id: 'a', storage, env: seededEnv(1), collections: USERS });
    expect(again.status().violations).toBe(1);
    await refusal(again.put('users', 'u5', { email: 'a@x' }));
  });
});

// ---------------------------------------------------------------- property

type Op =
  | { kind: 'put-user'; at: number; id: number; email: number | null }
  | { kind: 'del-user'; at: number; id: number }
  | { kind: 'put-task'; at: number; id: number; owner: number | null }
  | { kind: 'del-task'; at: number; id: number }
  | { kind: 'sync'; from: number; to: number };

const replicaIx = fc.integer({ min: 0, max: 2 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('put-user' as const),
    at: replicaIx,
    id: fc.integer({ min: 0, max: 4 }),
    email: fc.option(fc.integer({ min: 0, max: 2 })),
  }),
  fc.record({ kind: fc.constant('del-user' as const), at: replicaIx, id: fc.integer({ min: 0, max: 4 }) }),
  fc.record({
    kind: fc.constant('put-task' as const),
    at: replicaIx,
    id: fc.integer({ min: 0, max: 3 }),
    owner: fc.option(fc.integer({ min: 0, max: 4 })),
  }),
  fc.record({ kind: fc.constant('del-task' as const), at: replicaIx, id: fc.integer({ min: 0, max: 3 }) }),
  fc.record({ kind: fc.constant('sync' as const), from: replicaIx, to: replicaIx }),
);

/** The constraint entries a direct computation from the live values gives. */
async function expectedEntries(r: Replica): Promise<unknown[]> {
  const users = (await r.list('users', { limit: 1000 })).results;
  const tasks = (await r.list('tasks', { limit: 1000 })).results;
  const out: unknown[] = [];
  const byEmail = new Map<string, string[]>();
  for (const u of users) {
    const email = (u.value as { email?: JsonValue }).email;
    if (email === undefined || email === null) continue;
    const k = canonicalJson(email);
    byEmail.set(k, [...(byEmail.get(k) ?? []), u.id]);
  }
  for (const [k, ids] of byEmail) {
    const winner = [...ids].sort()[0] as string;
    for (const id of ids) {
      if (id !== winner) out.push(['users', id, 'unique', { field: 'email', value: JSON.parse(k), winner }]);
    }
  }
  const live = new Set(users.map((u) => u.id));
  for (const t of tasks) {
    const owner = (t.value as { owner?: JsonValue }).owner;
    if (typeof owner === 'string' && !live.has(owner)) {
      out.push(['tasks', t.id, 'reference', { field: 'owner', target: { collection: 'users', id: owner } }]);
    }
  }
  return out.sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));
}

describe('property: every replica lists exactly the violations its final values give', () => {
  it('random writes from a tiny domain at 3 replicas, random exchanges, then a full exchange', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 60 }), async (ops) => {
        const rs = await Promise.all(['a', 'b', 'c'].map((id, i) => open(id, { collections: USERS_TASKS }, i + 1)));
        for (const op of ops) {
          const r = rs[op.kind === 'sync' ? op.from : op.at] as Replica;
          try {
            if (op.kind === 'sync') await sync(r, rs[op.to] as Replica);
            else if (op.kind === 'put-user')
              await r.put('users', `u${op.id}`, op.email === null ? { name: 'n' } : { email: `e${op.email}` });
            else if (op.kind === 'put-task')
              await r.put('tasks', `t${op.id}`, { owner: op.owner === null ? null : `u${op.owner}` });
            else
              await r.delete(
                op.kind === 'del-user' ? 'users' : 'tasks',
                `${op.kind === 'del-user' ? 'u' : 't'}${op.id}`,
              );
          } catch (e) {
            // Refusals and deletes of what is not there are the expected outcomes of random writes.
            if (!(e instanceof DbError) || (e.code !== ErrorCode.constraint && e.code !== ErrorCode.notFound)) throw e;
          }
          // Local refusals keep the invariants: what each replica lists is what its values give.
          if (op.kind !== 'sync') expect(await constraintEntries(r)).toEqual(await expectedEntries(r));
        }
        await heal(rs);
        const expected = await expectedEntries(rs[0] as Replica);
        for (const r of rs) {
          expect(await constraintEntries(r)).toEqual(expected);
          expect(r.status().violations).toBe(expected.length);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('onViolation', () => {
  it('tells of documents flagged and cleared, including one flagged by another document arriving', async () => {
    const a = await open('a', { collections: USERS_TASKS });
    const b = await open('b', { collections: USERS_TASKS }, 2);
    await a.put('users', 'u1', { email: 'x@y' });
    await heal([a, b]);
    const heard: { at: string; collection: string; id: string; kinds: string[] }[] = [];
    for (const r of [a, b]) {
      r.onViolation((e) =>
        heard.push({ at: r.id, collection: e.collection, id: e.id, kinds: e.violations.map((v) => v.kind) }),
      );
    }
    // Apart: one email taken at each side, and a task naming u1 at a while b deletes u1.
    await a.put('users', 'u3', { email: 'dup@y' });
    await b.put('users', 'u2', { email: 'dup@y' });
    await a.put('tasks', 't1', { owner: 'u1' });
    await b.delete('users', 'u1');
    expect(heard).toEqual([]); // nothing is broken at either leader alone
    await heal([a, b]);
    // At a, u3 is flagged by u2's arrival: u3 itself did not change there.
    const flagged = (at: string): string[] =>
      heard
        .filter((h) => h.at === at && h.kinds.length > 0)
        .map((h) => `${h.collection}/${h.id} ${h.kinds.join(',')}`)
        .sort();
    expect(flagged('a')).toEqual(['tasks/t1 reference', 'users/u3 unique']);
    expect(flagged('b')).toEqual(['tasks/t1 reference', 'users/u3 unique']);
    heard.length = 0;
    await b.put('users', 'u3', { email: 'other@y' });
    await a.put('users', 'u1', { email: 'back@y' });
    await heal([a, b]);
    const cleared = (at: string): string[] =>
      heard
        .filter((h) => h.at === at && h.kinds.length === 0)
        .map((h) => `${h.collection}/${h.id}`)
        .sort();
    expect(cleared('a')).toEqual(['tasks/t1', 'users/u3']);
    expect(cleared('b')).toEqual(['tasks/t1', 'users/u3']);
    expect(heard.filter((h) => h.kinds.length > 0)).toEqual([]);
  });
});
