/**
 * The HTTP API against docs/http-api.md: every route's happy path, every status of the error
 * table that these routes can produce, the live feeds (longpoll through inject, server-sent
 * events through a real socket), and that refused requests leave the database as it was.
 */
import type { AddressInfo } from 'node:net';
import type { FastifyBaseLogger, FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openReplica } from '../index.js';
import type { Database } from '../index.js';
import { buildApp } from './app.js';
import type { AppDeps } from './app.js';
import type { PeerStatus } from './peer-status.js';

const running: { app: FastifyInstance; db: Database }[] = [];

afterEach(async () => {
  for (const { app, db } of running.splice(0)) {
    // After an aborted fetch, undici's pool dials a fresh socket that never sends a request,
    // and Node's server.close() waits for such sockets until headersTimeout: drop them.
    app.server.closeAllConnections();
    await app.close();
    await db.close();
  }
});

async function serve(deps: Partial<AppDeps> = {}): Promise<{ app: FastifyInstance; db: Database }> {
  const db = await openReplica({ storage: 'memory', id: 'eu' });
  const { app } = buildApp({ db, ...deps });
  running.push({ app, db });
  return { app, db };
}

const JSON_TYPE = { 'content-type': 'application/json' };

function put(
  app: FastifyInstance,
  url: string,
  value: unknown,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'PUT', url, headers: { ...JSON_TYPE, ...headers }, payload: JSON.stringify(value) });
}

function batch(app: FastifyInstance, body: unknown): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/db/_batch', headers: JSON_TYPE, payload: JSON.stringify(body) });
}

/** Asserts an error answer: the status, the code, a message, and no stack trace. */
function expectError(res: LightMyRequestResponse, status: number, code: string): void {
  expect({ status: res.statusCode, body: res.json() as unknown }).toEqual({
    status,
    body: { error: code, message: expect.any(String) as unknown },
  });
  expect(res.body).not.toMatch(/\n\s+at /);
}

