/**
 * Document kinds and conflict policies across a partition, on three real leaders whose every
 * link goes through a fault proxy. Settings are given at one leader and replicate to all; the
 * three are cut apart; each keeps writing counters, maps, sets and records of every policy;
 * the partition heals. Then every leader must show the same thing: increments add up, map
 * edits to different fields both stay, an add beats a concurrent remove, `keep` keeps the
 * siblings, `lww` keeps the later write, and a `merge` collection converges to one merged
 * value, written back by one leader, without a storm of resolution writes.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { startFaultProxy } from '../support/fault-proxy.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { Cluster, FAST_HEARTBEAT, converged, metric, peersLive, putOk, until } from './harness.js';
import type { Leader, Status } from './harness.js';

const cluster = new Cluster('kinds');
let a: Leader;
let b: Leader;
let c: Leader;
let all: Leader[];
const proxies: FaultProxy[] = [];

const INCREMENTS = 1000;
const CONCURRENCY = 20;
/** Documents of the merge collection, each written at all three leaders while partitioned. */
const CARTS = ['cart0', 'cart1', 'cart2', 'cart3'];

/** Collection settings, given at leader a. */
const SETTINGS: Record<string, Record<string, unknown>> = {
  hits: { kind: 'counter', policy: 'keep' },
  notes: {
    kind: 'map',
    policy: 'keep',
    fields: { '/status': { policy: 'lww' }, '/labels': { policy: 'merge', merge: 'union' } },
  },
  tags: { kind: 'set', policy: 'keep' },
  kv: { kind: 'record', policy: 'keep' },
  last: { kind: 'record', policy: 'lww' },
  carts: { kind: 'record', policy: 'merge', merge: 'union' },
};

interface ConflictView {
  path?: string;
  value: unknown;
  deleted: boolean;
  version: string;
  origin: string;
  time: string;
}
interface DocView {
  id: string;
  value: unknown;
  version: string;
  origin: string;
  time: string;
  conflicts: ConflictView[];
}
interface ConflictEntry {
  seq: number;
  collection: string;
  id: string;
  kind: string;
  value: unknown;
  version: string;
  conflicts: ConflictView[];
}

const docUrl = (l: Leader, collection: string, id: string): string =>
  `${l.url}/db/${encodeURIComponent(collection)}/${encodeURIComponent(id)}`;

