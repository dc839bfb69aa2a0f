/**
 * The IndexedDB replica and its tabs in a real browser (Debian's Chromium through
 * playwright-core): real IndexedDB, Web Locks and BroadcastChannel, which the Node tests fake.
 * Two tabs of one origin share one store; the leading tab goes away without closing anything
 * (as when the browser kills it); the other takes over; a later tab finds every write and the
 * one replica id. Without /usr/bin/chromium the test is skipped on a developer's machine and
 * fails in CI, as test/e2e does.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import type { BrowserContext, Page } from 'playwright-core';
import { build } from 'vite';
import type { Rollup } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// Types only: the pages run the bundle, not these modules.
import type * as Client from './index.js';
import type { TabDatabase } from './tabs.js';

const CHROMIUM = '/usr/bin/chromium';
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const haveChromium = existsSync(CHROMIUM);
const inCi = process.env.CI === 'true';

/** The browser entry as one script defining `window.polyarch`. */
async function bundle(): Promise<string> {
  const out = (await build({
    configFile: false,
    logLevel: 'silent',
    build: {
      write: false,
      target: 'es2022',
      minify: false,
      lib: { entry: path.join(root, 'src/client/index.ts'), formats: ['iife'], name: 'polyarch' },
    },
  })) as Rollup.RollupOutput[];
  const chunk = out[0]?.output.find((o) => o.type === 'chunk');
  if (chunk === undefined || chunk.type !== 'chunk') throw new Error('vite produced no script');
  return chunk.code;
}

/** Polls `check` in the test (not a sleep) until it passes or the deadline comes. */
async function eventually(check: () => Promise<void>, deadlineMs = 15_000): Promise<void> {
  const start = Date.now();
  for (;;) {
    try {
      await check();
      return;
    } catch (e) {
      if (Date.now() - start > deadlineMs) throw e;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

interface TabState {
  id: string;
  role: string;
  notes: Record<string, unknown>;
}

describe.skipIf(!haveChromium && !inCi)('IndexedDB replica shared by tabs in Chromium', () => {
  let server: Server;
  let origin: string;
  let context: BrowserContext;
  let profile: string;

  beforeAll(async () => {
    const script = await bundle();
    server = createServer((req, res) => {
      if (req.url === '/polyarch.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' }).end(script);
      } else {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><script src="/polyarch.js"></script>');
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    // 127.0.0.1 is a secure context, which Web Locks need.
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    profile = mkdtempSync(path.join(tmpdir(), 'polyarch-tabs-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    await new Promise((resolve) => server?.close(resolve));
    if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
  });

  async function openTab(): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${origin}/`);
    await page.evaluate(async () => {
      const w = window as unknown as { polyarch: typeof Client; db: unknown };
      w.db = await w.polyarch.openReplica({ storage: 'indexeddb:calendar', tabReadyMs: 5000 });
    });
    return page;
  }

  function state(page: Page): Promise<TabState> {
    return page.evaluate(async () => {
      const db = (window as unknown as { db: TabDatabase }).db;
      const { results } = await db.collection('notes').list({ limit: 100 });
      return { id: db.id, role: db.tabRole, notes: Object.fromEntries(results.map((r) => [r.id, r.value])) };
    });
  }

  function put(page: Page, id: string, value: string): Promise<void> {
    return page.evaluate(
      async ([id, value]) => {
        const db = (window as unknown as { db: TabDatabase }).db;
        await db.collection('notes').put(id as string, value as string);
      },
      [id, value],
    );
  }

  it('two tabs share one store; the leader tab dies; the other takes over; a new tab finds it all', async () => {
    const a = await openTab();
    const b = await openTab();
    const first = await state(a);
    expect(first.role).toBe('leader');
    expect((await state(b)).role).toBe('follower');
    await put(a, 'from-a', 'written in the leading tab');
    await put(b, 'from-b', 'written in the other tab');
    await eventually(async () => expect((await state(a)).notes['from-b']).toBe('written in the other tab'));
    await eventually(async () => expect((await state(b)).notes['from-a']).toBe('written in the leading tab'));

    // The leading tab goes without running any of its code: the browser frees its lock.
    await a.close({ runBeforeUnload: false });
    await eventually(async () => expect((await state(b)).role).toBe('leader'));
    await put(b, 'after', 'written once the other tab led');

    // A new tab follows the new leader and sees everything, under the store's one replica id.
    const c = await openTab();
    const seen = await state(c);
    expect(seen.role).toBe('follower');
    expect(seen.notes).toEqual({
      'from-a': 'written in the leading tab',
      'from-b': 'written in the other tab',
      after: 'written once the other tab led',
    });
    await b.close({ runBeforeUnload: false });
    await eventually(async () => expect((await state(c)).role).toBe('leader'));
    await put(c, 'last', 'written in the third tab');
    await c.evaluate(() => (window as unknown as { db: TabDatabase }).db.close());
    await c.close();

    // A page load with no other tab leads from the start: its Database is the stored replica.
    const d = await openTab();
    const reloaded = await state(d);
    expect(reloaded).toEqual({
      id: first.id,
      role: 'leader',
      notes: { ...seen.notes, last: 'written in the third tab' },
    });
    await d.close();
  }, 120_000);
});