/** Polls `condition` until it holds, failing after `ms`. */
async function until(condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function headOf(db: Database): { seq: number; digest: string; docs: number } {
  const { seq, digest, docs } = db.status();
  return { seq, digest, docs };
}

describe('documents', () => {
  it('a put answers 201 with the version, also as a quoted ETag, and a get returns the value with that version', async () => {
    const { app } = await serve();
    const res = await put(app, '/db/events/standup', { at: '09:30' });
    expect(res.statusCode).toBe(201);
    const { id, version } = res.json<{ id: string; version: string }>();
    expect(id).toBe('standup');
    expect(res.headers.etag).toBe(`"${version}"`);

    const got = await app.inject({ url: '/db/events/standup' });
    expect(got.statusCode).toBe(200);
    expect(got.headers.etag).toBe(`"${version}"`);
    expect(got.json()).toEqual({
      id: 'standup',
      value: { at: '09:30' },
      version,
      origin: 'eu',
      time: expect.any(String) as unknown,
      conflicts: [],
    });
  });

  it('any JSON value is a document: null, a string, a number, an array', async () => {
    const { app } = await serve();
    for (const [i, value] of [null, 'text', 42, [1, 'two']].entries()) {
      expect((await put(app, `/db/values/v${i}`, value)).statusCode).toBe(201);
      expect((await app.inject({ url: `/db/values/v${i}` })).json()).toMatchObject({ value });
    }
  });

  it('an id with a slash travels URL-encoded and comes back decoded', async () => {
    const { app, db } = await serve();
    expect((await put(app, '/db/events/team%2Fstandup', 1)).json()).toMatchObject({ id: 'team/standup' });
    expect(await db.collection('events').get('team/standup')).toMatchObject({ value: 1 });
    expect((await app.inject({ url: '/db/events/team%2Fstandup' })).json()).toMatchObject({ id: 'team/standup' });
  });

  it('an id of 256 characters is accepted and one of 257 is 400 invalid_name, however it is encoded', async () => {
    const { app } = await serve();
    expect((await put(app, `/db/c/${encodeURIComponent('é'.repeat(256))}`, 1)).statusCode).toBe(201);
    expectError(await put(app, `/db/c/${'a'.repeat(257)}`, 1), 400, 'invalid_name');
    expectError(await put(app, `/db/c/${encodeURIComponent('é'.repeat(257))}`, 1), 400, 'invalid_name');
    expectError(await put(app, `/db/c/${'a'.repeat(5000)}`, 1), 400, 'invalid_name');
  });

  it('a get of an absent or deleted document is 404 not_found', async () => {
    const { app } = await serve();
    expectError(await app.inject({ url: '/db/events/nope' }), 404, 'not_found');
    await put(app, '/db/events/gone', 1);
    expect((await app.inject({ method: 'DELETE', url: '/db/events/gone' })).statusCode).toBe(200);
    expectError(await app.inject({ url: '/db/events/gone' }), 404, 'not_found');
  });

  it('a delete answers the id and the new version; deleting an absent document is 404', async () => {
    const { app } = await serve();
    const { version } = (await put(app, '/db/events/x', 1)).json<{ version: string }>();
    const res = await app.inject({ method: 'DELETE', url: '/db/events/x' });
    expect(res.statusCode).toBe(200);
    const body = res.json<{ id: string; version: string }>();
    expect(body.id).toBe('x');
    expect(body.version).not.toBe(version);
    expectError(await app.inject({ method: 'DELETE', url: '/db/events/x' }), 404, 'not_found');
    expectError(await app.inject({ method: 'DELETE', url: '/db/events/never' }), 404, 'not_found');
  });

  it('If-Match accepts the version bare, quoted or weak and quoted', async () => {
    const { app } = await serve();
    let { version } = (await put(app, '/db/c/d', 0)).json<{ version: string }>();
    for (const [i, form] of [(v: string) => v, (v: string) => `"${v}"`, (v: string) => `W/"${v}"`].entries()) {
      const res = await put(app, '/db/c/d', i + 1, { 'if-match': form(version) });
      expect(res.statusCode).toBe(201);
      version = res.json<{ version: string }>().version;
    }
    const res = await app.inject({ method: 'DELETE', url: '/db/c/d', headers: { 'if-match': `W/"${version}"` } });
    expect(res.statusCode).toBe(200);
  });

  it('a put with a stale If-Match is 409 conflict and keeps the newer value', async () => {
    const { app } = await serve();
    const stale = (await put(app, '/db/c/d', 'first')).json<{ version: string }>().version;
    await put(app, '/db/c/d', 'second');
    expectError(await put(app, '/db/c/d', 'third', { 'if-match': `"${stale}"` }), 409, 'conflict');
    expect((await app.inject({ url: '/db/c/d' })).json()).toMatchObject({ value: 'second' });
  });

  it('a delete with a stale If-Match is 409 conflict and deletes nothing', async () => {
    const { app } = await serve();
    const stale = (await put(app, '/db/c/d', 'first')).json<{ version: string }>().version;
    await put(app, '/db/c/d', 'second');
    const res = await app.inject({ method: 'DELETE', url: '/db/c/d', headers: { 'if-match': stale } });
    expectError(res, 409, 'conflict');
    expect((await app.inject({ url: '/db/c/d' })).statusCode).toBe(200);
  });

  it('If-None-Match: * creates an absent document and is 412 precondition_failed on an existing one', async () => {
    const { app } = await serve();
    expect((await put(app, '/db/c/d', 1, { 'if-none-match': '*' })).statusCode).toBe(201);
    expectError(await put(app, '/db/c/d', 2, { 'if-none-match': '*' }), 412, 'precondition_failed');
    expect((await app.inject({ url: '/db/c/d' })).json()).toMatchObject({ value: 1 });
  });

  it('an If-Match that is not a version of this document is 400 bad_version', async () => {
    const { app } = await serve();
    await put(app, '/db/c/d', 1);
    const other = (await put(app, '/db/c/other', 1)).json<{ version: string }>().version;
    expectError(await put(app, '/db/c/d', 2, { 'if-match': 'not-a-version' }), 400, 'bad_version');
    expectError(await put(app, '/db/c/d', 2, { 'if-match': `"${other}"` }), 400, 'bad_version');
    expectError(await put(app, '/db/c/d', 2, { 'if-match': '*' }), 400, 'bad_version');
  });

  it('a get shows concurrent writes from another leader as conflicts, each with its own version', async () => {
    const { app, db } = await serve();
    const us = await openReplica({ storage: 'memory', id: 'us' });
    try {
      await db.collection('c').put('d', 'from eu');
      await us.collection('c').put('d', 'from us');
      await db.applyChanges(await us.changesSince(db.vector()));
    } finally {
      await us.close();
    }
    const doc = (await app.inject({ url: '/db/c/d' })).json<{ conflicts: unknown[] }>();
    expect(doc.conflicts).toEqual([
      {
        value: expect.any(String) as unknown,
        deleted: false,
        version: expect.any(String) as unknown,
        origin: expect.any(String) as unknown,
        time: expect.any(String) as unknown,
      },
    ]);
  });

  it('a document over its limit is 413 too_large, whether the body or only the value is over', async () => {
    const { app, db } = await serve();
    const before = headOf(db);
    // Over the body limit (1 MiB + 64 KiB): refused before parsing.
    expectError(await put(app, '/db/c/big', 'x'.repeat(1200 * 1024)), 413, 'too_large');
    // Within the body limit, but the value is over 1 MiB of JSON: refused by the engine.
    expectError(await put(app, '/db/c/big', 'x'.repeat(1024 * 1024)), 413, 'too_large');
    expect(headOf(db)).toEqual(before);
  });
});

describe('listing', () => {
  it('a list pages through live documents in id order, following next with after', async () => {
    const { app } = await serve();
    for (const id of ['e', 'b', 'd', 'a', 'c']) await put(app, `/db/letters/${id}`, id);
    await app.inject({ method: 'DELETE', url: '/db/letters/c' });

    const seen: string[] = [];
    let url = '/db/letters?limit=2';
    for (let pages = 0; pages < 10; pages++) {
      const res = await app.inject({ url });
      expect(res.statusCode).toBe(200);
      const page = res.json<{ results: { id: string; value: string }[]; next: string | null }>();
      expect(page.results.length).toBeLessThanOrEqual(2);
      for (const doc of page.results) expect(doc.value).toBe(doc.id);
      seen.push(...page.results.map((d) => d.id));
      if (page.next === null) break;
      url = `/db/letters?limit=2&after=${encodeURIComponent(page.next)}`;
    }
    expect(seen).toEqual(['a', 'b', 'd', 'e']);
  });

  it('a list of an empty collection is an empty page', async () => {
    const { app } = await serve();
    expect((await app.inject({ url: '/db/empty' })).json()).toEqual({ results: [], next: null });
  });
});

describe('batches', () => {
  it('a batch writes every document atomically and answers each version', async () => {
    const { app, db } = await serve();
    await put(app, '/db/accounts/gone', 0);
    const res = await batch(app, {
      ops: [
        { op: 'put', collection: 'accounts', id: 'a', value: { balance: 50 } },
        { op: 'put', collection: 'accounts', id: 'b', value: null },
        { op: 'delete', collection: 'accounts', id: 'gone' },
      ],
    });
    expect(res.statusCode).toBe(200);
    const { results } = res.json<{ results: { collection: string; id: string; version: string }[] }>();
    expect(results.map((r) => `${r.collection}/${r.id}`)).toEqual(['accounts/a', 'accounts/b', 'accounts/gone']);
    const a = await app.inject({ url: '/db/accounts/a' });
    expect(a.json()).toMatchObject({ value: { balance: 50 }, version: results[0]?.version });
    expect(await db.collection('accounts').get('gone')).toBeNull();
    // All three in one atomic change: one seq.
    expect(new Set((await db.changes({ since: 1 })).results.map((e) => e.seq)).size).toBe(1);
  });

  it('a batch with a version that is no longer current is 409 naming the document, and writes nothing', async () => {
    const { app, db } = await serve();
    const stale = (await put(app, '/db/accounts/b', 1)).json<{ version: string }>().version;
    await put(app, '/db/accounts/b', 2);
    const before = headOf(db);
    const res = await batch(app, {
      ops: [
        { op: 'put', collection: 'accounts', id: 'a', value: 1 },
        { op: 'put', collection: 'accounts', id: 'b', value: 3, version: stale },
      ],
    });
    expectError(res, 409, 'conflict');
    expect(res.json<{ message: string }>().message).toContain('accounts/b');
    expect(headOf(db)).toEqual(before);
    expectError(await app.inject({ url: '/db/accounts/a' }), 404, 'not_found');
  });

  it('unknown fields, wrong JSON types, a put without a value and a delete with one are 400 invalid_input', async () => {
    const { app, db } = await serve();
    const op = { op: 'put', collection: 'c', id: 'd', value: 1 };
    const bodies: unknown[] = [
      { ops: [{ ...op, extra: true }] },
      { ops: [op], extra: true },
      { ops: [{ ...op, id: 5 }] },
      { ops: [{ ...op, collection: true }] },
      { ops: [{ ...op, version: 7 }] },
      { ops: [{ ...op, op: 'patch' }] },
      { ops: [{ op: 'put', collection: 'c', id: 'd' }] },
      { ops: [{ op: 'delete', collection: 'c', id: 'd', value: 1 }] },
      { ops: op },
      { ops: [] },
      {},
      [op],
      null,
    ];
    for (const body of bodies) expectError(await batch(app, body), 400, 'invalid_input');
    expect(db.status().seq).toBe(0);
  });

  it('a batch over 10,000 operations is 413 too_large', async () => {
    const { app } = await serve();
    const ops = Array.from({ length: 10_001 }, (_, i) => ({ op: 'put', collection: 'c', id: `d${i}`, value: i }));
    expectError(await batch(app, { ops }), 413, 'too_large');
  });

  it('a batch body may exceed the document body limit, up to the batch limit, past which it is 413', async () => {
    const { app, db } = await serve();
    const big = 'x'.repeat(700 * 1024);
    const ops = ['a', 'b', 'c'].map((id) => ({ op: 'put', collection: 'c', id, value: big }));
    expect((await batch(app, { ops })).statusCode).toBe(200);
    const before = headOf(db);
    const huge = [{ op: 'put', collection: 'c', id: 'h', value: 'x'.repeat(17 * 1024 * 1024) }];
    expectError(await batch(app, { ops: huge }), 413, 'too_large');
    expect(headOf(db)).toEqual(before);
  });
});

describe('names', () => {
  it('names starting with _ and names out of pattern are 400 invalid_name, beside the real /db/_batch', async () => {
    const { app, db } = await serve();
    expectError(await put(app, '/db/_batch/x', 1), 400, 'invalid_name');
    expectError(await put(app, '/db/_config/x', 1), 400, 'invalid_name');
    // /db/:collection/_config is the collection's settings: a number is not settings.
    expectError(await put(app, '/db/events/_config', 1), 400, 'invalid_input');
    expectError(await put(app, '/db/_batch/_config', {}), 400, 'invalid_name');
    expectError(await put(app, '/db/9lives/x', 1), 400, 'invalid_name');
    expectError(await put(app, '/db/c%2Fx/y', 1), 400, 'invalid_name');
    expectError(await put(app, '/db/events/a%00b', 1), 400, 'invalid_name');
    // A lone surrogate, and a truncated escape: not UTF-8 at all.
    expectError(await put(app, '/db/events/%ED%A0%80', 1), 400, 'invalid_name');
    expectError(await app.inject({ url: '/db/events/%E0%A4%A' }), 400, 'invalid_name');
    expectError(await app.inject({ url: '/db/_config/x' }), 400, 'invalid_name');
    expect((await app.inject({ url: '/db/events/_config' })).json()).toEqual({
      collection: 'events',
      kind: 'record',
      policy: 'keep',
      replicated: false,
    });
    expectError(await app.inject({ method: 'DELETE', url: '/db/events/_config' }), 400, 'invalid_name');
    expectError(await app.inject({ url: '/db/_batch' }), 400, 'invalid_name');
    expectError(await app.inject({ method: 'DELETE', url: '/db/_batch/x' }), 400, 'invalid_name');
    expectError(await batch(app, { ops: [{ op: 'put', collection: '_x', id: 'd', value: 1 }] }), 400, 'invalid_name');
    expect(db.status().seq).toBe(0);
  });
});

describe('request errors', () => {
  it('a body that is not JSON is 400 invalid_json', async () => {
    const { app } = await serve();
    for (const payload of ['{"at":', '', "{'single': 1}", 'undefined']) {
      const res = await app.inject({ method: 'PUT', url: '/db/c/d', headers: JSON_TYPE, payload });
      expectError(res, 400, 'invalid_json');
    }
    expectError(await app.inject({ method: 'PUT', url: '/db/c/d' }), 400, 'invalid_json');
    const res = await app.inject({ method: 'POST', url: '/db/_batch', headers: JSON_TYPE, payload: '{"ops": [' });
    expectError(res, 400, 'invalid_json');
  });

  it('a body that is not application/json is 415 unsupported_media_type', async () => {
    const { app } = await serve();
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/merge-patch+json']) {
      const res = await app.inject({ method: 'PUT', url: '/db/c/d', headers: { 'content-type': type }, payload: '1' });
      expectError(res, 415, 'unsupported_media_type');
    }
    const res = await app.inject({
      method: 'POST',
      url: '/db/_batch',
      headers: { 'content-type': 'text/plain' },
      payload: '{}',
    });
    expectError(res, 415, 'unsupported_media_type');
    // A charset parameter is still JSON.
    const ok = await app.inject({
      method: 'PUT',
      url: '/db/c/d',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      payload: '1',
    });
    expect(ok.statusCode).toBe(201);
  });

  it('malformed queries and headers are 400 invalid_input', async () => {
    const { app } = await serve();
    for (const url of [
      '/db/c?limit=0',
      '/db/c?limit=ten',
      '/db/c?colour=red',
      '/db/c/d?x=1',
      '/changes?since=-1',
      '/changes?since=soon',
      '/changes?feed=websocket',
      '/changes?feed=longpoll&timeout=-5',
      '/status?verbose=1',
    ]) {
      expectError(await app.inject({ url }), 400, 'invalid_input');
    }
    expectError(await put(app, '/db/c/d', 1, { 'if-none-match': '"abc"' }), 400, 'invalid_input');
    expectError(
      await app.inject({ url: '/changes?feed=eventsource', headers: { 'last-event-id': 'yesterday' } }),
      400,
      'invalid_input',
    );
  });

  it('an unknown route is 404 not_found', async () => {
    const { app } = await serve();
    expect((await app.inject({ url: '/nope' })).json()).toMatchObject({ error: 'not_found' });
    expectError(await app.inject({ url: '/nope' }), 404, 'not_found');
    expectError(await app.inject({ method: 'POST', url: '/db/c/d' }), 404, 'not_found');
    expectError(await app.inject({ url: '/db/c/d/e' }), 404, 'not_found');
  });

  it('writes are 503 unavailable while the server shuts down, and reads go on', async () => {
    let shuttingDown = false;
    const { app, db } = await serve({ isShuttingDown: () => shuttingDown });
    await put(app, '/db/c/d', 1);
    shuttingDown = true;
    const before = headOf(db);
    expectError(await put(app, '/db/c/d', 2), 503, 'unavailable');
    expectError(await put(app, '/db/c/new', 2), 503, 'unavailable');
    expectError(await app.inject({ method: 'DELETE', url: '/db/c/d' }), 503, 'unavailable');
    expectError(await batch(app, { ops: [{ op: 'put', collection: 'c', id: 'e', value: 1 }] }), 503, 'unavailable');
    expect(headOf(db)).toEqual(before);
    expect((await app.inject({ url: '/db/c/d' })).json()).toMatchObject({ value: 1 });
    expect((await app.inject({ url: '/changes' })).statusCode).toBe(200);
  });

  it('a closed database answers 503 unavailable', async () => {
    const { app, db } = await serve();
    await db.close();
    expectError(await app.inject({ url: '/db/c/d' }), 503, 'unavailable');
    expectError(await put(app, '/db/c/d', 1), 503, 'unavailable');
    expectError(await app.inject({ url: '/changes' }), 503, 'unavailable');
  });

  it('an unexpected error is 500 internal without its message or stack, and is logged with its stack', async () => {
    const logged: unknown[][] = [];
    const noop = (): void => {};
    const logger = {
      level: 'info',
      fatal: noop,
      error: (...args: unknown[]) => logged.push(args),
      warn: noop,
      info: noop,
      debug: noop,
      trace: noop,
      silent: noop,
      child: () => logger,
    };
    const { app, db } = await serve({ logger: logger as unknown as FastifyBaseLogger });
    vi.spyOn(db, 'status').mockImplementation(() => {
      throw new Error('secret internals');
    });
    const res = await app.inject({ url: '/status' });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ error: 'internal', message: 'internal error' });
    expect(res.body).not.toContain('secret internals');
    const err = (logged[0]?.[0] as { err?: Error } | undefined)?.err;
    expect(err?.stack).toContain('secret internals');
  });

  it('refused requests change nothing', async () => {
    const { app, db } = await serve();
    const { version } = (await put(app, '/db/c/d', 'kept')).json<{ version: string }>();
    await put(app, '/db/c/d', 'newer');
    const before = headOf(db);
    const refused = [
      await app.inject({ method: 'PUT', url: '/db/c/d', headers: JSON_TYPE, payload: '{bad' }),
      await app.inject({ method: 'PUT', url: '/db/c/d', headers: { 'content-type': 'text/plain' }, payload: '1' }),
      await put(app, '/db/_config/d', 1),
      await put(app, '/db/c/d', 1, { 'if-match': 'garbage' }),
      await put(app, '/db/c/d', 1, { 'if-match': version }),
      await put(app, '/db/c/d', 1, { 'if-none-match': '*' }),
      await put(app, '/db/c/d', 'x'.repeat(1024 * 1024)),
      await app.inject({ method: 'DELETE', url: '/db/c/d', headers: { 'if-match': version } }),
      await batch(app, { ops: [{ op: 'put', collection: 'c', id: 'e', value: 1, extra: 1 }] }),
      await batch(app, {
        ops: [
          { op: 'put', collection: 'c', id: 'e', value: 1 },
          { op: 'put', collection: 'c', id: 'd', value: 1, version },
        ],
      }),
    ];
    for (const res of refused) expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(headOf(db)).toEqual(before);
    expect((await app.inject({ url: '/db/c/d' })).json()).toMatchObject({ value: 'newer' });
    const metrics = await app.inject({ url: '/metrics' });
    expect(metrics.body).toMatch(/^polyarch_writes_total 2$/m);
  });
});

