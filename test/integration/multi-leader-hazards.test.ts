/**
 * What breaks under multi-leader, end to end on three real leaders (eu, us, ap; ap reaches the
 * others only through fault proxies, so it can be cut off). Sequence numbers, server-made ids,
 * unique fields and references are taken and written on both sides of a partition; after the
 * heal every number and every id is still distinct, and what the leaders accepted apart that
 * breaks a constraint is listed alike by every leader's `GET /conflicts` until it is fixed.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { startFaultProxy } from '../support/fault-proxy.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { Cluster, converged, getOk, listAll, peersLive, putOk, until } from './harness.js';
import type { Leader, Status } from './harness.js';

const cluster = new Cluster('hazards');
let eu: Leader;
let us: Leader;
let ap: Leader;
let all: Leader[];
const proxies: FaultProxy[] = [];

const BLOCK_SIZE = 5;

/** Every sequence number any leader handed out, with where and when (phase) it was taken. */
const numbers: { at: string; phase: string; value: number }[] = [];
/** Every id POST /db/notes returned. */
const noteIds: string[] = [];

interface Reply {
  status: number;
  body: Record<string, unknown>;
}

interface SequenceView {
  name: string;
  allocator: string;
  blockSize: number;
  blocks: [number, number][];
  remaining: number;
  requested: number;
  granted: number;
  last: number | null;
}

interface ConflictEntry {
  seq: number;
  collection: string;
  id: string;
  kind: string;
  value: unknown;
  constraint?: unknown;
}

async function call(l: Leader, method: string, path: string, body?: unknown): Promise<Reply> {
  const res = await fetch(`${l.url}${path}`, {
    method,
    ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>) };
}

