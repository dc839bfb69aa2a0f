/**
 * Shared pieces of the browser tests: Debian's Chromium driven by playwright-core, the pages
 * built into dist/web when their sources changed, a browser profile per simulated device, and
 * the page logs a failing test prints. Not a test file.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import type { BrowserContext, Page } from 'playwright-core';
import { expect } from 'vitest';

export const CHROMIUM = '/usr/bin/chromium';
export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const outputDir = path.join(root, 'test-output/e2e');
export const inCi = process.env.CI === 'true';
/** Without Chromium a browser test is skipped on a developer's machine and fails in CI. */
export const haveChromium = existsSync(CHROMIUM);

/** Throws (in beforeAll) when CI lacks Chromium, so the suite fails instead of passing empty. */
export function requireChromium(): void {
  if (!haveChromium) throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium (.ci/run)`);
}

/** Newest modification time of the files under `dir` (test files aside), recursively. */
function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtimeMs(full));
    else if (!entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(full).mtimeMs);
  }
  return newest;
}

const BUILD_LOCK = path.join(root, 'dist/.web-build.lock');
const BUILD_WAIT_MS = 180_000;

/** Blocks this worker for `ms` (test setup only: a build must finish before any page loads). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Builds dist/web unless every page named is newer than every source the pages bundle. Test
 * files run in parallel workers and the build empties dist/web first: a lock directory makes
 * one worker build while the others wait, then find the build fresh.
 */
export function ensureWebBuild(pages: readonly string[] = ['editor', 'calendar']): void {
  const fresh = (): boolean => {
    const sources = Math.max(newestMtimeMs(path.join(root, 'web')), newestMtimeMs(path.join(root, 'src')));
    return pages.every((p) => {
      const page = path.join(root, `dist/web/${p}/index.html`);
      return existsSync(page) && statSync(page).mtimeMs >= sources;
    });
  };
  const deadline = Date.now() + BUILD_WAIT_MS;
  mkdirSync(path.dirname(BUILD_LOCK), { recursive: true });
  for (;;) {
    if (fresh()) return;
    try {
      mkdirSync(BUILD_LOCK);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // A lock left by a killed run is stale after the longest a build may take.
      if (Date.now() - statSync(BUILD_LOCK).mtimeMs > BUILD_WAIT_MS)
        rmSync(BUILD_LOCK, { recursive: true, force: true });
      if (Date.now() > deadline)
        throw new Error(`another worker has been building dist/web for too long (${BUILD_LOCK})`);
      pause(200);
    }
  }
  try {
    if (!fresh()) execFileSync('npm', ['run', 'build:web'], { cwd: root, stdio: 'pipe' });
  } finally {
    rmSync(BUILD_LOCK, { recursive: true, force: true });
  }
}

/** A browser with its own profile directory: its own IndexedDB, as a separate device has. */
export interface Device {
  context: BrowserContext;
  profile: string;
  close(): Promise<void>;
}

export async function launchDevice(viewport = { width: 900, height: 560 }): Promise<Device> {
  const profile = mkdtempSync(path.join(tmpdir(), 'polyarch-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    context,
    profile,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Opens `url` in a new page of `context`, checks it was served with the pages' CSP, and copies
 * its console and errors into `log` (printed when a test fails).
 */
export async function openPage(context: BrowserContext, url: string, name: string, log: string[]): Promise<Page> {
  const page = await context.newPage();
  page.on('console', (m) => log.push(`[${name} console] ${m.text()}`));
  page.on('pageerror', (e) => log.push(`[${name} error] ${e.message}`));
  const res = await page.goto(url);
  expect(res?.status()).toBe(200);
  expect(res?.headers()['content-security-policy']).toContain("script-src 'self'");
  return page;
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(outputDir, { recursive: true });
  await page.screenshot({ path: path.join(outputDir, name) });
}