describe('changes', () => {
  it('the feed lists each document at its latest change after since, and last_seq pages onward', async () => {
    const { app } = await serve();
    await put(app, '/db/c/a', 1);
    await put(app, '/db/c/b', 1);
    await app.inject({ method: 'DELETE', url: '/db/c/a' });
    const all = (await app.inject({ url: '/changes' })).json<{ results: unknown[]; last_seq: number }>();
    expect(all).toEqual({
      results: [
        { seq: 2, collection: 'c', id: 'b', version: expect.any(String) as unknown, deleted: false, conflicts: 0 },
        { seq: 3, collection: 'c', id: 'a', version: expect.any(String) as unknown, deleted: true, conflicts: 0 },
      ],
      last_seq: 3,
    });
    const first = (await app.inject({ url: '/changes?since=0&limit=1' })).json<{ last_seq: number }>();
    expect(first.last_seq).toBe(2);
    const rest = (await app.inject({ url: `/changes?since=${first.last_seq}` })).json<{ results: unknown[] }>();
    expect(rest.results).toHaveLength(1);
    expect((await app.inject({ url: '/changes?since=3' })).json()).toEqual({ results: [], last_seq: 3 });
  });

  it('a longpoll with changes after since answers at once', async () => {
    const { app } = await serve();
    await put(app, '/db/c/a', 1);
    const res = await app.inject({ url: '/changes?feed=longpoll&since=0&timeout=60000' });
    expect(res.json()).toMatchObject({ results: [{ seq: 1, id: 'a' }], last_seq: 1 });
  }, 10_000);

  it('a waiting longpoll answers as soon as a write commits', async () => {
    const { app, db } = await serve();
    await put(app, '/db/c/a', 1);
    const reads = vi.spyOn(db, 'changes');
    const pending = app.inject({ url: '/changes?feed=longpoll&since=1&timeout=60000' });
    await until(() => reads.mock.calls.length >= 1);
    // The longpoll's first read found nothing after seq 1: it is now waiting.
    expect((await reads.mock.results[0]?.value) as unknown).toEqual({ results: [], last_seq: 1 });
    await put(app, '/db/c/b', 2);
    const res = await pending;
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ results: [{ seq: 2, id: 'b' }], last_seq: 2 });
  }, 10_000);

  it('a longpoll with nothing new answers an empty page at its timeout', async () => {
    const { app } = await serve();
    await put(app, '/db/c/a', 1);
    const res = await app.inject({ url: '/changes?feed=longpoll&since=1&timeout=30' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ results: [], last_seq: 1 });
  });

  it('closing the server answers a waiting longpoll rather than waiting out its timeout', async () => {
    const { app, db } = await serve();
    const reads = vi.spyOn(db, 'changes');
    const pending = app.inject({ url: '/changes?feed=longpoll&timeout=60000' });
    await until(() => reads.mock.calls.length >= 1);
    await reads.mock.results[0]?.value;
    await app.close();
    expect((await pending).json()).toEqual({ results: [], last_seq: 0 });
  }, 10_000);
});

