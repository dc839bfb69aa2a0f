/**
 * PATCH, collection settings and GET /conflicts over real HTTP, against a leader started in
 * this process (`startServer`, on loopback). Every bad operation or setting is 400 with
 * `{ error, message }` (a stale If-Match 409) and changes nothing: not the document, not the
 * feed head, not the digest, not the settings. Conflicts are made with a second, embedded
 * replica whose concurrent writes arrive through `applyChanges`; /conflicts pages through all
 * of them with `after`, and its longpoll and event-stream forms wake when one arrives.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openReplica } from '../../src/index.js';
import type { Database } from '../../src/index.js';
import { resolveConfig } from '../../src/server/config.js';
import { startServer } from '../../src/server/serve.js';
import type { RunningServer } from '../../src/server/serve.js';

let server: RunningServer;
/** Another leader, embedded: its writes are concurrent with the server's until applied there. */
let other: Database;

interface Answer {
  status: number;
  body: unknown;
}

async function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body: parsed };
}

async function ok<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
  const a = await call(method, path, body, headers);
  if (a.status < 200 || a.status > 299) throw new Error(`${method} ${path}: ${a.status} ${JSON.stringify(a.body)}`);
  return a.body as T;
}

const patch = (collection: string, id: string, ops: unknown, headers?: Record<string, string>): Promise<Answer> =>
  call('PATCH', `/db/${collection}/${id}`, { ops }, headers);

/** Sends the other replica's writes to the server (they arrive as a peer's would). */
async function deliver(): Promise<void> {
  await server.db.applyChanges(await other.changesSince(server.db.vector()));
}

interface ConflictEntry {
  seq: number;
  collection: string;
  id: string;
  kind: string;
  value: unknown;
  version: string;
  conflicts: { path?: string; value: unknown; deleted: boolean; version: string; origin: string; time: string }[];
}

/** Everything a refused request must leave as it was. */
async function snapshot(): Promise<unknown> {
  const s = await ok<{ seq: number; digest: string; docs: number; conflicts: number }>('GET', '/status');
  const docs: Record<string, unknown> = {};
  for (const [c, id] of [
    ['notes', 'd1'],
    ['notes', 'fresh'],
    ['hits', 'c1'],
    ['tags', 's1'],
    ['recs', 'r1'],
  ] as const) {
    docs[`${c}/${id}`] = await call('GET', `/db/${c}/${id}`);
  }
  const configs: Record<string, unknown> = {};
  for (const c of ['notes', 'hits', 'tags', 'recs', 'fresh']) configs[c] = await ok('GET', `/db/${c}/_config`);
  return { seq: s.seq, digest: s.digest, docs: s.docs, conflicts: s.conflicts, documents: docs, configs };
}

beforeAll(async () => {
  server = await startServer(resolveConfig({ id: 'eu', port: 0, data: ':memory:', logLevel: 'silent' }));
  other = await openReplica({ id: 'us', storage: 'memory' });
  await ok('PUT', '/db/notes/_config', { kind: 'map', policy: 'keep' });
  await ok('PUT', '/db/hits/_config', { kind: 'counter' });
  await ok('PUT', '/db/tags/_config', { kind: 'set' });
  await ok('PUT', '/db/recs/_config', { kind: 'record', policy: 'keep' });
  // The other replica takes the server's settings, as a peer would.
  await other.applyChanges(await server.db.changesSince(other.vector()));
  await ok('PUT', '/db/notes/d1', { title: 'hello', n: 1, nested: { a: 1 } });
  await ok('PATCH', '/db/hits/c1', { ops: [{ op: 'increment', path: '', by: 5 }] });
  await ok('PATCH', '/db/tags/s1', { ops: [{ op: 'add-to-set', path: '', value: 'x' }] });
  await ok('PUT', '/db/recs/r1', { v: 1 });
});

afterAll(async () => {
  await server.close();
  await other.close();
});

