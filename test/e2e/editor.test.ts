/**
 * The collaborative editor in a real browser (Debian's Chromium, driven by playwright-core):
 * two real `polyarch serve` leaders replicating with each other, one page on each, the second
 * reached through a fault proxy so its link can be cut for real. Both type concurrently with
 * real keystrokes; the second page loses its leader (partitioned and reset), both keep typing,
 * the link heals; both pages show the same text, holding every character typed, and each shows
 * the other's cursor. Screenshots of both pages land in test-output/e2e/.
 *
 * Without /usr/bin/chromium the test is skipped on a developer's machine and fails in CI.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { startFaultProxy } from '../support/fault-proxy.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { Cluster, peersLive, until } from '../integration/harness.js';
import type { Leader } from '../integration/harness.js';
import { ensureWebBuild, haveChromium, inCi, launchDevice, openPage, requireChromium, screenshot } from './support.js';
import type { Device } from './support.js';

/** The characters of `s`, sorted: two texts holding the same characters in any order are equal here. */
function chars(s: string): string {
  return [...s].sort().join('');
}

interface Hook {
  text(): string;
  replicaText(): string;
  status(): string;
  others(): string[];
  head(): number;
  remoteHeads(): { name: string; head: number }[];
}

/** Reads the page's test hook (window.polyarchEditor); typing goes through the keyboard. */
async function hook<K extends keyof Hook>(page: Page, key: K): Promise<ReturnType<Hook[K]>> {
  return page.evaluate((k) => {
    const h = (window as unknown as { polyarchEditor?: Hook }).polyarchEditor;
    if (h === undefined) throw new Error('the editor has not started');
    return h[k]() as ReturnType<Hook[K]>;
  }, key);
}

async function waitForStatus(page: Page, want: (status: string) => boolean, what: string): Promise<void> {
  await until(what, async () => want(await hook(page, 'status')), 30_000, 100);
}

const DOC = 'notes/e2e';

describe.skipIf(!haveChromium && !inCi)('the collaborative editor in a browser', () => {
  const cluster = new Cluster('e2e-editor');
  let a: Leader;
  let b: Leader;
  let proxy: FaultProxy;
  let device: Device | undefined;

  beforeAll(async () => {
    requireChromium();
    ensureWebBuild();
    const ports = await cluster.ports(['a', 'b']);
    proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: ports.get('b') as number } });
    cluster.onTeardown(() => proxy.close());
    a = cluster.define({ id: 'a' }, ports.get('a') as number);
    b = cluster.define({ id: 'b', peers: [a.url] }, ports.get('b') as number);
    await Promise.all([a.start(), b.start()]);
    await peersLive(b, ['a']);
    device = await launchDevice();
  });

  afterAll(async () => {
    await device?.close();
    await cluster.teardown();
  });

  it('two pages on two leaders type concurrently, one loses its link and comes back, and both converge', async () => {
    const browserLog: string[] = [];
    onTestFailed(() => console.error(`${browserLog.join('\n')}\n${cluster.logs()}`));
    const context = (device as Device).context;
    const open = (url: string, name: string): Promise<Page> => openPage(context, url, name, browserLog);
    const pageA = await open(`${a.url}/web/editor/?doc=${DOC}`, 'A');
    const pageB = await open(proxy.url(`/web/editor/?doc=${DOC}`), 'B');
    await waitForStatus(pageA, (s) => s === 'online', 'page A to be online');
    await waitForStatus(pageB, (s) => s === 'online', 'page B to be online');
    const nameA = await pageA.locator('#user-name').inputValue();
    const nameB = await pageB.locator('#user-name').inputValue();
    await pageA.locator('.cm-content').click();
    await pageB.locator('.cm-content').click();

    const typed: string[] = [];
    const type = async (page: Page, s: string): Promise<void> => {
      typed.push(s);
      await page.keyboard.type(s);
    };
    const convergedOn = async (what: string): Promise<string> =>
      until(
        what,
        async () => {
          const [ta, tb, ra, rb] = await Promise.all([
            hook(pageA, 'text'),
            hook(pageB, 'text'),
            hook(pageA, 'replicaText'),
            hook(pageB, 'replicaText'),
          ]);
          return ta === tb && ra === ta && rb === tb && chars(ta) === chars(typed.join('')) ? ta : undefined;
        },
        30_000,
        100,
      );

    // Both type at once, real keystrokes, into the same (empty) document.
    await Promise.all([type(pageA, 'Alpha writes first.\n'), type(pageB, 'Bravo joins in! ')]);
    await convergedOn('both pages to show both texts');

    // Each page shows the other's cursor, with the other's name.
    await pageA.locator('.cm-polyarch-caret-name', { hasText: nameB }).waitFor({ timeout: 20_000 });
    await pageB.locator('.cm-polyarch-caret-name', { hasText: nameA }).waitFor({ timeout: 20_000 });
    expect(await hook(pageA, 'others')).toContain(nameB);

    // B's link goes down for real: new connections stall, the open one is reset.
    proxy.partition();
    proxy.cut();
    await waitForStatus(pageB, (s) => s !== 'online', 'page B to notice it is offline');
    await Promise.all([type(pageA, 'A goes on alone. '), type(pageB, 'B types offline, ')]);
    await pageB.keyboard.press('Enter');
    typed.push('\n');
    await type(pageB, 'still offline.');
    expect(await hook(pageB, 'text')).toContain('still offline.');
    expect(await hook(pageA, 'text')).not.toContain('B types offline');
    expect(await hook(pageB, 'status')).not.toBe('online');

    // The link heals: B redials on its own, and the texts merge.
    proxy.heal();
    await waitForStatus(pageB, (s) => s === 'online', 'page B to be back online');
    const final = await convergedOn('both pages to merge what was typed apart');
    for (const s of ['Alpha writes first.', 'A goes on alone. ', 'B types offline, ', 'still offline.']) {
      expect(final).toContain(s);
    }
    await pageA.locator('.cm-polyarch-caret-name', { hasText: nameB }).waitFor({ timeout: 20_000 });
    await pageB.locator('.cm-polyarch-caret-name', { hasText: nameA }).waitFor({ timeout: 20_000 });
    // Each shows the other's caret where the other has it.
    const caretShownAt = async (viewer: Page, owner: Page, name: string): Promise<boolean> => {
      const [head, shown] = await Promise.all([hook(owner, 'head'), hook(viewer, 'remoteHeads')]);
      return shown.some((c) => c.name === name && c.head === head);
    };
    await until("page A to show B's caret where B has it", () => caretShownAt(pageA, pageB, nameB));
    await until("page B to show A's caret where A has it", () => caretShownAt(pageB, pageA, nameA));

    // Both leaders hold the same text too.
    await until('the leaders to agree', async () => {
      const [sa, sb] = await Promise.all([a.status(), b.status()]);
      return sa.digest === sb.digest;
    });

    await screenshot(pageA, 'editor-a.png');
    await screenshot(pageB, 'editor-b.png');
  });
});