/** Reads a server-sent event stream as it arrives. */
class EventReader {
  text = '';
  done = false;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();

  constructor(body: ReadableStream<Uint8Array>) {
    this.reader = body.getReader();
  }

  /** The complete events so far, comments left out. */
  events(): { id: string; data: unknown }[] {
    const blocks = this.text.split('\n\n').slice(0, -1);
    return blocks
      .filter((b) => !b.startsWith(':'))
      .map((b) => {
        const fields = Object.fromEntries(b.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line]));
        return {
          id: (fields.id ?? '').slice('id: '.length),
          data: JSON.parse((fields.data ?? '').slice('data: '.length)) as unknown,
        };
      });
  }

  /** Reads until `condition` holds on what arrived, or the stream ends, failing after `ms`. */
  async until(condition: () => boolean, ms = 5000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!condition() && !this.done) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the stream did not show what was expected; it sent:\n${this.text}`);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), left)));
      const next = await Promise.race([this.reader.read(), timeout]);
      clearTimeout(timer);
      if (next === 'timeout') continue;
      if (next.done) this.done = true;
      else this.text += this.decoder.decode(next.value, { stream: true });
    }
  }
}

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}

async function openStream(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ events: EventReader; abort: () => void; response: Response }> {
  const controller = new AbortController();
  const response = await fetch(url, {
    headers: { accept: 'text/event-stream', ...headers },
    signal: controller.signal,
  });
  if (response.body === null) throw new Error('no body');
  return { events: new EventReader(response.body), abort: () => controller.abort(), response };
}

describe('event streams', () => {
  it('an event stream sends the changes after since, then each new one, as id and data events', async () => {
    const { app } = await serve();
    await put(app, '/db/c/a', 1);
    await put(app, '/db/c/b', 2);
    const base = await listen(app);
    const { events, abort, response } = await openStream(`${base}/changes?feed=eventsource&since=1`);
    try {
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
      await events.until(() => events.events().length >= 1);
      await put(app, '/db/c/c', 3);
      await events.until(() => events.events().length >= 2);
      expect(events.events()).toEqual([
        { id: '2', data: expect.objectContaining({ seq: 2, collection: 'c', id: 'b', deleted: false }) as unknown },
        { id: '3', data: expect.objectContaining({ seq: 3, collection: 'c', id: 'c', deleted: false }) as unknown },
      ]);
      expect(events.text).toContain('id: 2\ndata: {"seq":2,');
    } finally {
      abort();
    }
  });

  it('a reconnecting event stream starts after its Last-Event-ID, not the since of its URL', async () => {
    const { app } = await serve();
    for (const id of ['a', 'b', 'c']) await put(app, `/db/c/${id}`, id);
    const base = await listen(app);
    const { events, abort } = await openStream(`${base}/changes?feed=eventsource&since=0`, { 'last-event-id': '2' });
    try {
      await events.until(() => events.events().length >= 1);
      expect(events.events().map((e) => e.id)).toEqual(['3']);
    } finally {
      abort();
    }
  });

  it('an event stream sends heartbeat comments while nothing changes', async () => {
    const { app } = await serve({ sseHeartbeatMs: 20 });
    const base = await listen(app);
    const { events, abort } = await openStream(`${base}/changes?feed=eventsource`);
    try {
      await events.until(() => events.text.includes(': heartbeat\n\n'));
      expect(events.events()).toEqual([]);
    } finally {
      abort();
    }
  });

  it('an event stream unsubscribes from the database when its client disconnects', async () => {
    const { app, db } = await serve();
    let subscribed = 0;
    const subscribe = db.subscribe.bind(db);
    vi.spyOn(db, 'subscribe').mockImplementation((listener) => {
      subscribed++;
      const unsubscribe = subscribe(listener);
      return () => {
        subscribed--;
        unsubscribe();
      };
    });
    const base = await listen(app);
    const { abort, response } = await openStream(`${base}/changes?feed=eventsource`);
    expect(response.status).toBe(200);
    await until(() => subscribed === 1);
    abort();
    await until(() => subscribed === 0);
  });

  it('closing the server ends its open event streams', async () => {
    const { app } = await serve();
    await put(app, '/db/c/a', 1);
    const base = await listen(app);
    const { events } = await openStream(`${base}/changes?feed=eventsource`);
    await events.until(() => events.events().length === 1);
    await app.close();
    await events.until(() => events.done);
    expect(events.done).toBe(true);
  });
});

describe('status and metrics', () => {
  const peer: PeerStatus = {
    id: 'us',
    url: 'ws://us.example:7001/replicate',
    direction: 'outgoing',
    state: 'live',
    lag: { changes: 3, ms: 1500 },
    lastError: null,
  };

  it('status shows the replica, its feed head, vector, digest and counts, and its peers', async () => {
    const { app, db } = await serve({ peers: () => [peer] });
    await put(app, '/db/c/a', 1);
    const res = await app.inject({ url: '/status' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ ...db.status(), peers: [peer], triggers: [] });
    expect(res.json()).toMatchObject({ replica: 'eu', seq: 1, docs: 1, conflicts: 0 });
  });

  it('metrics are Prometheus text with every polyarch metric, writes counted per document and lag per peer', async () => {
    const { app } = await serve({ peers: () => [peer], sessions: () => 2 });
    await put(app, '/db/c/a', 1);
    await batch(app, {
      ops: [
        { op: 'put', collection: 'c', id: 'b', value: 1 },
        { op: 'put', collection: 'c', id: 'c', value: 1 },
      ],
    });
    const res = await app.inject({ url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    for (const name of [
      'polyarch_writes_total',
      'polyarch_changes_sent_total',
      'polyarch_changes_received_total',
      'polyarch_conflicts',
      'polyarch_docs',
      'polyarch_sessions',
      'polyarch_peer_lag_changes',
      'polyarch_peer_lag_seconds',
      'process_cpu_user_seconds_total',
    ]) {
      expect(res.body).toContain(`# TYPE ${name} `);
    }
    expect(res.body).toMatch(/^polyarch_writes_total 3$/m);
    expect(res.body).toMatch(/^polyarch_docs 3$/m);
    expect(res.body).toMatch(/^polyarch_sessions 2$/m);
    expect(res.body).toMatch(/^polyarch_peer_lag_changes\{peer="us"\} 3$/m);
    expect(res.body).toMatch(/^polyarch_peer_lag_seconds\{peer="us"\} 1\.5$/m);
  });
});