async function json<T>(res: Response, what: string, status = 200): Promise<T> {
  const text = await res.text();
  if (res.status !== status) throw new Error(`${what}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

async function patchOk(l: Leader, collection: string, id: string, ops: unknown[]): Promise<string> {
  const res = await fetch(docUrl(l, collection, id), {
    method: 'PATCH',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ops }),
  });
  const body = await json<{ id: string; version: string }>(res, `PATCH ${collection}/${id} at ${l.options.id}`);
  return body.version;
}

async function getDoc(l: Leader, collection: string, id: string): Promise<DocView> {
  return json<DocView>(await fetch(docUrl(l, collection, id)), `GET ${collection}/${id} at ${l.options.id}`);
}

async function getConfig(l: Leader, collection: string): Promise<Record<string, unknown>> {
  return json(await fetch(`${l.url}/db/${collection}/_config`), `GET ${collection}/_config at ${l.options.id}`);
}

/** Every document in conflict at `l`, following the pages. */
async function allConflicts(l: Leader, collection?: string): Promise<ConflictEntry[]> {
  const out: ConflictEntry[] = [];
  let after: string | null = null;
  for (;;) {
    const q = new URLSearchParams({ limit: '2' });
    if (collection !== undefined) q.set('collection', collection);
    if (after !== null) q.set('after', after);
    const page = await json<{ results: ConflictEntry[]; next: string | null }>(
      await fetch(`${l.url}/conflicts?${q.toString()}`),
      `GET /conflicts at ${l.options.id}`,
    );
    out.push(...page.results);
    if (page.next === null) return out;
    after = page.next;
  }
}

/** Runs `task(0..total-1)` with at most `width` in flight. */
async function pool(width: number, total: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < total) await task(next++);
    }),
  );
}

/** The counter a leader has minted up to: each local write (a merge write-back included) mints at least one. */
function ownCounter(s: Status): number {
  const v = s.vector[s.replica];
  if (typeof v === 'number') return v;
  return v === undefined ? 0 : (v as { base: number }).base;
}

/** True when none of the leader's links is live (the partition was noticed). */
async function noLiveLink(l: Leader): Promise<boolean> {
  const s = await l.status();
  return s.peers.every((p) => p.state !== 'live');
}

/**
 * Waits until the leaders show one digest, no peer lags, and nothing was written anywhere for
 * `quietMs` (merge write-backs run after the commits that call for them).
 */
async function settled(quietMs = 1000, timeoutMs = 40_000): Promise<Status[]> {
  let last = '';
  let since = Date.now();
  return until(
    'the leaders to converge and go quiet',
    async () => {
      const st = await converged(all, timeoutMs);
      const key = JSON.stringify(st.map((s) => [s.seq, s.digest]));
      if (key !== last) {
        last = key;
        since = Date.now();
        return undefined;
      }
      return Date.now() - since >= quietMs ? st : undefined;
    },
    timeoutMs,
    200,
  );
}

beforeAll(async () => {
  // Merge functions: a module the leaders load, by flag (a, b) or from a config file (c).
  const merges = path.join(cluster.dir, 'merges.mjs');
  writeFileSync(
    merges,
    [
      '/** The sorted union of array values (an element of a non-array counts as itself). */',
      'export function union(values) {',
      '  return [...new Set(values.flatMap((v) => (Array.isArray(v) ? v : [v])).map((v) => JSON.stringify(v)))]',
      '    .sort()',
      '    .map((t) => JSON.parse(t));',
      '}',
      '',
    ].join('\n'),
  );
  const cConfig = path.join(cluster.dir, 'c.json');
  writeFileSync(cConfig, JSON.stringify({ ...FAST_HEARTBEAT, mergeFunctions: 'merges.mjs' }));

  const ports = await cluster.ports(['a', 'b', 'c']);
  const proxyTo = async (id: string): Promise<FaultProxy> => {
    const p = await startFaultProxy({ target: { host: '127.0.0.1', port: ports.get(id) as number } });
    proxies.push(p);
    cluster.onTeardown(() => p.close());
    return p;
  };
  // b dials a, c dials a and b: each link through its own proxy.
  const ba = await proxyTo('a');
  const ca = await proxyTo('a');
  const cb = await proxyTo('b');
  const flag = ['--merge-functions', merges];
  a = cluster.define({ id: 'a', extraArgs: flag }, ports.get('a') as number);
  b = cluster.define({ id: 'b', peers: [ba.url()], extraArgs: flag }, ports.get('b') as number);
  c = cluster.define(
    { id: 'c', peers: [ca.url(), cb.url()], fastHeartbeat: false, extraArgs: ['--config', cConfig] },
    ports.get('c') as number,
  );
  all = [a, b, c];
  await Promise.all(all.map((l) => l.start()));
  await Promise.all([peersLive(a, ['b', 'c']), peersLive(b, ['a', 'c']), peersLive(c, ['a', 'b'])]);
});

afterAll(async () => {
  await cluster.teardown();
});

describe('every kind and policy across a partition of three leaders', () => {
  it('settings given at one leader replicate to every leader', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    for (const [collection, settings] of Object.entries(SETTINGS)) {
      const res = await fetch(`${a.url}/db/${collection}/_config`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(settings),
      });
      const body = await json<Record<string, unknown>>(res, `PUT ${collection}/_config`);
      expect(body).toEqual({ collection, ...settings, replicated: true });
    }
    for (const l of all) {
      for (const [collection, settings] of Object.entries(SETTINGS)) {
        const got = await until(`${collection} settings at ${l.options.id}`, async () => {
          const cfg = await getConfig(l, collection);
          return cfg.replicated === true ? cfg : undefined;
        });
        expect(got, `${collection} at ${l.options.id}`).toEqual({ collection, ...settings, replicated: true });
      }
    }
    // No leader lacks the merge function the settings name.
    for (const l of all) expect(l.output).not.toMatch(/merge functions this leader lacks/);
  });

  it('keeps every write of every kind and shows the same result everywhere after the heal', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    // Common ancestors, seen everywhere before the partition.
    await putOk(a, 'notes', 'n1', { base: 1, same: 'orig', status: 'new' });
    await patchOk(a, 'tags', 't1', [{ op: 'add-to-set', path: '', value: 'x' }]);
    await putOk(a, 'kv', 'k1', { v: 0 });
    await putOk(a, 'last', 'l1', { v: 0 });
    for (const id of CARTS) await putOk(a, 'carts', id, ['base']);
    await converged(all);
    expect((await getDoc(c, 'tags', 't1')).value).toEqual(['x']);
    expect((await getDoc(b, 'notes', 'n1')).value).toEqual({ base: 1, same: 'orig', status: 'new' });

    for (const p of proxies) p.partition();
    await until('every leader to notice the partition', async () =>
      (await Promise.all(all.map(noLiveLink))).every(Boolean),
    );

    // Every leader, cut off from the others, at once.
    const started = Date.now();
    await Promise.all([
      ...all.map((l) =>
        pool(CONCURRENCY, INCREMENTS, () => patchOk(l, 'hits', 'h1', [{ op: 'increment', path: '', by: 1 }])),
      ),
      ...all.flatMap((l) =>
        CARTS.map((id) => putOk(l, 'carts', id, ['base', `from-${l.options.id}`, { at: l.options.id }])),
      ),
      ...all.map((l) => putOk(l, 'kv', 'k1', { by: l.options.id })),
      (async () => {
        // Map: different fields at a and b, and the same fields at both (b later).
        await patchOk(a, 'notes', 'n1', [
          { op: 'set', path: '/title', value: 'A' },
          { op: 'set', path: '/same', value: 'fromA' },
          { op: 'set', path: '/status', value: 'sa' },
          { op: 'set', path: '/labels', value: ['red'] },
        ]);
        await new Promise((r) => setTimeout(r, 5));
        await patchOk(b, 'notes', 'n1', [
          { op: 'set', path: '/body', value: 'B' },
          { op: 'set', path: '/same', value: 'fromB' },
          { op: 'set', path: '/status', value: 'sb' },
          { op: 'set', path: '/labels', value: ['blue'] },
        ]);
      })(),
      (async () => {
        // Set: a removes x, b adds it again concurrently, c adds y.
        await patchOk(a, 'tags', 't1', [{ op: 'remove-from-set', path: '', value: 'x' }]);
        await patchOk(b, 'tags', 't1', [{ op: 'add-to-set', path: '', value: 'x' }]);
        await patchOk(c, 'tags', 't1', [{ op: 'add-to-set', path: '', value: 'y' }]);
      })(),
      (async () => {
        // lww record: a, then b, then c, each a little later.
        for (const l of all) {
          await putOk(l, 'last', 'l1', { by: l.options.id });
          await new Promise((r) => setTimeout(r, 5));
        }
      })(),
    ]);
    const writeMs = Date.now() - started;

    // Still partitioned: each leader counts only its own increments and shows its own writes.
    for (const l of all) {
      expect((await getDoc(l, 'hits', 'h1')).value, `hits at ${l.options.id}`).toBe(INCREMENTS);
      const cart = await getDoc(l, 'carts', 'cart0');
      expect(cart.value).toEqual(['base', `from-${l.options.id}`, { at: l.options.id }]);
      expect(cart.conflicts).toEqual([]);
    }
    // An empty set holds nothing: it reads as absent.
    expect((await fetch(docUrl(a, 'tags', 't1'))).status).toBe(404);

    const before = await Promise.all(all.map((l) => l.status()));
    for (const p of proxies) p.heal();
    const healed = Date.now();
    const after = await settled();
    const settleMs = Date.now() - healed;
    expect(new Set(after.map((s) => s.digest)).size).toBe(1);

    // Counter: every leader's increments add up.
    for (const l of all) {
      const h = await getDoc(l, 'hits', 'h1');
      expect(h.value, `hits at ${l.options.id}`).toBe(3 * INCREMENTS);
      expect(h.conflicts).toEqual([]);
    }

    // Map: both leaders' fields stay; /same (keep) is a conflict, /status (lww) the later
    // write, /labels (merge) the union, all alike everywhere.
    const notes = await Promise.all(all.map((l) => getDoc(l, 'notes', 'n1')));
    const n = notes[0] as DocView;
    for (const d of notes) {
      expect(d.value).toEqual(n.value);
      expect(d.version).toBe(n.version);
      expect(d.conflicts).toEqual(n.conflicts);
    }
    expect(n.value).toEqual({
      base: 1,
      title: 'A',
      body: 'B',
      same: 'fromB',
      status: 'sb',
      labels: ['blue', 'red'],
    });
    expect(n.conflicts.map((x) => [x.path, x.value, x.origin])).toEqual([['/same', 'fromA', 'a']]);

    // Set: the add concurrent with the remove wins.
    for (const l of all) expect((await getDoc(l, 'tags', 't1')).value).toEqual(['x', 'y']);

    // keep record: the three concurrent writes are kept, the same winner everywhere.
    const kvs = await Promise.all(all.map((l) => getDoc(l, 'kv', 'k1')));
    const k = kvs[0] as DocView;
    for (const d of kvs) {
      expect(d.value).toEqual(k.value);
      expect(d.version).toBe(k.version);
      expect(d.conflicts).toEqual(k.conflicts);
    }
    expect([k.value, ...k.conflicts.map((x) => x.value)].map((v) => JSON.stringify(v)).sort()).toEqual(
      all.map((l) => JSON.stringify({ by: l.options.id })).sort(),
    );

    // lww record: the later write, nothing else.
    for (const l of all) {
      const d = await getDoc(l, 'last', 'l1');
      expect(d.value).toEqual({ by: 'c' });
      expect(d.conflicts).toEqual([]);
    }

    // merge record: one merged value everywhere, written back (no siblings left).
    const merged = ['base', 'from-a', 'from-b', 'from-c', { at: 'a' }, { at: 'b' }, { at: 'c' }];
    for (const l of all) {
      for (const id of CARTS) {
        const d = await getDoc(l, 'carts', id);
        expect(d.value, `${id} at ${l.options.id}`).toEqual(merged);
        expect(d.conflicts).toEqual([]);
      }
      const feed = await json<{ results: { collection: string; id: string; conflicts: number }[] }>(
        await fetch(`${l.url}/changes?since=0`),
        'changes',
      );
      for (const e of feed.results.filter((x) => x.collection === 'carts' || x.collection === 'notes')) {
        const want = e.collection === 'notes' ? 1 : 0;
        expect(e.conflicts, `siblings left of ${e.collection}/${e.id} at ${l.options.id}`).toBe(want);
      }
    }

    // /conflicts lists the same documents with the same conflicts at every leader: the map
    // and the keep record, nothing of the merge or lww collections.
    const lists = await Promise.all(all.map((l) => allConflicts(l)));
    const strip = (es: ConflictEntry[]): unknown[] =>
      es
        .map(({ seq: _seq, ...rest }) => rest)
        .sort((x, y) => `${x.collection}/${x.id}`.localeCompare(`${y.collection}/${y.id}`));
    for (const list of lists) expect(strip(list)).toEqual(strip(lists[0] as ConflictEntry[]));
    const first = strip(lists[0] as ConflictEntry[]) as Omit<ConflictEntry, 'seq'>[];
    expect(first.map((e) => `${e.collection}/${e.id}`)).toEqual(['kv/k1', 'notes/n1']);
    expect(first[0]).toMatchObject({ kind: 'siblings', value: k.value, version: k.version, conflicts: k.conflicts });
    expect(first[1]).toMatchObject({ kind: 'siblings', value: n.value, version: n.version, conflicts: n.conflicts });
    for (const l of all) {
      expect(await allConflicts(l, 'carts')).toEqual([]);
      expect(await allConflicts(l, 'last')).toEqual([]);
    }
    for (const s of after) expect(s.conflicts).toBe(2);

    // No storm: the merge write-backs are few, and they are the only writes since the heal
    // (each mints one dot: the leaders' own counters grew by exactly that much).
    const writeBacks = (await Promise.all(all.map((l) => metric(l, 'polyarch_merge_write_backs')))).reduce(
      (x, y) => x + y,
      0,
    );
    const minted = after.reduce((sum, s, i) => sum + ownCounter(s) - ownCounter(before[i] as Status), 0);
    const conflicted = CARTS.length + 1; // the carts and the map's /labels
    console.info(
      `kinds-partition: writes while partitioned ${writeMs} ms, settled ${settleMs} ms after the heal, ` +
        `${writeBacks} merge write-backs for ${conflicted} merged documents, ` +
        `seq growth ${after.map((s, i) => s.seq - (before[i] as Status).seq).join('/')}`,
    );
    expect(minted).toBe(writeBacks);
    expect(writeBacks).toBeGreaterThanOrEqual(conflicted);
    expect(writeBacks).toBeLessThanOrEqual(3 * conflicted);
    await new Promise((r) => setTimeout(r, 1000));
    const later = await Promise.all(all.map((l) => l.status()));
    expect(later.map((s) => [s.seq, s.digest])).toEqual(after.map((s) => [s.seq, s.digest]));
  });
});