describe('PATCH and the merged view', () => {
  it('patches a map, a counter and a set, and GET shows the merged JSON view', async () => {
    const r = await ok<{ id: string; version: string }>('PATCH', '/db/notes/p1', {
      ops: [
        { op: 'set', path: '/title', value: 'T' },
        { op: 'set', path: '/meta/owner', value: 'ann' },
        { op: 'increment', path: '/views', by: 3 },
        { op: 'add-to-set', path: '/labels', value: 'b' },
        { op: 'add-to-set', path: '/labels', value: 'a' },
        { op: 'add-to-set', path: '/labels', value: { y: 1, x: 2 } },
      ],
    });
    expect(r).toEqual({ id: 'p1', version: expect.any(String) as unknown });
    await ok('PATCH', '/db/notes/p1', {
      ops: [
        { op: 'increment', path: '/views', by: -1 },
        // The same element however its keys are ordered.
        { op: 'remove-from-set', path: '/labels', value: { x: 2, y: 1 } },
        { op: 'remove', path: '/meta' },
      ],
    });
    const doc = await ok<{ value: unknown; version: string; conflicts: unknown[] }>('GET', '/db/notes/p1');
    expect(doc.value).toEqual({ title: 'T', views: 2, labels: ['a', 'b'] });
    expect(doc.conflicts).toEqual([]);
    expect((await ok<{ value: unknown }>('GET', '/db/hits/c1')).value).toBe(5);
    expect((await ok<{ value: unknown }>('GET', '/db/tags/s1')).value).toEqual(['x']);
  });
});

