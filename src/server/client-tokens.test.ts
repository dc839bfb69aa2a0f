/**
 * Client tokens: their configuration, checked strictly at start; the registry; and the HTTP API
 * with tokens (401 without a valid one, 403 without the right, lists and feeds filtered to what
 * the token may read, a batch refused whole) through the same in-process app as http-api.test.ts.
 */
import { Writable } from 'node:stream';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openReplica } from '../index.js';
import type { Database } from '../index.js';
import { buildApp } from './app.js';
import { TokenRegistry, parseTokenFlag, parseTokens, redactUrl } from './client-tokens.js';
import type { ClientToken } from './client-tokens.js';
import { resolveConfig } from './config.js';

const ADMIN = 'admin-token-0123456789';
const CALENDAR = 'calendar-token-0123456789';
const STATUS_ONLY = 'status-token-0123456789';
const TOKENS: ClientToken[] = [
  { name: 'admin', token: ADMIN, collections: { '*': 'read-write' } },
  { name: 'calendar', token: CALENDAR, collections: { events: 'read-write', holidays: 'read' } },
  { name: 'monitor', token: STATUS_ONLY, collections: {} },
];

const running: { app: FastifyInstance; db: Database }[] = [];

afterEach(async () => {
  for (const { app, db } of running.splice(0)) {
    app.server.closeAllConnections();
    await app.close();
    await db.close();
  }
});

async function serve(tokens: readonly ClientToken[] = TOKENS, logger?: { level: 'info'; stream: Writable }) {
  const db = await openReplica({ storage: 'memory', id: 'eu' });
  const { app } = buildApp({ db, tokens: new TokenRegistry(tokens), ...(logger === undefined ? {} : { logger }) });
  running.push({ app, db });
  return { app, db };
}

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

