/**
 * Unique fields and references over HTTP: settings through `PUT /db/:collection/_config`,
 * local refusals as 409 constraint_violation with details, and violations that replication
 * brings listed by `GET /conflicts`, counted by `GET /status` and shown by `GET /db/:c/:id`.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { openReplica } from '../index.js';
import type { Database } from '../index.js';
import { buildApp } from './app.js';

const running: { app: FastifyInstance; db: Database }[] = [];

afterEach(async () => {
  for (const { app, db } of running.splice(0)) {
    await app.close();
    await db.close();
  }
});

async function serve(id: string): Promise<{ app: FastifyInstance; db: Database }> {
  const db = await openReplica({ storage: 'memory', id });
  const { app } = buildApp({ db });
  running.push({ app, db });
  return { app, db };
}

const JSON_TYPE = { 'content-type': 'application/json' };

function send(
  app: FastifyInstance,
  method: 'PUT' | 'POST',
  url: string,
  body: unknown,
): Promise<LightMyRequestResponse> {
  return app.inject({ method, url, headers: JSON_TYPE, payload: JSON.stringify(body) });
}

async function configure(app: FastifyInstance): Promise<void> {
  expect((await send(app, 'PUT', '/db/users/_config', { unique: ['email'] })).statusCode).toBe(200);
  expect((await send(app, 'PUT', '/db/tasks/_config', { references: { owner: 'users' } })).statusCode).toBe(200);
}

describe('constraints over HTTP', () => {
  it('stores the settings and refuses bad ones with 400', async () => {
    const { app } = await serve('eu');
    await configure(app);
    const got = await app.inject({ method: 'GET', url: '/db/users/_config' });
    expect(got.json()).toMatchObject({ collection: 'users', kind: 'record', unique: ['email'] });
    const bad = await send(app, 'PUT', '/db/hits/_config', { kind: 'counter', unique: ['n'] });
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ error: 'invalid_input' });
    const badRef = await send(app, 'PUT', '/db/tasks/_config', { references: { owner: 'no such name' } });
    expect(badRef.statusCode).toBe(400);
  });

  it('answers 409 constraint_violation with details for a duplicate, a dangling reference and a referenced delete', async () => {
    const { app, db } = await serve('eu');
    await configure(app);
    expect((await send(app, 'PUT', '/db/users/u1', { email: 'alice@x' })).statusCode).toBe(201);
    const before = db.status();
    const dup = await send(app, 'PUT', '/db/users/u2', { email: 'alice@x' });
    expect(dup.statusCode).toBe(409);
    expect(dup.json()).toEqual({
      error: 'constraint_violation',
      message: expect.stringContaining('users/u1') as unknown,
      details: {
        kind: 'unique',
        collection: 'users',
        id: 'u2',
        field: 'email',
        value: 'alice@x',
        other: { collection: 'users', id: 'u1' },
      },
    });
    const dangling = await send(app, 'PUT', '/db/tasks/t1', { owner: 'ghost' });
    expect(dangling.statusCode).toBe(409);
    expect(dangling.json()).toMatchObject({ error: 'constraint_violation', details: { kind: 'reference' } });
    const batch = await send(app, 'POST', '/db/_batch', {
      ops: [
        { op: 'put', collection: 'users', id: 'u3', value: { email: 'c@x' } },
        { op: 'put', collection: 'users', id: 'u4', value: { email: 'c@x' } },
      ],
    });
    expect(batch.statusCode).toBe(409);
    expect(db.status()).toEqual(before);
    expect((await send(app, 'PUT', '/db/tasks/t1', { owner: 'u1' })).statusCode).toBe(201);
    const del = await app.inject({ method: 'DELETE', url: '/db/users/u1' });
    expect(del.statusCode).toBe(409);
    expect(del.json()).toMatchObject({
      error: 'constraint_violation',
      details: { kind: 'reference', id: 'u1', other: { collection: 'tasks', id: 't1' } },
    });
    expect((await app.inject({ method: 'GET', url: '/db/users/u1' })).statusCode).toBe(200);
  });

  it('lists a duplicate made across a partition in /conflicts, counts it in /status and shows it on the document', async () => {
    const eu = await serve('eu');
    const us = await serve('us');
    await configure(eu.app);
    await us.db.applyChanges(await eu.db.changesSince(us.db.vector()));
    await eu.db.settled();
    await us.db.settled();
    expect((await send(eu.app, 'PUT', '/db/users/u2', { email: 'alice@x' })).statusCode).toBe(201);
    expect((await send(us.app, 'PUT', '/db/users/u1', { email: 'alice@x' })).statusCode).toBe(201);
    await us.db.applyChanges(await eu.db.changesSince(us.db.vector()));
    await eu.db.applyChanges(await us.db.changesSince(eu.db.vector()));
    for (const { app } of [eu, us]) {
      const page = (await app.inject({ method: 'GET', url: '/conflicts' })).json<{ results: unknown[] }>();
      expect(page.results).toEqual([
        expect.objectContaining({
          collection: 'users',
          id: 'u2',
          kind: 'unique',
          value: { email: 'alice@x' },
          constraint: { field: 'email', value: 'alice@x', winner: 'u1' },
        }),
      ]);
      const status = (await app.inject({ method: 'GET', url: '/status' })).json<Record<string, unknown>>();
      expect(status).toMatchObject({ conflicts: 0, violations: 1 });
      const doc = (await app.inject({ method: 'GET', url: '/db/users/u2' })).json<Record<string, unknown>>();
      expect(doc.violations).toEqual([{ kind: 'unique', field: 'email', value: 'alice@x', winner: 'u1' }]);
      const winner = (await app.inject({ method: 'GET', url: '/db/users/u1' })).json<Record<string, unknown>>();
      expect(winner).not.toHaveProperty('violations');
    }
    // Fixed at one leader, cleared at both.
    expect((await send(us.app, 'PUT', '/db/users/u2', { email: 'alice2@x' })).statusCode).toBe(201);
    await eu.db.applyChanges(await us.db.changesSince(eu.db.vector()));
    for (const { app } of [eu, us]) {
      const page = (await app.inject({ method: 'GET', url: '/conflicts' })).json<{ results: unknown[] }>();
      expect(page.results).toEqual([]);
      expect((await app.inject({ method: 'GET', url: '/status' })).json()).toMatchObject({ violations: 0 });
    }
  });
});
