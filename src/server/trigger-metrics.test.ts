/**
 * A leader's triggers in GET /status (`triggers`) and GET /metrics (pending, deliveries and
 * failures per trigger, read from the core at scrape time), in process through app.inject.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { openReplica } from '../index.js';
import type { Database } from '../index.js';
import type { TriggerStatus } from '../replication/triggers.js';
import { buildApp } from './app.js';

const open: Database[] = [];
afterEach(async () => {
  for (const db of open.splice(0)) await db.close();
});

/** The value of `name{trigger="..."}` in a metrics text, or undefined when absent. */
function sample(text: string, name: string, trigger: string): number | undefined {
  const prefix = `${name}{trigger="${trigger}"} `;
  const line = text.split('\n').find((l) => l.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(prefix.length));
}

describe('triggers in /status and /metrics', () => {
  it('shows each trigger with its counts, and drops the series of a dropped trigger', async () => {
    const db = await openReplica({ storage: 'memory', id: 'eu' });
    open.push(db);
    const { app } = buildApp({ db });
    // Fails its first attempt (then acknowledges): a failure, then a delivery.
    let calls = 0;
    let delivered!: () => void;
    const done = new Promise<void>((resolve) => (delivered = resolve));
    const trigger = db.replica.on(
      'change',
      () => {
        calls++;
        if (calls === 1) throw new Error('mail server down');
        delivered();
      },
      { name: 'mailer', where: 'origin', collection: 'invoices', retry: { minMs: 1, maxMs: 5 } },
    );
    await trigger.ready;
    const idle = db.replica.on('change', () => new Promise(() => {}), { name: 'indexer', where: 'every-replica' });
    await idle.ready;
    idle.close();

    await db.collection('invoices').put('i1', { total: 1 });
    await done;
    await expect.poll(() => trigger.status().delivered).toBe(1);

    const status = (await app.inject({ url: '/status' })).json() as { triggers: TriggerStatus[] };
    expect(status.triggers.map((t) => t.name)).toEqual(['indexer', 'mailer']);
    expect(status.triggers[1]).toMatchObject({
      name: 'mailer',
      where: 'origin',
      collection: 'invoices',
      attached: true,
      pending: 0,
      delivered: 1,
      failures: 1,
      lastError: 'mail server down',
    });
    // Detached: its queue grows, and shows.
    expect(status.triggers[0]).toMatchObject({ name: 'indexer', where: 'every-replica', attached: false, pending: 1 });

    let text = (await app.inject({ url: '/metrics' })).body;
    expect(text).toContain('# TYPE polyarch_trigger_pending gauge');
    expect(text).toContain('# TYPE polyarch_trigger_deliveries_total counter');
    expect(text).toContain('# TYPE polyarch_trigger_failures_total counter');
    expect(sample(text, 'polyarch_trigger_pending', 'mailer')).toBe(0);
    expect(sample(text, 'polyarch_trigger_pending', 'indexer')).toBe(1);
    expect(sample(text, 'polyarch_trigger_deliveries_total', 'mailer')).toBe(1);
    expect(sample(text, 'polyarch_trigger_failures_total', 'mailer')).toBe(1);
    expect(sample(text, 'polyarch_trigger_failures_total', 'indexer')).toBe(0);

    await db.replica.dropTrigger('indexer');
    text = (await app.inject({ url: '/metrics' })).body;
    expect(sample(text, 'polyarch_trigger_pending', 'indexer')).toBeUndefined();
    expect(sample(text, 'polyarch_trigger_deliveries_total', 'mailer')).toBe(1);
    trigger.close();
    await app.close();
  });
});

describe('GET /triggers and DELETE /triggers/:name', () => {
  it('lists triggers, drops one no handler runs (with its queue), and refuses one that runs here', async () => {
    const db = await openReplica({ storage: 'memory', id: 'eu' });
    open.push(db);
    const { app } = buildApp({ db });
    const running = db.replica.on('change', () => undefined, { name: 'mailer', where: 'origin' });
    const old = db.replica.on('change', () => new Promise(() => {}), { name: 'old', where: 'every-replica' });
    await Promise.all([running.ready, old.ready]);
    old.close(); // as a trigger the config no longer names: nothing runs it, its queue grows
    await db.collection('notes').put('n1', { a: 1 });
    await expect.poll(() => old.status().pending).toBe(1);

    const listed = (await app.inject({ url: '/triggers' })).json() as { triggers: TriggerStatus[] };
    expect(listed.triggers.map((t) => [t.name, t.attached])).toEqual([
      ['mailer', true],
      ['old', false],
    ]);
    const refused = await app.inject({ method: 'DELETE', url: '/triggers/mailer' });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ error: 'conflict' });
    expect(refused.json<{ message: string }>().message).toMatch(/remove it from the config/);
    const dropped = await app.inject({ method: 'DELETE', url: '/triggers/old' });
    expect(dropped.statusCode).toBe(200);
    expect(dropped.json()).toEqual({ name: 'old', dropped: true, pending: 1 });
    expect(db.replica.triggerStatus().map((t) => t.name)).toEqual(['mailer']);
    const missing = await app.inject({ method: 'DELETE', url: '/triggers/old' });
    expect(missing.statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: '/triggers/bad%20name' })).statusCode).toBe(400);
    running.close();
    await app.close();
  });
});
