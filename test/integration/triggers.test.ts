/**
 * Server-configured triggers with real `polyarch serve` processes and a webhook receiver in
 * the test (docs/operations.md#triggers):
 * - two peered leaders, each with an `origin` and an `every-replica` webhook: once replication
 *   settles, every write was delivered by its origin trigger exactly once, from the leader that
 *   accepted it, and by each leader's every-replica trigger exactly once, all under one key;
 * - a leader killed with SIGKILL while its receiver holds a delivery delivers the same key
 *   again after its restart on the same data dir (at-least-once, never skipped);
 * - a receiver that fails twice gets the event a third time, and meanwhile /status and
 *   /metrics show the failures;
 * - a module trigger (relative to the config file) is called; a broken one stops the start
 *   with exit code 2.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import type { TriggerEvent, TriggerStatus } from '../../src/replication/triggers.js';
import { Cluster, FAST_HEARTBEAT, converged, getOk, peersLive, putOk, until } from './harness.js';
import type { Leader } from './harness.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(root, 'src/cli/main.ts');

/** One POST the receiver got: the path names the leader and trigger it was configured for. */
interface Delivery {
  path: string;
  headers: IncomingMessage['headers'];
  event: TriggerEvent;
}

/** A webhook receiver on 127.0.0.1 recording every delivery; `answer` decides each reply. */
class Receiver {
  readonly deliveries: Delivery[] = [];
  answer: (d: Delivery, res: ServerResponse) => void = (_d, res) => res.writeHead(200).end();
  private readonly held: ServerResponse[] = [];
  private server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    const server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => {
        const d: Delivery = { path: req.url ?? '', headers: req.headers, event: JSON.parse(body) as TriggerEvent };
        this.deliveries.push(d);
        this.answer(d, res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this;
  }

  /** Never answers this one (until close). */
  hold(res: ServerResponse): void {
    this.held.push(res);
  }

  at(p: string): Delivery[] {
    return this.deliveries.filter((d) => d.path === p);
  }

  async close(): Promise<void> {
    for (const res of this.held) res.destroy();
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}

type TriggerSpec = Record<string, unknown>;

/** Writes a leader's config file (fast heartbeats plus its triggers) and defines the leader with it. */
function leaderSpec(cluster: Cluster, id: string, triggers: TriggerSpec[], peers: string[] = []) {
  const file = path.join(cluster.dir, `${id}.json`);
  writeFileSync(file, JSON.stringify({ ...FAST_HEARTBEAT, triggers }));
  return { id, peers, fastHeartbeat: false, extraArgs: ['--config', file] };
}

async function triggerStatus(l: Leader, name: string): Promise<TriggerStatus> {
  const res = await fetch(`${l.url}/status`);
  const status = (await res.json()) as { triggers: TriggerStatus[] };
  const t = status.triggers.find((s) => s.name === name);
  if (t === undefined) throw new Error(`no trigger ${name} in /status of ${l.options.id}`);
  return t;
}

/** The value of `name{trigger="..."}` in GET /metrics, or undefined when absent. */
async function triggerMetric(l: Leader, name: string, trigger: string): Promise<number | undefined> {
  const text = await (await fetch(`${l.url}/metrics`)).text();
  const prefix = `${name}{trigger="${trigger}"} `;
  const line = text.split('\n').find((s) => s.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(prefix.length));
}

function countBy<T>(items: readonly T[], key: (t: T) => string): Map<string, number> {
  const out = new Map<string, number>();
  for (const i of items) out.set(key(i), (out.get(key(i)) ?? 0) + 1);
  return out;
}

describe('origin and every-replica webhooks at two peered leaders', () => {
  const cluster = new Cluster('triggers');
  const receiver = new Receiver();
  let eu: Leader;
  let us: Leader;

  beforeAll(async () => {
    await receiver.start();
    cluster.onTeardown(() => receiver.close());
    const specs = ['eu', 'us'].map((id) =>
      leaderSpec(
        cluster,
        id,
        [
          { name: 'orig', where: 'origin', collection: 'docs', webhook: { url: `${receiver.url}/${id}/orig` } },
          {
            name: 'all',
            where: 'every-replica',
            webhook: { url: `${receiver.url}/${id}/all`, headers: { authorization: 'Bearer hook-secret' } },
          },
        ],
        id === 'eu' ? ['us'] : [],
      ),
    );
    [eu, us] = (await cluster.start(specs)) as [Leader, Leader];
    await Promise.all([peersLive(eu, ['us']), peersLive(us, ['eu'])]);
  });

  afterAll(() => cluster.teardown());

  it('delivers each write once from its origin, and once at every leader, under one key', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    /** Every write: where it was accepted and what the document showed after it. */
    const writes: { at: string; collection: string; id: string; value: unknown }[] = [];
    const put = async (l: Leader, collection: string, id: string, value: unknown): Promise<void> => {
      await putOk(l, collection, id, value);
      writes.push({ at: l.options.id, collection, id, value });
    };
    await Promise.all([
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((n) => put(eu, 'docs', `e${n}`, { n, by: 'eu' })),
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((n) => put(us, 'docs', `u${n}`, { n, by: 'us' })),
      // Not the origin trigger's collection: only `all`, which has none, sees it.
      put(eu, 'other', 'x', { other: true }),
    ]);
    await converged([eu, us]);
    // Changes to documents the other leader wrote, once it holds them.
    await put(us, 'docs', 'e0', { n: 0, by: 'us', updated: true });
    const res = await fetch(`${eu.url}/db/docs/u1`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    writes.push({ at: 'eu', collection: 'docs', id: 'u1', value: null });
    await converged([eu, us]);

    const origin = writes.filter((w) => w.collection === 'docs');
    await until('every trigger at both leaders to have delivered everything', async () => {
      const all = await Promise.all(
        [eu, us].flatMap((l) => ['orig', 'all'].map(async (name) => (await triggerStatus(l, name)).pending)),
      );
      if (all.some((p) => p > 0)) return false;
      return (
        receiver.at('/eu/orig').length + receiver.at('/us/orig').length >= origin.length &&
        receiver.at('/eu/all').length >= writes.length &&
        receiver.at('/us/all').length >= writes.length
      );
    });

    // Every delivery carries its key in the header and the body, and the trigger's name.
    for (const d of receiver.deliveries) {
      expect(d.headers['idempotency-key']).toBe(d.event.key);
      expect(d.headers['x-polyarch-trigger']).toBe(d.event.trigger);
      expect(d.headers['content-type']).toBe('application/json');
      expect(d.path.endsWith(`/${d.event.trigger}`)).toBe(true);
    }
    expect(receiver.at('/eu/all').every((d) => d.headers['authorization'] === 'Bearer hook-secret')).toBe(true);

    // Origin: each write exactly once, from the leader that accepted it, keyed by its dot there.
    const orig = [...receiver.at('/eu/orig'), ...receiver.at('/us/orig')];
    const summary = JSON.stringify(receiver.deliveries.map((d) => [d.path, d.event.key, d.event.id]));
    expect(
      [...countBy(orig, (d) => d.event.key).values()].every((n) => n === 1),
      summary,
    ).toBe(true);
    expect(orig.length, summary).toBe(origin.length);
    for (const d of orig) {
      const leader = d.path.split('/')[1];
      expect(d.event.origin, summary).toBe(leader);
      expect(d.event.key.startsWith(`${leader}:`), summary).toBe(true);
      expect(d.event.collection).toBe('docs');
    }
    const shown = (w: { at: string; id: string; value: unknown }): string =>
      `${w.at} ${w.id} ${JSON.stringify(w.value)}`;
    expect(orig.map((d) => shown({ at: d.event.origin, id: d.event.id, value: d.event.value })).sort()).toEqual(
      origin.map(shown).sort(),
    );
    const deleted = orig.find((d) => d.event.id === 'u1' && d.event.origin === 'eu');
    expect(deleted?.event.deleted).toBe(true);

    // Every replica: each leader delivered every write once, under the key its origin used.
    const keyOf = new Map(
      orig.map((d) => [`${d.event.collection}/${d.event.id}/${JSON.stringify(d.event.value)}`, d.event.key]),
    );
    for (const l of ['eu', 'us']) {
      const got = receiver.at(`/${l}/all`);
      expect(
        [...countBy(got, (d) => d.event.key).values()].every((n) => n === 1),
        summary,
      ).toBe(true);
      expect(got.length, summary).toBe(writes.length);
      expect(got.map((d) => shown({ at: d.event.origin, id: d.event.id, value: d.event.value })).sort()).toEqual(
        writes.map(shown).sort(),
      );
      for (const d of got) {
        const k = keyOf.get(`${d.event.collection}/${d.event.id}/${JSON.stringify(d.event.value)}`);
        if (d.event.collection === 'docs') expect(d.event.key, summary).toBe(k);
      }
    }

    // /status: the triggers as configured, attached, with what they delivered in this process.
    for (const [l, own] of [
      [eu, origin.filter((w) => w.at === 'eu').length],
      [us, origin.filter((w) => w.at === 'us').length],
    ] as const) {
      expect(await triggerStatus(l, 'orig')).toMatchObject({
        where: 'origin',
        collection: 'docs',
        attached: true,
        pending: 0,
        delivered: own,
        failures: 0,
      });
      expect(await triggerStatus(l, 'all')).toMatchObject({
        where: 'every-replica',
        collection: null,
        attached: true,
        pending: 0,
        delivered: writes.length,
      });
      expect(await triggerMetric(l, 'polyarch_trigger_deliveries_total', 'all')).toBe(writes.length);
      expect(await triggerMetric(l, 'polyarch_trigger_pending', 'orig')).toBe(0);
    }
    // The header value configured never shows in the logs.
    expect(cluster.logs(1_000_000)).not.toContain('hook-secret');
  });
});

describe('a leader killed with SIGKILL while a delivery is in flight', () => {
  const cluster = new Cluster('triggers-kill');
  const receiver = new Receiver();
  let eu: Leader;

  beforeAll(async () => {
    await receiver.start();
    cluster.onTeardown(() => receiver.close());
    // A long timeout: the held delivery must not be retried before the kill.
    const hook = { url: `${receiver.url}/orig`, timeoutMs: 120_000 };
    [eu] = (await cluster.start([
      leaderSpec(cluster, 'eu', [{ name: 'orig', where: 'origin', webhook: hook, retry: { minMs: 50, maxMs: 500 } }]),
    ])) as [Leader];
  });

  afterAll(() => cluster.teardown());

  it('delivers the same key again after the restart on its data dir', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    receiver.answer = (_d, res) => receiver.hold(res);
    await putOk(eu, 'invoices', 'inv-1', { total: 42 });
    const first = await until('the receiver to get the delivery', () => receiver.at('/orig')[0]);
    expect(first.event).toMatchObject({ collection: 'invoices', id: 'inv-1', origin: 'eu', value: { total: 42 } });
    expect((await triggerStatus(eu, 'orig')).pending).toBe(1);

    await eu.stop('SIGKILL');
    expect(eu.exitCode).not.toBe(0);
    const before = receiver.deliveries.length;
    receiver.answer = (_d, res) => res.writeHead(200).end();
    await eu.start();

    const again = await until('the delivery again after the restart', () => receiver.deliveries[before]);
    expect(again.event.key).toBe(first.event.key);
    expect(again.headers['idempotency-key']).toBe(first.event.key);
    expect(again.event).toMatchObject({ collection: 'invoices', id: 'inv-1', value: { total: 42 } });
    expect((await getOk(eu, 'invoices', 'inv-1')).value).toEqual({ total: 42 });
    const status = await until('the restarted leader to record the acknowledgement', async () => {
      const s = await triggerStatus(eu, 'orig');
      return s.pending === 0 ? s : undefined;
    });
    expect(status).toMatchObject({ delivered: 1, attached: true });
    // A later write is delivered once, under a new key.
    await putOk(eu, 'invoices', 'inv-2', { total: 7 });
    const next = await until('the next write', () => receiver.deliveries.find((d) => d.event.id === 'inv-2'));
    expect(next.event.key).not.toBe(first.event.key);
  });
});

describe('a failing receiver, and module triggers', () => {
  const cluster = new Cluster('triggers-retry');
  const receiver = new Receiver();
  let eu: Leader;
  const journal = (): string => path.join(cluster.dir, 'hooks', 'journal.log');

  beforeAll(async () => {
    await receiver.start();
    cluster.onTeardown(() => receiver.close());
    mkdirSync(path.join(cluster.dir, 'hooks'));
    // A module trigger, named relative to the config file: it appends each key to a file.
    writeFileSync(
      path.join(cluster.dir, 'hooks', 'journal.mjs'),
      [
        "import { appendFile } from 'node:fs/promises';",
        "export async function onChange(e) { await appendFile(new URL('./journal.log', import.meta.url), `${e.key} ${e.id}\\n`); }",
        '',
      ].join('\n'),
    );
    [eu] = (await cluster.start([
      leaderSpec(cluster, 'eu', [
        {
          name: 'flaky',
          where: 'origin',
          collection: 'orders',
          webhook: { url: `${receiver.url}/flaky` },
          retry: { minMs: 50, maxMs: 200 },
        },
        { name: 'journal', where: 'every-replica', collection: 'notes', module: './hooks/journal.mjs' },
      ]),
    ])) as [Leader];
  });

  afterAll(() => cluster.teardown());

  it('retries after 500s until a 2xx; /status and /metrics show the failures meanwhile', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    let release: (() => void) | undefined;
    receiver.answer = (_d, res) => {
      const n = receiver.at('/flaky').length;
      if (n === 1) res.writeHead(500).end();
      // The second attempt is held while the test looks at /status and /metrics, then fails too.
      else if (n === 2) release = () => res.writeHead(500).end();
      else res.writeHead(200).end();
    };
    await putOk(eu, 'orders', 'o1', { qty: 3 });
    await until('the second attempt', () => release !== undefined);

    const failing = await triggerStatus(eu, 'flaky');
    expect(failing.failures).toBeGreaterThanOrEqual(1);
    expect(failing.lastError).toContain('answered 500');
    expect(failing.lastErrorAt).not.toBeNull();
    expect(failing.pending).toBe(1);
    expect(await triggerMetric(eu, 'polyarch_trigger_failures_total', 'flaky')).toBeGreaterThan(0);
    expect(await triggerMetric(eu, 'polyarch_trigger_pending', 'flaky')).toBe(1);
    release?.();

    const done = await until('the delivery to succeed', async () => {
      const s = await triggerStatus(eu, 'flaky');
      return s.delivered === 1 ? s : undefined;
    });
    expect(done).toMatchObject({ pending: 0, failures: 2 });
    const attempts = receiver.at('/flaky');
    expect(attempts.map((d) => d.event.attempt)).toEqual([1, 2, 3]);
    expect(new Set(attempts.map((d) => d.event.key)).size).toBe(1);
    expect(await triggerMetric(eu, 'polyarch_trigger_deliveries_total', 'flaky')).toBe(1);
    expect(await triggerMetric(eu, 'polyarch_trigger_failures_total', 'flaky')).toBe(2);
  });

  it('calls a module trigger found relative to the config file', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await putOk(eu, 'notes', 'n1', { text: 'hi' });
    const line = await until('the module to record the write', () => {
      try {
        return readFileSync(journal(), 'utf8')
          .split('\n')
          .find((l) => l.endsWith(' n1'));
      } catch {
        return undefined;
      }
    });
    expect(line).toMatch(/^eu:\d+ n1$/);
  });

  it('a trigger module without a handler, or missing, stops the start with exit code 2, naming its path', async () => {
    writeFileSync(path.join(cluster.dir, 'hooks', 'empty.mjs'), 'export const notAHandler = 1;\n');
    const serve = async (module: string): Promise<{ code: number | null; stderr: string }> => {
      const file = path.join(cluster.dir, 'bad.json');
      writeFileSync(file, JSON.stringify({ triggers: [{ name: 'x', where: 'origin', module }] }));
      const args = ['--import', 'tsx', cli, 'serve', '--id', 'bad', '--port', '0', '--data', ':memory:'];
      const child = spawn(process.execPath, [...args, '--config', file], {
        cwd: root,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      return { code, stderr };
    };
    const empty = await serve('./hooks/empty.mjs');
    expect(empty.code, empty.stderr).toBe(2);
    expect(empty.stderr).toContain(`trigger "x": ${path.join(cluster.dir, 'hooks', 'empty.mjs')} exports no handler`);
    const missing = await serve('./hooks/nope.mjs');
    expect(missing.code, missing.stderr).toBe(2);
    expect(missing.stderr).toContain(`no such file ${path.join(cluster.dir, 'hooks', 'nope.mjs')}`);
  });
});
