/**
 * The config file's `triggers`: every bad entry stops the start with a message naming it (and
 * never quoting a header value), module paths are relative to the config file, and a module
 * trigger's handler is found (onChange or default) or its absence named at load.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, readConfigFile, resolveConfig } from './config.js';
import { loadTriggerModule } from './module-trigger.js';
import { parseTriggers } from './trigger-config.js';

const dir = mkdtempSync(path.join(tmpdir(), 'polyarch-trigger-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hooks = path.join(dir, 'hooks');
mkdirSync(hooks);
writeFileSync(path.join(hooks, 'mail.mjs'), 'export default async function (e) { globalThis.mailed = e.key; }\n');
writeFileSync(path.join(hooks, 'named.mjs'), 'export const onChange = async () => "named";\nexport default 1;\n');
writeFileSync(path.join(hooks, 'none.mjs'), 'export const other = () => {};\n');
writeFileSync(path.join(hooks, 'broken.mjs'), 'export default (;\n');

const webhook = { url: 'http://127.0.0.1:9/hook' };
const required = { id: 'eu', port: 0, data: ':memory:' };

function triggersOf(triggers: unknown): ReturnType<typeof parseTriggers> {
  return resolveConfig(required, { triggers }).triggers as ReturnType<typeof parseTriggers>;
}

function refused(triggers: unknown, message: RegExp): void {
  expect(() => resolveConfig(required, { triggers })).toThrow(message);
}

describe('triggers in the server config', () => {
  it('accepts a webhook trigger and fills in the defaults', () => {
    expect(triggersOf([{ name: 'mailer', where: 'origin', webhook }])).toEqual([
      { name: 'mailer', where: 'origin', webhook: { url: 'http://127.0.0.1:9/hook', headers: {}, timeoutMs: 10_000 } },
    ]);
    expect(resolveConfig(required).triggers).toEqual([]);
  });

  it('keeps collection, retry, headers (by lower-case name) and timeout', () => {
    const [t] = triggersOf([
      {
        name: 'audit.v2',
        where: 'every-replica',
        collection: 'invoices',
        retry: { minMs: 100, maxMs: 5000 },
        webhook: { url: 'https://hooks.example/x?y=1', headers: { Authorization: 'Bearer s3cret' }, timeoutMs: 500 },
      },
    ]);
    expect(t).toEqual({
      name: 'audit.v2',
      where: 'every-replica',
      collection: 'invoices',
      retry: { minMs: 100, maxMs: 5000 },
      webhook: { url: 'https://hooks.example/x?y=1', headers: { authorization: 'Bearer s3cret' }, timeoutMs: 500 },
    });
  });

  it('refuses both or neither of module and webhook', () => {
    refused([{ name: 'a', where: 'origin' }], /trigger "a": give exactly one of "module".*"webhook"/);
    refused(
      [{ name: 'a', where: 'origin', webhook, module: path.join(hooks, 'mail.mjs') }],
      /trigger "a": give exactly one/,
    );
  });

  it('refuses a bad where', () => {
    refused([{ name: 'a', where: 'everywhere', webhook }], /trigger "a": where must be "origin" or "every-replica"/);
    refused([{ name: 'a', webhook }], /where must be .*\(absent\)/);
  });

  it('refuses bad and duplicate names', () => {
    refused([{ name: '', where: 'origin', webhook }], /triggers\[0\]\.name must be 1-64/);
    refused([{ name: 'has space', where: 'origin', webhook }], /triggers\[0\]\.name/);
    refused([{ name: 'x'.repeat(65), where: 'origin', webhook }], /triggers\[0\]\.name/);
    refused([{ where: 'origin', webhook }], /triggers\[0\]\.name/);
    refused([{ name: '.hidden', where: 'origin', webhook }], /starting with a letter or digit/);
    refused(
      [
        { name: 'a', where: 'origin', webhook },
        { name: 'a', where: 'every-replica', webhook },
      ],
      /the name "a" is used twice/,
    );
  });

  it('refuses a bad url, naming neither it nor its credentials', () => {
    for (const url of ['not a url', 'ftp://h/x', 'file:///etc/passwd', 42, undefined]) {
      refused([{ name: 'a', where: 'origin', webhook: { url } }], /trigger "a": webhook\.url must be an http/);
    }
    try {
      resolveConfig(required, { triggers: [{ name: 'a', where: 'origin', webhook: { url: 'ws://u:pw1234@h/' } }] });
      expect.unreachable();
    } catch (e) {
      expect((e as Error).message).not.toContain('pw1234');
    }
  });

  it('refuses bad headers without quoting their values', () => {
    const secret = 'Bearer top-secret-value';
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ 'bad header': secret }, /"bad header" is not a header name/],
      [{ 'Idempotency-Key': secret }, /"idempotency-key" is set by every delivery/],
      [{ 'content-type': secret }, /"content-type" is set by every delivery/],
      [{ authorization: `${secret}\r\nx-injected: 1` }, /headers\.authorization must be a string without control/],
      [{ authorization: 42 }, /headers\.authorization must be a string/],
      [{ Authorization: secret, authorization: secret }, /"authorization" is given twice/],
    ];
    for (const [headers, message] of cases) {
      try {
        parseTriggers([{ name: 'a', where: 'origin', webhook: { url: webhook.url, headers } }]);
        expect.unreachable();
      } catch (e) {
        expect((e as Error).message).toMatch(message);
        expect((e as Error).message).not.toContain('top-secret');
      }
    }
    refused([{ name: 'a', where: 'origin', webhook: { ...webhook, headers: ['x'] } }], /headers must be an object/);
  });

  it('refuses a bad timeout, retry, collection and unknown keys', () => {
    const t = (extra: Record<string, unknown>) => [{ name: 'a', where: 'origin', webhook, ...extra }];
    for (const timeoutMs of [0, -1, 1.5, '100', 600_001]) {
      refused([{ name: 'a', where: 'origin', webhook: { ...webhook, timeoutMs } }], /webhook\.timeoutMs must be/);
    }
    refused(t({ retry: { minMs: 0 } }), /retry\.minMs must be an integer/);
    refused(t({ retry: { minMs: 500, maxMs: 100 } }), /retry\.minMs must not exceed maxMs/);
    refused(t({ retry: { backoff: 2 } }), /retry: unknown key "backoff"/);
    refused(t({ retry: 5 }), /retry must be an object/);
    refused(t({ collection: '_config' }), /trigger "a": collection: invalid collection name/);
    refused(t({ collection: 7 }), /trigger "a": collection/);
    refused(t({ when: 'now' }), /triggers\[0\]: unknown key "when"/);
    refused([{ name: 'a', where: 'origin', webhook: { ...webhook, method: 'PUT' } }], /unknown key "method"/);
    refused({ name: 'a' }, /triggers must be an array/);
    refused(['a'], /triggers\[0\] must be an object/);
  });

  it('resolves a module path relative to the config file', () => {
    const file = path.join(dir, 'server.json');
    writeFileSync(
      file,
      JSON.stringify({ triggers: [{ name: 'mailer', where: 'origin', module: './hooks/mail.mjs' }] }),
    );
    const config = resolveConfig(required, readConfigFile(file));
    expect(config.triggers).toEqual([{ name: 'mailer', where: 'origin', module: path.join(hooks, 'mail.mjs') }]);
    // An absolute path stays as it is.
    writeFileSync(
      file,
      JSON.stringify({ triggers: [{ name: 'm', where: 'origin', module: path.join(hooks, 'named.mjs') }] }),
    );
    expect(resolveConfig(required, readConfigFile(file)).triggers?.[0]?.module).toBe(path.join(hooks, 'named.mjs'));
  });

  it('refuses a module file that does not exist, naming its resolved path', () => {
    const file = path.join(dir, 'missing.json');
    writeFileSync(file, JSON.stringify({ triggers: [{ name: 'm', where: 'origin', module: './hooks/nope.mjs' }] }));
    const missing = path.join(hooks, 'nope.mjs');
    expect(() => resolveConfig(required, readConfigFile(file))).toThrow(`trigger "m".module: no such file ${missing}`);
    refused([{ name: 'm', where: 'origin', module: hooks }], /no such file/);
    refused([{ name: 'm', where: 'origin', module: '' }], /module must be the path of a JS module/);
  });
});

describe('loading a trigger module', () => {
  it('takes the default export, or onChange when there is one', async () => {
    const mail = await loadTriggerModule('mailer', path.join(hooks, 'mail.mjs'));
    await mail({ key: 'eu:1' } as never);
    expect((globalThis as { mailed?: string }).mailed).toBe('eu:1');
    const named = await loadTriggerModule('n', path.join(hooks, 'named.mjs'));
    expect(await named({} as never)).toBe('named');
  });

  it('a module without a handler, or that cannot load, is a ConfigError naming the trigger and path', async () => {
    const none = path.join(hooks, 'none.mjs');
    await expect(loadTriggerModule('n', none)).rejects.toThrow(ConfigError);
    await expect(loadTriggerModule('n', none)).rejects.toThrow(`trigger "n": ${none} exports no handler`);
    const broken = path.join(hooks, 'broken.mjs');
    await expect(loadTriggerModule('b', broken)).rejects.toThrow(`trigger "b": cannot load ${broken}`);
  });
});
