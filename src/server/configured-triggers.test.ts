/**
 * Configured triggers across restarts of an in-process server on one store: a trigger the
 * config no longer names is reported (its queue keeps growing), and a name the store declares
 * with another `where` is a start error (ConfigError) instead of a silent redeclaration.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { realEnv } from '../env/real.js';
import type { Env, LogLevel } from '../env/env.js';
import { ConfigError, resolveConfig } from './config.js';
import { startServer } from './serve.js';

const dir = mkdtempSync(path.join(tmpdir(), 'polyarch-configured-triggers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const logs: { level: LogLevel; msg: string; fields?: Record<string, unknown> }[] = [];
const env: Env = {
  ...realEnv(),
  logger: { log: (level, msg, fields) => logs.push({ level, msg, ...(fields === undefined ? {} : { fields }) }) },
};

/** Nothing listens there: deliveries fail and stay queued, which is what these tests look at. */
const webhook = { url: 'http://127.0.0.1:9/hook', timeoutMs: 1000 };

function config(triggers: unknown[]) {
  return resolveConfig({ id: 'eu', port: 0, data: dir, logLevel: 'silent' }, { triggers });
}

describe('configured triggers across restarts', () => {
  it('warns about a declared trigger the config no longer names, and refuses a changed where', async () => {
    const first = await startServer(config([{ name: 'mailer', where: 'origin', webhook }]), { env });
    try {
      expect(first.db.triggerStatus().map((t) => [t.name, t.attached])).toEqual([['mailer', true]]);
      await first.db.collection('invoices').put('i1', { total: 1 });
    } finally {
      await first.close();
    }

    logs.length = 0;
    const second = await startServer(config([]), { env });
    try {
      expect(second.db.triggerStatus()).toMatchObject([{ name: 'mailer', attached: false, pending: 1 }]);
      const warning = logs.find((l) => l.level === 'warn' && l.msg.includes('triggers the config does not name'));
      expect(warning?.fields).toEqual({ triggers: [{ name: 'mailer', pending: 1 }] });
    } finally {
      await second.close();
    }

    const refused = startServer(config([{ name: 'mailer', where: 'every-replica', webhook }]), { env });
    await expect(refused).rejects.toThrow(ConfigError);
    await expect(refused).rejects.toThrow(/trigger "mailer": .*declared with where origin/);

    // The store was closed on the way out: it opens again, its queue intact.
    const third = await startServer(config([{ name: 'mailer', where: 'origin', webhook }]), { env });
    try {
      expect(third.db.triggerStatus()).toMatchObject([{ name: 'mailer', attached: true }]);
      expect(third.db.triggerStatus()[0]?.pending).toBeGreaterThanOrEqual(1);
    } finally {
      await third.close();
    }
  });
});
