/**
 * The HTTP routes of ids and sequences: POST /db/:collection (the server picks a time id) and
 * /sequences/:name (settings, status, next), with and without client tokens.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { decodeTimeId } from '../core/index.js';
import { openReplica } from '../index.js';
import type { Database } from '../index.js';
import { buildApp } from './app.js';
import { TokenRegistry } from './client-tokens.js';
import type { ClientToken } from './client-tokens.js';

const running: { app: FastifyInstance; db: Database }[] = [];

afterEach(async () => {
  for (const { app, db } of running.splice(0)) {
    await app.close();
    await db.close();
  }
});

async function serve(tokens?: readonly ClientToken[]): Promise<{ app: FastifyInstance; db: Database }> {
  const db = await openReplica({ storage: 'memory', id: 'eu' });
  const { app } = buildApp({ db, ...(tokens === undefined ? {} : { tokens: new TokenRegistry(tokens) }) });
  running.push({ app, db });
  return { app, db };
}

const JSON_TYPE = { 'content-type': 'application/json' };

function send(
  app: FastifyInstance,
  method: 'GET' | 'PUT' | 'POST' | 'DELETE',
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return app.inject({
    method,
    url,
    headers: body === undefined ? headers : { ...JSON_TYPE, ...headers },
    ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}

function expectError(res: LightMyRequestResponse, status: number, code: string): void {
  expect({ status: res.statusCode, body: res.json() as unknown }).toEqual({
    status,
    body: { error: code, message: expect.any(String) as unknown },
  });
}

describe('POST /db/:collection', () => {
  it('creates a document under a time id the server picks: 201, then GET finds it', async () => {
    const { app } = await serve();
    const first = await send(app, 'POST', '/db/orders', { total: 12 });
    expect(first.statusCode).toBe(201);
    const { id, version } = first.json<{ id: string; version: string }>();
    expect(decodeTimeId(id)).toMatchObject({ replica: 'eu', incarnation: 1 });
    expect(first.headers.etag).toBe(`"${version}"`);
    const got = await send(app, 'GET', `/db/orders/${encodeURIComponent(id)}`);
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({ id, value: { total: 12 }, version });
    const second = (await send(app, 'POST', '/db/orders', null)).json<{ id: string }>();
    expect(second.id > id).toBe(true);
    const list = (await send(app, 'GET', '/db/orders')).json<{ results: { id: string }[] }>();
    expect(list.results.map((r) => r.id)).toEqual([id, second.id]);
  });

  it('refuses a missing or bad body and a bad collection name, writing nothing', async () => {
    const { app, db } = await serve();
    expectError(await send(app, 'POST', '/db/orders', '{nope'), 400, 'invalid_json');
    expectError(await send(app, 'POST', '/db/orders'), 400, 'invalid_json');
    expectError(await send(app, 'POST', '/db/bad%20name', { a: 1 }), 400, 'invalid_name');
    expectError(await send(app, 'POST', '/db/_config', { a: 1 }), 400, 'invalid_name');
    expect(db.status().seq).toBe(0);
  });

  it('leaves POST /db/_batch as it was', async () => {
    const { app } = await serve();
    const res = await send(app, 'POST', '/db/_batch', {
      ops: [{ op: 'put', collection: 'orders', id: 'o1', value: 1 }],
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ results: [{ collection: 'orders', id: 'o1' }] });
    expectError(await send(app, 'POST', '/db/_batch', { ops: 'x' }), 400, 'invalid_input');
  });

  it('needs the right to write the collection when tokens are configured', async () => {
    const { app } = await serve([
      { name: 'writer', token: 'writer-token-0123456789', collections: { orders: 'read-write' } },
      { name: 'reader', token: 'reader-token-0123456789', collections: { orders: 'read' } },
    ]);
    const as = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
    expect((await send(app, 'POST', '/db/orders', 1, as('writer-token-0123456789'))).statusCode).toBe(201);
    expectError(await send(app, 'POST', '/db/orders', 1, as('reader-token-0123456789')), 403, 'forbidden');
    expectError(await send(app, 'POST', '/db/orders', 1), 401, 'unauthorized');
  });
});

describe('/sequences/:name', () => {
  it('configures a sequence, hands out its numbers and shows its status', async () => {
    const { app } = await serve();
    const put = await send(app, 'PUT', '/sequences/invoice', { allocator: 'eu', blockSize: 10, start: 1000 });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({ name: 'invoice', allocator: 'eu', blockSize: 10, start: 1000 });
    const values: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await send(app, 'POST', '/sequences/invoice/next');
      expect(res.statusCode).toBe(200);
      values.push(res.json<{ name: string; value: number }>().value);
    }
    expect(values).toEqual([1000, 1001, 1002]);
    const status = await send(app, 'GET', '/sequences/invoice');
    expect(status.json()).toMatchObject({ name: 'invoice', allocator: 'eu', blockSize: 10, last: 1002, remaining: 7 });
  });

  it('answers 404 for an unknown sequence, 400 for bad names and settings, 503 when exhausted', async () => {
    const { app } = await serve();
    expectError(await send(app, 'POST', '/sequences/nope/next'), 404, 'not_found');
    expectError(await send(app, 'GET', '/sequences/nope'), 404, 'not_found');
    expectError(await send(app, 'PUT', '/sequences/bad%20name', { allocator: 'eu' }), 400, 'invalid_name');
    expectError(await send(app, 'PUT', '/sequences/s', { blockSize: 5 }), 400, 'invalid_input');
    expectError(await send(app, 'PUT', '/sequences/s', { allocator: 'eu', blockSize: -1 }), 400, 'invalid_input');
    expectError(await send(app, 'PUT', '/sequences/s'), 400, 'invalid_json');
    // An allocator that is not here and never answers: no block, after the wait asked for.
    await send(app, 'PUT', '/sequences/s', { allocator: 'far-away' });
    const res = await send(app, 'POST', '/sequences/s/next?waitMs=20');
    expectError(res, 503, 'sequence_exhausted');
    expect(res.json<{ message: string }>().message).toMatch(/allocator far-away granted no new block within 20 ms/);
    expectError(await send(app, 'POST', '/sequences/s/next?waitMs=-1'), 400, 'invalid_input');
    // A handover away from another allocator is made there, or forced with a start.
    const refused = await send(app, 'PUT', '/sequences/s', { allocator: 'eu' });
    expectError(refused, 409, 'conflict');
    expect(refused.json<{ message: string }>().message).toMatch(/hand over at far-away/);
    expectError(await send(app, 'PUT', '/sequences/s', { allocator: 'eu', force: true }), 400, 'invalid_input');
    const forced = await send(app, 'PUT', '/sequences/s', { allocator: 'eu', start: 5000, force: true });
    expect(forced.statusCode).toBe(200);
    const taken = await send(app, 'POST', '/sequences/s/next');
    expect(taken.json()).toEqual({ name: 's', value: 5000 });
  });

  it('needs a right on every collection when tokens are configured', async () => {
    const { app } = await serve([
      { name: 'admin', token: 'admin-token-0123456789', collections: { '*': 'read-write' } },
      { name: 'reader', token: 'reader-token-0123456789', collections: { '*': 'read' } },
      { name: 'orders', token: 'orders-token-0123456789', collections: { orders: 'read-write' } },
    ]);
    const as = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
    const admin = as('admin-token-0123456789');
    expect((await send(app, 'PUT', '/sequences/s', { allocator: 'eu' }, admin)).statusCode).toBe(200);
    expect((await send(app, 'POST', '/sequences/s/next', undefined, admin)).json()).toEqual({ name: 's', value: 1 });
    expect((await send(app, 'GET', '/sequences/s', undefined, as('reader-token-0123456789'))).statusCode).toBe(200);
    expectError(
      await send(app, 'POST', '/sequences/s/next', undefined, as('reader-token-0123456789')),
      403,
      'forbidden',
    );
    expectError(await send(app, 'GET', '/sequences/s', undefined, as('orders-token-0123456789')), 403, 'forbidden');
    expectError(await send(app, 'POST', '/sequences/s/next'), 401, 'unauthorized');
    // Triggers likewise: listing needs read on every collection, dropping read-write.
    expect((await send(app, 'GET', '/triggers', undefined, as('reader-token-0123456789'))).statusCode).toBe(200);
    expectError(await send(app, 'GET', '/triggers', undefined, as('orders-token-0123456789')), 403, 'forbidden');
    expectError(await send(app, 'DELETE', '/triggers/x', undefined, as('reader-token-0123456789')), 403, 'forbidden');
    expectError(await send(app, 'DELETE', '/triggers/x', undefined, admin), 404, 'not_found');
  });
});