describe('bad operations are 400 and change nothing', () => {
  const increment = { op: 'increment', path: '', by: 1 };
  const cases: Record<string, () => Promise<Answer>> = {
    'an unknown op': () => patch('notes', 'd1', [{ op: 'frobnicate', path: '/title' }]),
    'an op that is not an object': () => patch('notes', 'd1', ['set']),
    'a set without a path': () => patch('notes', 'd1', [{ op: 'set', value: 1 }]),
    'a set without a value': () => patch('notes', 'd1', [{ op: 'set', path: '/title' }]),
    'an increment without by': () => patch('notes', 'd1', [{ op: 'increment', path: '/n' }]),
    'an increment by 1.5': () => patch('notes', 'd1', [{ op: 'increment', path: '/n', by: 1.5 }]),
    'an increment by "1"': () => patch('notes', 'd1', [{ op: 'increment', path: '/n', by: '1' }]),
    'an increment past the safe integers': () =>
      patch('hits', 'c1', [{ op: 'increment', path: '', by: Number.MAX_SAFE_INTEGER }]),
    'a remove with a value': () => patch('notes', 'd1', [{ op: 'remove', path: '/title', value: 1 }]),
    'a path that is not a JSON pointer': () => patch('notes', 'd1', [{ op: 'set', path: 'title', value: 1 }]),
    'a path with a bad escape': () => patch('notes', 'd1', [{ op: 'set', path: '/a~2b', value: 1 }]),
    'a path that is a number': () => patch('notes', 'd1', [{ op: 'set', path: 5, value: 1 }]),
    'a set at "" on a map': () => patch('notes', 'd1', [{ op: 'set', path: '', value: { title: 'x' } }]),
    'an increment of a field holding a string': () =>
      patch('notes', 'd1', [{ op: 'increment', path: '/title', by: 1 }]),
    'an add-to-set of a field holding a string': () =>
      patch('notes', 'd1', [{ op: 'add-to-set', path: '/title', value: 1 }]),
    'a set below a field holding a string': () => patch('notes', 'd1', [{ op: 'set', path: '/title/x', value: 1 }]),
    'a good op followed by a bad one': () =>
      patch('notes', 'd1', [
        { op: 'set', path: '/added', value: 1 },
        { op: 'increment', path: '/title', by: 1 },
      ]),
    'a bad op on an absent document': () => patch('notes', 'fresh', [{ op: 'increment', path: '/n', by: 1.5 }]),
    'an add-to-set on a counter': () => patch('hits', 'c1', [{ op: 'add-to-set', path: '', value: 1 }]),
    'an increment of a counter at a field': () => patch('hits', 'c1', [{ op: 'increment', path: '/x', by: 1 }]),
    'an increment of a set': () => patch('tags', 's1', [increment]),
    'a set on a set document': () => patch('tags', 's1', [{ op: 'set', path: '', value: ['y'] }]),
    'a PATCH of a record': () => patch('recs', 'r1', [{ op: 'set', path: '/v', value: 2 }]),
    'a PUT of a counter': () => call('PUT', '/db/hits/c1', 7),
    'a PUT of a set': () => call('PUT', '/db/tags/s1', ['y']),
    'a PUT of a map that is not an object': () => call('PUT', '/db/notes/d1', [1, 2]),
    'an increment of a field holding an object': () =>
      patch('notes', 'd1', [{ op: 'increment', path: '/nested', by: 1 }]),
    'a patch body without ops': () => call('PATCH', '/db/notes/d1', {}),
    'a patch body with empty ops': () => call('PATCH', '/db/notes/d1', { ops: [] }),
    'a patch body whose ops is not an array': () => call('PATCH', '/db/notes/d1', { ops: { op: 'set' } }),
    'a patch body with another key': () => call('PATCH', '/db/notes/d1', { ops: [increment], version: 'x' }),
    'a patch body that is not JSON': () => call('PATCH', '/db/notes/d1', '{"ops": ['),
    'a batch patch with a bad op': () =>
      call('POST', '/db/_batch', {
        ops: [
          { op: 'put', collection: 'recs', id: 'r1', value: { v: 2 } },
          { op: 'patch', collection: 'hits', id: 'c1', ops: [{ op: 'increment', path: '', by: 0.5 }] },
        ],
      }),
    'a batch patching one document twice': () =>
      call('POST', '/db/_batch', {
        ops: [
          { op: 'patch', collection: 'hits', id: 'c1', ops: [increment] },
          { op: 'patch', collection: 'hits', id: 'c1', ops: [increment] },
        ],
      }),
    'a batch patch with a value': () =>
      call('POST', '/db/_batch', { ops: [{ op: 'patch', collection: 'hits', id: 'c1', ops: [increment], value: 1 }] }),
    'settings of an unknown kind': () => call('PUT', '/db/notes/_config', { kind: 'tree' }),
    'settings of an unknown policy': () => call('PUT', '/db/notes/_config', { kind: 'map', policy: 'newest' }),
    'policy merge without a merge name': () => call('PUT', '/db/fresh/_config', { kind: 'record', policy: 'merge' }),
    'a merge name without policy merge': () =>
      call('PUT', '/db/fresh/_config', { kind: 'record', policy: 'keep', merge: 'union' }),
    'a merge name that is not a name': () =>
      call('PUT', '/db/fresh/_config', { kind: 'record', policy: 'merge', merge: 'a b' }),
    'an unknown setting': () => call('PUT', '/db/notes/_config', { kind: 'map', colour: 'red' }),
    'fields on a record': () => call('PUT', '/db/recs/_config', { kind: 'record', fields: { '/a': {} } }),
    'fields on a counter': () => call('PUT', '/db/hits/_config', { kind: 'counter', fields: { '/a': {} } }),
    'a field that is not a pointer': () => call('PUT', '/db/notes/_config', { kind: 'map', fields: { a: {} } }),
    'a field at ""': () => call('PUT', '/db/notes/_config', { kind: 'map', fields: { '': {} } }),
    'a field of an unknown type': () =>
      call('PUT', '/db/notes/_config', { kind: 'map', fields: { '/a': { type: 'blob' } } }),
    'a field with an unknown setting': () =>
      call('PUT', '/db/notes/_config', { kind: 'map', fields: { '/a': { colour: 'red' } } }),
    'a policy on a counter field': () =>
      call('PUT', '/db/notes/_config', { kind: 'map', fields: { '/a': { type: 'counter', policy: 'lww' } } }),
    'settings that are not an object': () => call('PUT', '/db/notes/_config', ['map']),
    'settings that are null': () => call('PUT', '/db/notes/_config', 'null'),
    'settings that are not JSON': () => call('PUT', '/db/notes/_config', '{"kind": '),
    'settings of a reserved collection': () => call('PUT', '/db/_config/_config', { kind: 'map' }),
    'settings with a query': () => call('PUT', '/db/notes/_config?force=1', { kind: 'map' }),
  };

  let before: unknown;
  beforeAll(async () => {
    before = await snapshot();
  });

  for (const [name, run] of Object.entries(cases)) {
    it(`${name}: 400 with error and message, nothing changed`, async () => {
      const a = await run();
      expect(a.status, JSON.stringify(a.body)).toBe(400);
      const body = a.body as { error: unknown; message: unknown };
      expect(Object.keys(body).sort()).toEqual(['error', 'message']);
      expect(body.error).toMatch(/^(invalid_input|invalid_json|invalid_name)$/);
      expect(typeof body.message).toBe('string');
      expect((body.message as string).length).toBeGreaterThan(10);
      expect(await snapshot()).toEqual(before);
    });
  }

  it('messages name what is wrong', async () => {
    const msg = async (p: Promise<Answer>): Promise<string> => ((await p).body as { message: string }).message;
    expect(await msg(patch('notes', 'd1', [{ op: 'frobnicate', path: '/t' }]))).toMatch(/ops\[0\].*op must be one of/);
    expect(await msg(patch('notes', 'd1', [{ op: 'increment', path: '/title', by: 1 }]))).toMatch(
      /\/title holds a value, not a counter/,
    );
    expect(await msg(patch('recs', 'r1', [{ op: 'set', path: '/v', value: 2 }]))).toMatch(/record.*PUT/);
    expect(await msg(call('PUT', '/db/hits/c1', 7))).toMatch(/counters.*increment/);
    expect(await msg(call('PUT', '/db/fresh/_config', { kind: 'record', policy: 'merge' }))).toMatch(/merge/);
    expect(await msg(call('PUT', '/db/notes/_config', { kind: 'map', colour: 'red' }))).toMatch(/colour/);
  });

  it('a PATCH with a stale If-Match is 409 conflict and changes nothing; a current one applies', async () => {
    const read = await ok<{ version: string }>('GET', '/db/hits/c1');
    await ok('PATCH', '/db/hits/c1', { ops: [increment] });
    const mid = await snapshot();
    const stale = await patch('hits', 'c1', [increment], { 'if-match': read.version });
    expect(stale.status).toBe(409);
    expect(stale.body).toEqual({ error: 'conflict', message: expect.any(String) as unknown });
    expect(await snapshot()).toEqual(mid);
    const current = await ok<{ version: string }>('GET', '/db/hits/c1');
    const res = await fetch(`${server.url}/db/hits/c1`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json', 'if-match': `"${current.version}"` },
      body: JSON.stringify({ ops: [increment] }),
    });
    expect(res.status).toBe(200);
    const written = (await res.json()) as { version: string };
    expect(res.headers.get('etag')).toBe(`"${written.version}"`);
    expect((await ok<{ value: number }>('GET', '/db/hits/c1')).value).toBe(7);
  });
});