function call(
  app: FastifyInstance,
  method: 'GET' | 'PUT' | 'DELETE' | 'POST' | 'PATCH',
  url: string,
  token: string | null,
  body?: unknown,
): Promise<LightMyRequestResponse> {
  return app.inject({
    method,
    url,
    headers: {
      ...(token === null ? {} : bearer(token)),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

function expectError(res: LightMyRequestResponse, status: number, code: string, message?: RegExp): void {
  expect({ status: res.statusCode, body: res.json() as unknown }).toEqual({
    status,
    body: {
      error: code,
      message: message === undefined ? (expect.any(String) as unknown) : expect.stringMatching(message),
    },
  });
}

describe('token configuration', () => {
  it('a config file entry becomes a token with its rights; * stands for every collection', () => {
    const [t] = parseTokens([
      { token: CALENDAR, name: 'calendar', collections: { events: 'read-write', '*': 'read' } },
    ]);
    expect(t).toEqual({ token: CALENDAR, name: 'calendar', collections: { events: 'read-write', '*': 'read' } });
  });

  it('--token NAME:TOKEN:RIGHTS reads short and long rights', () => {
    expect(parseTokenFlag(`calendar:${CALENDAR}:events=rw,holidays=r,*=read`)).toEqual({
      name: 'calendar',
      token: CALENDAR,
      collections: { events: 'read-write', holidays: 'read', '*': 'read' },
    });
    expect(parseTokenFlag(`monitor:${STATUS_ONLY}:`).collections).toEqual({});
  });

  it.each([
    [[{ token: 'short', name: 'a', collections: {} }], /tokens\[0\] \("a"\)\.token must be 16-256 characters/],
    [[{ token: CALENDAR, name: 'has space', collections: {} }], /tokens\[0\]\.name must be 1-64/],
    [
      [{ token: CALENDAR, name: 'a', collections: { events: 'write' } }],
      /collections\.events must be "read" or "read-write"/,
    ],
    [
      [{ token: CALENDAR, name: 'a', collections: { 'bad/name': 'read' } }],
      /"bad\/name" is not a collection name or "\*"/,
    ],
    [[{ token: CALENDAR, name: 'a', collections: [] }], /collections must be an object/],
    [[{ token: CALENDAR, name: 'a', collections: {}, admin: true }], /unknown key "admin"/],
    [
      [
        { token: CALENDAR, name: 'a', collections: {} },
        { token: ADMIN, name: 'a', collections: {} },
      ],
      /two client tokens are named "a"/,
    ],
    [
      [
        { token: CALENDAR, name: 'a', collections: {} },
        { token: CALENDAR, name: 'b', collections: {} },
      ],
      /"b" has the same token as another/,
    ],
    [{ token: CALENDAR }, /tokens must be an array/],
    [['calendar:only-two-parts'], /--token takes NAME:TOKEN:RIGHTS/],
    [[`calendar:${CALENDAR}:events=x`], /--token calendar: "events=x" must be COLLECTION=r or COLLECTION=rw/],
    [[`calendar:${CALENDAR}:events=r,events=rw`], /collection events is named twice/],
  ])('a bad setting is refused with a message naming it: %j', (raw, message) => {
    expect(() => parseTokens(raw)).toThrow(message);
  });

  it('a message about a bad token never repeats the token', () => {
    const secret = 'not-a-valid-token!';
    let message = '';
    try {
      parseTokens([{ token: secret, name: 'a', collections: {} }]);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/token must be/);
    expect(message).not.toContain(secret);
  });

  it('resolveConfig reads tokens from the file, and --token flags replace them', () => {
    const base = { id: 'eu', port: 0, data: ':memory:' };
    const file = { tokens: [{ token: CALENDAR, name: 'calendar', collections: { events: 'read' } }] };
    expect(resolveConfig(base, file).tokens?.map((t) => t.name)).toEqual(['calendar']);
    expect(resolveConfig({ ...base, tokens: [`admin:${ADMIN}:*=rw`] }, file).tokens?.map((t) => t.name)).toEqual([
      'admin',
    ]);
    expect(resolveConfig(base).tokens).toEqual([]);
    expect(() => resolveConfig(base, { tokens: [{ name: 'x' }] })).toThrow(/tokens\[0\] \("x"\)\.token/);
  });
});

describe('the token registry', () => {
  it('resolves a known token to its grant, and says whether a token was missing or unknown', () => {
    const registry = new TokenRegistry(TOKENS);
    expect(registry.resolve(CALENDAR)).toEqual({ name: 'calendar', collections: TOKENS[1]?.collections });
    expect(registry.resolve(undefined)).toBe('none');
    expect(registry.resolve('')).toBe('none');
    expect(registry.resolve(`${CALENDAR}x`)).toBe('invalid');
    expect(registry.resolve(CALENDAR.slice(0, -1))).toBe('invalid');
    expect(new TokenRegistry([]).configured).toBe(false);
  });

  it('masks a token in a url for logs', () => {
    expect(redactUrl(`/changes?feed=eventsource&token=${CALENDAR}&since=2`)).toBe(
      '/changes?feed=eventsource&token=[redacted]&since=2',
    );
    expect(redactUrl(`/replicate?token=${CALENDAR}`)).toBe('/replicate?token=[redacted]');
  });
});

describe('HTTP with client tokens', () => {
  it('every data route answers 401 unauthorized without a token or with an unknown one', async () => {
    const { app, db } = await serve();
    for (const token of [null, 'unknown-token-0123456789']) {
      for (const [method, url, body] of [
        ['GET', '/db/events/e1'],
        ['PUT', '/db/events/e1', { a: 1 }],
        ['PATCH', '/db/events/e1', { ops: [] }],
        ['DELETE', '/db/events/e1'],
        ['GET', '/db/events'],
        ['GET', '/db/events/_config'],
        ['PUT', '/db/events/_config', { kind: 'map' }],
        ['POST', '/db/_batch', { ops: [] }],
        ['GET', '/changes'],
        ['GET', '/conflicts'],
        ['GET', '/status'],
      ] as const) {
        const res = await call(app, method, url, token, body);
        expectError(res, 401, 'unauthorized', token === null ? /needs a client token/ : /not valid/);
        expect(res.headers['www-authenticate']).toBe('Bearer realm="polyarch"');
      }
    }
    expect(db.status().seq).toBe(0);
  });

  it('a malformed Authorization header is unauthorized with a message that says the form', async () => {
    const { app } = await serve();
    const res = await app.inject({ url: '/db/events/e1', headers: { authorization: `Basic ${CALENDAR}` } });
    expectError(res, 401, 'unauthorized', /must be "Bearer TOKEN"/);
  });

  it('reading needs read and writing needs read-write: 403 forbidden names the collection and the right', async () => {
    const { app, db } = await serve();
    await db.collection('holidays').put('h1', 'new year');
    await db.collection('notes').put('n1', 'secret');
    expect((await call(app, 'PUT', '/db/events/e1', CALENDAR, { at: 9 })).statusCode).toBe(201);
    expect((await call(app, 'GET', '/db/events/e1', CALENDAR)).json()).toMatchObject({ value: { at: 9 } });
    expect((await call(app, 'GET', '/db/holidays/h1', CALENDAR)).json()).toMatchObject({ value: 'new year' });
    expect((await call(app, 'GET', '/db/holidays', CALENDAR)).statusCode).toBe(200);
    expect((await call(app, 'GET', '/db/holidays/_config', CALENDAR)).statusCode).toBe(200);

    const seq = db.status().seq;
    expectError(
      await call(app, 'PUT', '/db/holidays/h2', CALENDAR, 1),
      403,
      'forbidden',
      /may only read collection holidays: writing needs read-write/,
    );
    expectError(await call(app, 'DELETE', '/db/holidays/h1', CALENDAR), 403, 'forbidden', /holidays/);
    expectError(await call(app, 'PATCH', '/db/holidays/h1', CALENDAR, { ops: [] }), 403, 'forbidden', /holidays/);
    expectError(
      await call(app, 'PUT', '/db/holidays/_config', CALENDAR, { kind: 'map' }),
      403,
      'forbidden',
      /holidays/,
    );
    expectError(
      await call(app, 'GET', '/db/notes/n1', CALENDAR),
      403,
      'forbidden',
      /no right on collection notes: reading needs read/,
    );
    expectError(await call(app, 'GET', '/db/notes', CALENDAR), 403, 'forbidden', /notes/);
    expectError(await call(app, 'GET', '/db/notes/_config', CALENDAR), 403, 'forbidden', /notes/);
    expectError(await call(app, 'GET', '/conflicts?collection=notes', CALENDAR), 403, 'forbidden', /notes/);
    expect(db.status().seq).toBe(seq);

    expect((await call(app, 'PUT', '/db/events/_config', CALENDAR, { kind: 'map' })).statusCode).toBe(200);
    expect((await call(app, 'PUT', '/db/notes/n2', ADMIN, 'x')).statusCode).toBe(201);
  });

  it('a batch with one op the token may not write is refused whole, and nothing of it is applied', async () => {
    const { app, db } = await serve();
    const before = db.status();
    const res = await call(app, 'POST', '/db/_batch', CALENDAR, {
      ops: [
        { op: 'put', collection: 'events', id: 'e1', value: 1 },
        { op: 'delete', collection: 'holidays', id: 'h1' },
      ],
    });
    expectError(res, 403, 'forbidden', /holidays/);
    expect(db.status()).toEqual(before);
    expect(await db.collection('events').get('e1')).toBeNull();
    const ok = await call(app, 'POST', '/db/_batch', CALENDAR, {
      ops: [{ op: 'put', collection: 'events', id: 'e1', value: 1 }],
    });
    expect(ok.statusCode).toBe(200);
  });

  it('the changes feed shows only collections the token may read, and last_seq still moves past the rest', async () => {
    const { app, db } = await serve();
    await db.collection('events').put('e1', 1);
    await db.collection('notes').put('n1', 1);
    await db.collection('holidays').put('h1', 1);
    await db.collection('notes').configure({ kind: 'map', policy: 'keep' });
    await db.collection('notes').put('n2', {});
    const page = (await call(app, 'GET', '/changes', CALENDAR)).json<{
      results: { collection: string; id: string }[];
      last_seq: number;
    }>();
    expect(page.results.map((r) => `${r.collection}/${r.id}`)).toEqual(['events/e1', 'holidays/h1']);
    expect(page.last_seq).toBe(db.status().seq);
    const all = (await call(app, 'GET', '/changes', ADMIN)).json<{ results: unknown[] }>();
    expect(all.results).toHaveLength(5);
    // Paged: a page of only unreadable entries reads on to the next readable one.
    const paged = (await call(app, 'GET', '/changes?since=1&limit=1', CALENDAR)).json<{
      results: { id: string }[];
      last_seq: number;
    }>();
    expect(paged.results.map((r) => r.id)).toEqual(['h1']);
    expect(paged.last_seq).toBe(3);
    expect((await call(app, 'GET', '/changes?since=3', CALENDAR)).json()).toEqual({ results: [], last_seq: 5 });
  });

  it('a longpoll is not woken into an answer by changes the token may not read', async () => {
    const { app, db } = await serve();
    await db.collection('events').put('e1', 1);
    const reads = vi.spyOn(db, 'changes');
    const pending = call(app, 'GET', '/changes?feed=longpoll&since=1&timeout=60000', CALENDAR);
    const deadline = Date.now() + 5000;
    while (reads.mock.calls.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    await db.collection('notes').put('n1', 1);
    await db.collection('events').put('e2', 2);
    const res = (await pending).json<{ results: { id: string }[] }>();
    expect(res.results.map((r) => r.id)).toEqual(['e2']);
  }, 10_000);

  it('?token= works on a GET (EventSource sets no headers) and is refused on a write', async () => {
    const { app } = await serve();
    expect((await app.inject({ url: `/changes?token=${CALENDAR}` })).statusCode).toBe(200);
    expect((await app.inject({ url: `/db/events?token=${CALENDAR}&limit=5` })).statusCode).toBe(200);
    const res = await app.inject({
      method: 'PUT',
      url: `/db/events/e1?token=${CALENDAR}`,
      headers: { 'content-type': 'application/json' },
      payload: '1',
    });
    expectError(res, 400, 'invalid_input', /GET only/);
  });

  it('conflicts are listed only for collections the token may read', async () => {
    const { app, db } = await serve();
    const us = await openReplica({ storage: 'memory', id: 'us' });
    try {
      for (const c of ['events', 'notes']) {
        await db.collection(c).put('d', 'from eu');
        await us.collection(c).put('d', 'from us');
      }
      await db.applyChanges(await us.changesSince(db.vector()));
    } finally {
      await us.close();
    }
    const mine = (await call(app, 'GET', '/conflicts', CALENDAR)).json<{ results: { collection: string }[] }>();
    expect(mine.results.map((r) => r.collection)).toEqual(['events']);
    const all = (await call(app, 'GET', '/conflicts', ADMIN)).json<{ results: { collection: string }[] }>();
    expect(all.results.map((r) => r.collection).sort()).toEqual(['events', 'notes']);
  });

  it('status needs any valid token, metrics needs none', async () => {
    const { app } = await serve();
    expect((await call(app, 'GET', '/status', STATUS_ONLY)).json()).toMatchObject({ replica: 'eu' });
    expectError(await call(app, 'GET', '/db/events/e1', STATUS_ONLY), 403, 'forbidden');
    expect((await call(app, 'GET', '/metrics', null)).statusCode).toBe(200);
  });

  it('without tokens configured, any client may read and write and token headers are ignored', async () => {
    const { app } = await serve([]);
    expect((await call(app, 'PUT', '/db/notes/n1', null, 1)).statusCode).toBe(201);
    expect((await app.inject({ url: '/db/notes/n1', headers: { authorization: 'Basic x' } })).statusCode).toBe(200);
    expect((await app.inject({ url: `/changes?token=${CALENDAR}` })).statusCode).toBe(200);
  });

  it('the request log masks a token in the url', async () => {
    let log = '';
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        log += chunk.toString();
        done();
      },
    });
    const { app } = await serve(TOKENS, { level: 'info', stream });
    await app.inject({ url: `/changes?token=${CALENDAR}` });
    expect(log).toContain('token=[redacted]');
    expect(log).not.toContain(CALENDAR);
  });
});
