/**
 * The shared Storage contract suite (contract.test-suite.ts, the very file the memory, sqlite
 * and fake-indexeddb runs use) against the IndexedDB adapter on Chromium's real IndexedDB and
 * Web Locks. Vite bundles the suite with a page entry, its `vitest` import aliased to a shim
 * that collects the tests and asserts with Vitest's own matchers (@vitest/expect); the page
 * runs them all and hands back each result. Without /usr/bin/chromium the test is skipped on
 * a developer's machine and fails in CI, as the other browser tests do.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { build } from 'vite';
import type { Rollup } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haveChromium, inCi, launchDevice, requireChromium, root } from '../../../test/e2e/support.js';
import type { Device } from '../../../test/e2e/support.js';
// Types only: the page runs the bundle, not these modules.
import type { TestResult } from '../../../test/support/browser-vitest-shim.js';
import type { ContractPage } from '../../../test/support/indexeddb-contract.browser-entry.js';

const SUITE = path.join(root, 'src/storage/contract.test-suite.ts');
const ENTRY = path.join(root, 'test/support/indexeddb-contract.browser-entry.ts');
const SHIM = path.join(root, 'test/support/browser-vitest-shim.ts');

/** The entry and the contract suite as one script, with `vitest` resolved to the shim. */
async function bundle(): Promise<string> {
  const out = (await build({
    configFile: false,
    logLevel: 'silent',
    resolve: { alias: [{ find: /^vitest$/, replacement: SHIM }] },
    build: {
      write: false,
      target: 'es2022',
      minify: false,
      lib: { entry: ENTRY, formats: ['iife'], name: 'polyarchContractBundle' },
    },
  })) as Rollup.RollupOutput[];
  const chunk = out[0]?.output.find((o) => o.type === 'chunk');
  if (chunk === undefined || chunk.type !== 'chunk') throw new Error('vite produced no script');
  return chunk.code;
}

/**
 * The titles of the tests the suite file defines, read from its source rather than from the
 * bundle, so a collection that lost tests cannot pass. Every `it` applies here: the page
 * passes `reopen`, which is the suite's only condition.
 */
function titlesInSource(): string[] {
  const source = readFileSync(SUITE, 'utf8');
  return [...source.matchAll(/^\s*it\(\s*'((?:[^'\\]|\\.)*)'/gm)].map((m) => (m[1] ?? '').replace(/\\(.)/g, '$1'));
}

describe.skipIf(!haveChromium && !inCi)('Storage contract on the real IndexedDB in Chromium', () => {
  let server: Server | undefined;
  let device: Device | undefined;
  let page: Page;
  const log: string[] = [];

  beforeAll(async () => {
    requireChromium();
    const script = await bundle();
    server = createServer((req, res) => {
      if (req.url === '/contract.js') {
        // UTF-8 said outright: the suite's ids include 'é' and '日本', which must reach IndexedDB intact.
        res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(script);
      } else {
        res
          .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
          .end('<!doctype html><meta charset="utf-8"><script src="/contract.js"></script>');
      }
    });
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    // 127.0.0.1 is a secure context, which Web Locks need; a real origin, which IndexedDB needs.
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    device = await launchDevice();
    page = await device.context.newPage();
    page.on('console', (m) => log.push(`[page console] ${m.text()}`));
    page.on('pageerror', (e) => log.push(`[page error] ${e.message}`));
    await page.goto(`${origin}/`);
  }, 120_000);

  afterAll(async () => {
    await device?.close();
    await new Promise((resolve) => (server === undefined ? resolve(undefined) : server.close(resolve)));
  });

  it('passes every test of the shared suite', async () => {
    const expected = titlesInSource();
    // A sanity floor on the parse itself: the suite has well over twenty tests.
    expect(expected.length).toBeGreaterThan(20);
    const collected = await page.evaluate(
      () => (globalThis as unknown as { polyarchContract: ContractPage }).polyarchContract.collected,
    );
    const results: TestResult[] = await page.evaluate(() =>
      (globalThis as unknown as { polyarchContract: ContractPage }).polyarchContract.run(),
    );

    const failures = results.filter((r) => !r.passed);
    const report = failures.map((r) => `✗ ${r.path.join(' > ')}\n${r.error.replace(/^/gm, '    ')}`).join('\n\n');
    if (failures.length > 0) console.error(`${failures.length} contract test(s) failed in Chromium:\n\n${report}`);
    else console.info(`${results.length} of ${expected.length} contract tests ran and passed on Chromium's IndexedDB`);

    expect(report, `page log:\n${log.join('\n')}`).toBe('');
    expect(collected, 'tests the page collected vs it(...) calls in contract.test-suite.ts').toBe(expected.length);
    expect(results.map((r) => r.path.at(-1))).toEqual(expected);
    expect(results.every((r) => r.path[0] === 'indexeddb in Chromium: Storage contract')).toBe(true);
  }, 120_000);
});