describe('settings', () => {
  it('PUT answers the settings, GET shows them, a bad PUT keeps them', async () => {
    const put = await ok('PUT', '/db/pages/_config', {
      kind: 'map',
      policy: 'lww',
      fields: { '/views': { type: 'counter' }, '/body': { policy: 'keep' } },
    });
    const want = {
      collection: 'pages',
      kind: 'map',
      policy: 'lww',
      fields: { '/views': { type: 'counter' }, '/body': { policy: 'keep' } },
      replicated: true,
    };
    expect(put).toEqual(want);
    expect(await ok('GET', '/db/pages/_config')).toEqual(want);
    expect((await call('PUT', '/db/pages/_config', { kind: 'map', policy: 'merge' })).status).toBe(400);
    expect(await ok('GET', '/db/pages/_config')).toEqual(want);
    // A collection never configured shows the defaults, not replicated.
    expect(await ok('GET', '/db/never/_config')).toEqual({
      collection: 'never',
      kind: 'record',
      policy: 'keep',
      replicated: false,
    });
    // A field declared a counter takes an integer in a whole-document PUT.
    await ok('PUT', '/db/pages/home', { views: 3, body: 'hi' });
    await ok('PUT', '/db/pages/home', { views: 5, body: 'hi' });
    expect((await ok<{ value: unknown }>('GET', '/db/pages/home')).value).toEqual({ views: 5, body: 'hi' });
    const before = await ok<{ seq: number }>('GET', '/status');
    const bad = await call('PUT', '/db/pages/home', { views: 'many', body: 'hi' });
    expect(bad.status).toBe(400);
    expect((await ok<{ seq: number }>('GET', '/status')).seq).toBe(before.seq);
  });
});