async function callOk<T>(l: Leader, method: string, path: string, body?: unknown, status = 200): Promise<T> {
  const r = await call(l, method, path, body);
  if (r.status !== status)
    throw new Error(`${method} ${path} at ${l.options.id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as T;
}

/** One number from the leader; waits up to `waitMs` for a block. */
async function takeNumber(l: Leader, phase: string, waitMs = 10_000): Promise<Reply> {
  const r = await call(l, 'POST', `/sequences/invoice/next?waitMs=${waitMs}`);
  if (r.status === 200) {
    expect(r.body.name).toBe('invoice');
    const value = r.body.value as number;
    expect(Number.isSafeInteger(value), `number from ${l.options.id}: ${JSON.stringify(r.body)}`).toBe(true);
    numbers.push({ at: l.options.id, phase, value });
  }
  return r;
}

async function takeNumbers(l: Leader, phase: string, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const r = await takeNumber(l, phase);
    if (r.status !== 200) throw new Error(`next at ${l.options.id} (${phase}): ${r.status} ${JSON.stringify(r.body)}`);
  }
}

async function postNotes(l: Leader, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const body = await callOk<{ id: string; version: string }>(l, 'POST', '/db/notes', { by: l.options.id, i }, 201);
    noteIds.push(body.id);
  }
}

async function sequenceAt(l: Leader): Promise<SequenceView> {
  return callOk<SequenceView>(l, 'GET', '/sequences/invoice');
}

/** Every entry of `GET /conflicts` at `l`, following the pages. */
async function allConflicts(l: Leader): Promise<ConflictEntry[]> {
  const out: ConflictEntry[] = [];
  let after: string | null = null;
  for (;;) {
    const q: string = after === null ? '' : `?after=${after}`;
    const page = await callOk<{ results: ConflictEntry[]; next: string | null }>(l, 'GET', `/conflicts${q}`);
    out.push(...page.results);
    if (page.next === null) return out;
    after = page.next;
  }
}

/** The entries without their feed position (local to each leader), in document order. */
function comparable(entries: ConflictEntry[]): Omit<ConflictEntry, 'seq'>[] {
  return entries
    .map(({ seq: _seq, ...rest }) => rest)
    .sort((x, y) => `${x.collection}/${x.id}/${x.kind}`.localeCompare(`${y.collection}/${y.id}/${y.kind}`));
}

interface FullStatus extends Status {
  violations: number;
}

/** Waits until every leader shows one digest with no lag and no sequence request is outstanding. */
async function settled(timeoutMs = 60_000): Promise<FullStatus[]> {
  return until(
    'the leaders to converge with every block request granted',
    async () => {
      const seqs = await Promise.all(all.map(sequenceAt));
      if (seqs.some((s) => s.requested !== s.granted)) return undefined;
      const st = await converged(all, 15_000);
      // A grant may have landed after the sequence views were read: check them again.
      const again = await Promise.all(all.map(sequenceAt));
      return again.every((s, i) => s.granted === seqs[i]?.granted && s.requested === s.granted)
        ? (st as FullStatus[])
        : undefined;
    },
    timeoutMs,
    200,
  );
}

beforeAll(async () => {
  const ports = await cluster.ports(['eu', 'us', 'ap']);
  const proxyTo = async (id: string): Promise<FaultProxy> => {
    const p = await startFaultProxy({ target: { host: '127.0.0.1', port: ports.get(id) as number } });
    proxies.push(p);
    cluster.onTeardown(() => p.close());
    return p;
  };
  // us dials eu directly; ap dials eu and us, each through its own proxy.
  const apEu = await proxyTo('eu');
  const apUs = await proxyTo('us');
  eu = cluster.define({ id: 'eu' }, ports.get('eu') as number);
  us = cluster.define({ id: 'us', peers: [eu.url] }, ports.get('us') as number);
  ap = cluster.define({ id: 'ap', peers: [apEu.url(), apUs.url()] }, ports.get('ap') as number);
  all = [eu, us, ap];
  await Promise.all(all.map((l) => l.start()));
  await Promise.all([peersLive(eu, ['us', 'ap']), peersLive(us, ['eu', 'ap']), peersLive(ap, ['eu', 'us'])]);
});

afterAll(async () => {
  await cluster.teardown();
});

describe('sequences, ids, unique fields and references across a partition of three leaders', () => {
  it('configures a sequence and constraints at one leader, and every leader gets them', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    expect(await callOk(eu, 'PUT', '/sequences/invoice', { allocator: 'eu', blockSize: BLOCK_SIZE })).toMatchObject({
      name: 'invoice',
      allocator: 'eu',
      blockSize: BLOCK_SIZE,
    });
    expect(await callOk(eu, 'PUT', '/db/users/_config', { unique: ['email'] })).toMatchObject({
      collection: 'users',
      unique: ['email'],
      replicated: true,
    });
    expect(await callOk(eu, 'PUT', '/db/tasks/_config', { references: { owner: 'users' } })).toMatchObject({
      collection: 'tasks',
      references: { owner: 'users' },
      replicated: true,
    });
    for (const l of all) {
      const seq = await until(`the sequence at ${l.options.id}`, async () => {
        const r = await call(l, 'GET', '/sequences/invoice');
        return r.status === 200 ? r.body : undefined;
      });
      expect(seq, `sequence at ${l.options.id}`).toMatchObject({ allocator: 'eu', blockSize: BLOCK_SIZE });
      for (const [collection, want] of [
        ['users', { unique: ['email'] }],
        ['tasks', { references: { owner: 'users' } }],
      ] as const) {
        const cfg = await until(`${collection} settings at ${l.options.id}`, async () => {
          const c = await callOk<Record<string, unknown>>(l, 'GET', `/db/${collection}/_config`);
          return c.replicated === true ? c : undefined;
        });
        expect(cfg, `${collection} settings at ${l.options.id}`).toMatchObject({ collection, ...want });
      }
    }
  });

  it('while connected: numbers and ids at every leader, duplicates and dangling references refused', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await Promise.all(all.map((l) => takeNumbers(l, 'connected', 3)));
    await Promise.all(all.map((l) => postNotes(l, 4)));

    await putOk(eu, 'users', 'u1', { email: 'a@x' });
    await until('u1 to reach us', () => us.get('users', 'u1').then((d) => d ?? undefined));
    const dup = await call(us, 'PUT', '/db/users/u1b', { email: 'a@x' });
    expect(dup.status).toBe(409);
    expect(dup.body).toMatchObject({
      error: 'constraint_violation',
      details: { kind: 'unique', field: 'email', value: 'a@x', other: { collection: 'users', id: 'u1' } },
    });
    expect(await us.get('users', 'u1b')).toBeNull();

    const dangling = await call(ap, 'PUT', '/db/tasks/t0', { owner: 'ghost' });
    expect(dangling.status).toBe(409);
    expect(dangling.body).toMatchObject({
      error: 'constraint_violation',
      details: { kind: 'reference', field: 'owner', other: { collection: 'users', id: 'ghost' } },
    });
    expect(await ap.get('tasks', 't0')).toBeNull();

    // Before the cut: every leader has everything, and no block request is left unanswered.
    const st = await settled();
    for (const s of st) expect(s).toMatchObject({ conflicts: 0, violations: 0 });
    for (const l of all) expect((await listAll(l, 'notes')).size).toBe(noteIds.length);
  });

  it('while ap is cut off: it hands out only what it holds; both sides accept halves of violations', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    const held = await sequenceAt(ap);
    expect(held.remaining).toBeGreaterThan(0);
    const heldNumbers = held.blocks.flatMap(([from, to]) => Array.from({ length: to - from + 1 }, (_, i) => from + i));
    expect(heldNumbers).toHaveLength(held.remaining);

    for (const p of proxies) p.partition();
    await until('the partition to be noticed on both sides', async () => {
      const [e, u, a] = await Promise.all(all.map((l) => l.status()));
      const apLive = (s: Status | undefined): boolean =>
        s?.peers.some((p) => p.id === 'ap' && p.state === 'live') ?? true;
      return !apLive(e) && !apLive(u) && (a?.peers.every((p) => p.state !== 'live') ?? false);
    });

    let exhausted: Reply | undefined;
    const apNumbers: number[] = [];
    await Promise.all([
      (async () => {
        // Short waits: no grant can come while cut off.
        for (let i = 0; i < 3 * BLOCK_SIZE && exhausted === undefined; i++) {
          const r = await takeNumber(ap, 'partitioned', 300);
          if (r.status === 200) apNumbers.push(r.body.value as number);
          else exhausted = r;
        }
      })(),
      takeNumbers(eu, 'partitioned', 4 * BLOCK_SIZE),
      takeNumbers(us, 'partitioned', 4 * BLOCK_SIZE),
      postNotes(ap, 10),
      postNotes(eu, 10),
      putOk(eu, 'users', 'u2', { email: 'dup@x' }),
      putOk(ap, 'users', 'u3', { email: 'dup@x' }),
      (async () => {
        expect((await call(eu, 'DELETE', '/db/users/u1')).status).toBe(200);
      })(),
      putOk(ap, 'tasks', 't1', { owner: 'u1' }),
    ]);

    // ap ran dry after handing out exactly the numbers of the blocks it held, and said why.
    expect(exhausted, `ap handed out ${apNumbers.length} numbers and never ran dry`).toBeDefined();
    expect(exhausted?.status).toBe(503);
    expect(exhausted?.body).toMatchObject({ error: 'sequence_exhausted' });
    expect(typeof exhausted?.body.message).toBe('string');
    expect(apNumbers.length).toBeLessThan(3 * BLOCK_SIZE);
    expect(apNumbers).toEqual(heldNumbers);
    // Asked again without waiting, it still refuses: it holds no number.
    const dry = await call(ap, 'POST', '/sequences/invoice/next?waitMs=0');
    expect(dry.status).toBe(503);
    expect((await sequenceAt(ap)).remaining).toBe(0);

    // Still cut off: each side sees only its own half.
    expect(await ap.get('users', 'u1')).not.toBeNull();
    expect(await eu.get('users', 'u1')).toBeNull();
    expect(await eu.get('users', 'u3')).toBeNull();
    expect(await ap.get('users', 'u2')).toBeNull();
    expect(await eu.get('tasks', 't1')).toBeNull();
    for (const s of await Promise.all(all.map((l) => l.status()))) {
      expect((s as FullStatus).violations, `violations at ${s.replica} while cut off`).toBe(0);
    }
  });

  it('after the heal: numbers and ids all distinct, violations listed alike everywhere until fixed', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    for (const p of proxies) p.heal();
    const healedAt = Date.now();
    await Promise.all([peersLive(eu, ['us', 'ap'], 60_000), peersLive(us, ['eu', 'ap'], 60_000)]);
    await peersLive(ap, ['eu', 'us'], 60_000);

    // ap gets numbers again once its request reaches the allocator and the grant comes back.
    const again = await until(
      'ap to hand out a number again',
      async () => {
        const r = await takeNumber(ap, 'healed', 2000);
        return r.status === 200 ? r.body.value : undefined;
      },
      60_000,
      200,
    );
    expect(typeof again).toBe('number');
    const healedMs = Date.now() - healedAt;
    await takeNumbers(us, 'healed', 2);

    const st = await settled();
    expect(new Set(st.map((s) => s.digest)).size).toBe(1);

    // No number was handed out twice, anywhere, in any phase.
    const values = numbers.map((n) => n.value);
    const repeated = values.filter((v, i) => values.indexOf(v) !== i);
    expect(repeated, JSON.stringify(numbers)).toEqual([]);
    expect(numbers.filter((n) => n.phase === 'partitioned' && n.at !== 'ap').length).toBe(8 * BLOCK_SIZE);
    // No id was made twice, and every note made anywhere is everywhere.
    expect(new Set(noteIds).size).toBe(noteIds.length);
    expect(noteIds.length).toBe(3 * 4 + 2 * 10);
    for (const l of all) {
      const notes = await listAll(l, 'notes');
      expect(
        noteIds.filter((id) => !notes.has(id)),
        `notes missing at ${l.options.id}`,
      ).toEqual([]);
      expect(notes.size).toBe(noteIds.length);
    }

    console.info(
      `multi-leader-hazards: ${numbers.length} numbers (ap: ${numbers.filter((n) => n.at === 'ap').length}), ` +
        `${noteIds.length} ids; ap handed out a number ${healedMs} ms after the heal`,
    );

    // Both halves of each violation are kept; every leader flags the same documents.
    const lists = await Promise.all(all.map(allConflicts));
    const want = [
      {
        collection: 'tasks',
        id: 't1',
        kind: 'reference',
        value: { owner: 'u1' },
        constraint: { field: 'owner', target: { collection: 'users', id: 'u1' } },
      },
      {
        collection: 'users',
        id: 'u3',
        kind: 'unique',
        value: { email: 'dup@x' },
        constraint: { field: 'email', value: 'dup@x', winner: 'u2' },
      },
    ];
    for (const [i, list] of lists.entries()) {
      const at = all[i]?.options.id ?? '?';
      expect(comparable(list), `conflicts at ${at}`).toEqual(comparable(lists[0] as ConflictEntry[]));
      expect(
        comparable(list).map(({ collection, id, kind, value, constraint }) => ({
          collection,
          id,
          kind,
          value,
          constraint,
        })),
        `conflicts at ${at}`,
      ).toEqual(want);
    }
    for (const s of st) expect(s, `status of ${s.replica}`).toMatchObject({ conflicts: 0, violations: 2 });
    for (const l of all) {
      expect((await getOk(l, 'users', 'u2')).value).toEqual({ email: 'dup@x' });
      expect((await getOk(l, 'users', 'u3')).value).toEqual({ email: 'dup@x' });
      expect(await l.get('users', 'u1')).toBeNull();
      const t1 = (await getOk(l, 'tasks', 't1')) as unknown as Record<string, unknown>;
      expect(t1.violations, `t1 at ${l.options.id}`).toEqual([
        { kind: 'reference', field: 'owner', target: { collection: 'users', id: 'u1' } },
      ]);
      const u2 = (await getOk(l, 'users', 'u2')) as unknown as Record<string, unknown>;
      expect(u2, `u2 (the winner) at ${l.options.id}`).not.toHaveProperty('violations');
    }

    // Fixed at two different leaders: cleared at all three.
    await putOk(us, 'users', 'u3', { email: 'other@x' });
    await putOk(ap, 'users', 'u1', { email: 'a@x' });
    const fixed = await settled();
    expect(new Set(fixed.map((s) => s.digest)).size).toBe(1);
    for (const s of fixed) expect(s, `status of ${s.replica}`).toMatchObject({ conflicts: 0, violations: 0 });
    for (const l of all) {
      expect(await allConflicts(l), `conflicts at ${l.options.id}`).toEqual([]);
      expect((await getOk(l, 'users', 'u1')).value).toEqual({ email: 'a@x' });
      expect(await getOk(l, 'tasks', 't1')).not.toHaveProperty('violations');
    }
  });
});