describe('GET /conflicts', () => {
  const RECORDS = 25;
  const MAPS = 5;
  let made: Set<string>;

  beforeAll(async () => {
    made = new Set();
    // Concurrent writes to the same records and the same map fields at both replicas.
    for (let i = 0; i < RECORDS; i++) {
      await ok('PUT', `/db/recs/k${i}`, { by: 'eu', i });
      await other.collection('recs').put(`k${i}`, { by: 'us', i });
      made.add(`recs/k${i}`);
    }
    for (let i = 0; i < MAPS; i++) {
      await ok('PATCH', `/db/notes/m${i}`, { ops: [{ op: 'set', path: '/title', value: `eu-${i}` }] });
      await other.collection('notes').patch(`m${i}`, [
        { op: 'set', path: '/title', value: `us-${i}` },
        { op: 'set', path: '/body', value: 'only at us' },
      ]);
      made.add(`notes/m${i}`);
    }
    await deliver();
  });

  it('pages through every document in conflict with after until next is null, each once, as GET shows it', async () => {
    const seen: ConflictEntry[] = [];
    let pages = 0;
    let after: string | null = null;
    for (;;) {
      const q: string = after === null ? '?limit=4' : `?limit=4&after=${after}`;
      const page = await ok<{ results: ConflictEntry[]; next: string | null }>('GET', `/conflicts${q}`);
      pages++;
      expect(page.results.length).toBeLessThanOrEqual(4);
      seen.push(...page.results);
      if (page.next === null) break;
      after = page.next;
      expect(pages).toBeLessThan(100);
    }
    expect(pages).toBeGreaterThanOrEqual(Math.ceil((RECORDS + MAPS) / 4));
    const keys = seen.map((e) => `${e.collection}/${e.id}`);
    expect(keys.length).toBe(new Set(keys).size);
    expect(new Set(keys)).toEqual(made);
    // In feed order.
    const seqs = seen.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((x, y) => x - y));
    expect((await ok<{ conflicts: number }>('GET', '/status')).conflicts).toBe(RECORDS + MAPS);
    for (const e of seen) {
      const doc = await ok<{ value: unknown; version: string; conflicts: unknown[] }>(
        'GET',
        `/db/${e.collection}/${e.id}`,
      );
      expect(e.kind).toBe('siblings');
      expect({ value: e.value, version: e.version, conflicts: e.conflicts }).toEqual({
        value: doc.value,
        version: doc.version,
        conflicts: doc.conflicts,
      });
      expect(e.conflicts).toHaveLength(1);
      if (e.collection === 'notes') {
        expect(e.conflicts[0]?.path).toBe('/title');
        expect((e.value as { body: string }).body).toBe('only at us');
      } else {
        expect(e.conflicts[0]?.path).toBeUndefined();
      }
    }
    // One collection only.
    const notes = await ok<{ results: ConflictEntry[]; next: string | null }>('GET', '/conflicts?collection=notes');
    expect(notes.next).toBeNull();
    expect(notes.results.map((e) => e.id).sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
  });

  it("a PATCH with a sibling's own version is 400 bad_version and changes nothing", async () => {
    const doc = await ok<{ conflicts: { version: string }[] }>('GET', '/db/notes/m0');
    const sibling = doc.conflicts[0]?.version as string;
    const before = await snapshot();
    const a = await patch('notes', 'm0', [{ op: 'set', path: '/title', value: 'fixed' }], { 'if-match': sibling });
    expect(a).toEqual({ status: 400, body: { error: 'bad_version', message: expect.any(String) as unknown } });
    expect(await snapshot()).toEqual(before);
    expect(await ok('GET', '/db/notes/m0')).toEqual(doc);
  });

  it('refuses bad queries with 400', async () => {
    for (const q of [
      '?after=abc',
      '?after=-1',
      '?limit=0',
      '?since=3',
      '?feed=longpoll&after=3',
      '?feed=sometimes',
      '?colour=red',
      '?collection=_config',
    ]) {
      const a = await call('GET', `/conflicts${q}`);
      expect(a.status, q).toBe(400);
      expect(a.body, q).toEqual({ error: expect.any(String) as unknown, message: expect.any(String) as unknown });
    }
  });

  it('a longpoll waits through other writes and answers as soon as a conflict arrives', async () => {
    const { seq } = await ok<{ seq: number }>('GET', '/status');
    const started = Date.now();
    const polled = ok<{ results: ConflictEntry[]; last_seq: number }>(
      'GET',
      `/conflicts?feed=longpoll&since=${seq}&timeout=20000`,
    );
    let answered = false;
    void polled.then(() => (answered = true));
    // A write without a conflict does not wake it.
    await ok('PUT', '/db/recs/quiet', { v: 1 });
    await new Promise((r) => setTimeout(r, 300));
    expect(answered).toBe(false);
    await ok('PUT', '/db/recs/late', { by: 'eu' });
    await other.collection('recs').put('late', { by: 'us' });
    await deliver();
    const page = await polled;
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(page.results.map((e) => `${e.collection}/${e.id}`)).toEqual(['recs/late']);
    expect(page.last_seq).toBeGreaterThan(seq);
    // Nothing after last_seq: a longpoll from there times out empty.
    const empty = await ok<{ results: unknown[]; last_seq: number }>(
      'GET',
      `/conflicts?feed=longpoll&since=${page.last_seq}&timeout=100`,
    );
    expect(empty.results).toEqual([]);
  });

  it('an event stream sends one event per document in conflict, then new ones as they arrive', async () => {
    const controller = new AbortController();
    const res = await fetch(`${server.url}/conflicts?feed=eventsource&collection=notes`, {
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    const events = (): ConflictEntry[] =>
      text
        .split('\n\n')
        .slice(0, -1)
        .filter((b) => !b.startsWith(':'))
        .map((b) => JSON.parse(b.slice(b.indexOf('data: ') + 'data: '.length)) as ConflictEntry);
    const readUntil = async (n: number): Promise<void> => {
      const deadline = Date.now() + 10_000;
      while (events().length < n) {
        if (Date.now() > deadline) throw new Error(`only ${events().length} events: ${text}`);
        const next = await reader.read();
        if (next.done) throw new Error(`the stream ended: ${text}`);
        text += decoder.decode(next.value, { stream: true });
      }
    };
    try {
      await readUntil(MAPS);
      await ok('PATCH', '/db/notes/live', { ops: [{ op: 'set', path: '/title', value: 'eu' }] });
      await other.collection('notes').patch('live', [{ op: 'set', path: '/title', value: 'us' }]);
      await deliver();
      await readUntil(MAPS + 1);
      const ids = events().map((e) => e.id);
      expect(ids.sort()).toEqual(['live', 'm0', 'm1', 'm2', 'm3', 'm4']);
      for (const e of events()) expect(e.collection).toBe('notes');
    } finally {
      controller.abort();
    }
  });

  it('an event stream sends a unique value broken by a write from another leader, which holds no sibling', async () => {
    await ok('PUT', '/db/accounts/_config', { unique: ['email'] });
    await other.applyChanges(await server.db.changesSince(other.vector()));
    await ok('PUT', '/db/accounts/a1', { email: 'z@x' });
    const controller = new AbortController();
    const since = server.db.status().seq;
    const res = await fetch(`${server.url}/conflicts?feed=eventsource&collection=accounts&since=${since}`, {
      signal: controller.signal,
    });
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    try {
      // Written apart: the other leader has not seen a1.
      await other.collection('accounts').put('a2', { email: 'z@x' });
      await deliver();
      const deadline = Date.now() + 10_000;
      while (!text.includes('"kind":"unique"')) {
        if (Date.now() > deadline) throw new Error(`no unique entry streamed: ${text}`);
        const next = await reader.read();
        if (next.done) throw new Error(`the stream ended: ${text}`);
        text += decoder.decode(next.value, { stream: true });
      }
      const entry = JSON.parse(text.slice(text.indexOf('data: ') + 'data: '.length).split('\n')[0] as string) as {
        id: string;
        kind: string;
        constraint: unknown;
      };
      expect(entry).toMatchObject({
        id: 'a2',
        kind: 'unique',
        constraint: { field: 'email', value: 'z@x', winner: 'a1' },
      });
    } finally {
      controller.abort();
    }
  });
});
