/**
 * The offline-first calendar in a real browser (Debian's Chromium, driven by playwright-core):
 * two real `polyarch serve` leaders with a cluster secret and client tokens, and two devices,
 * each a browser with its own profile (its own IndexedDB). Device A reaches leader a through a
 * fault proxy; device B syncs with leader b. Events made on each show on the other; A goes
 * offline for real (the browser offline and its link cut), creates and edits events, reloads
 * (they are still there: IndexedDB), while B edits one of the same events; A comes back, both
 * show the same calendar with that event flagged in conflict, A merges the versions, and B
 * shows the resolution with the flag gone. A third page whose token may only read `events`
 * sees them but cannot write: the page shows the server's refusal. Everything is done through
 * the page's own buttons and forms; screenshots land in test-output/e2e/calendar-*.png.
 *
 * Without /usr/bin/chromium the test is skipped on a developer's machine and fails in CI.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { startFaultProxy } from '../support/fault-proxy.js';
import type { FaultProxy } from '../support/fault-proxy.js';
import { Cluster, until } from '../integration/harness.js';
import type { Leader } from '../integration/harness.js';
import { ensureWebBuild, haveChromium, inCi, launchDevice, openPage, requireChromium, screenshot } from './support.js';
import type { Device } from './support.js';

const SECRET = 'calendar-e2e-cluster-secret';
const WRITER = 'calendar-writer-0123456789';
const READER = 'calendar-reader-0123456789';
const TOKENS = ['--token', `writer:${WRITER}:events=rw`, '--token', `reader:${READER}:events=r`];
const WAIT_MS = 30_000;

interface HookEvent {
  id: string;
  title: string;
  start: string;
  end: string;
  notes: string | null;
  versions: number;
}

/** What the page shows, through its test hook (window.polyarchCalendar). */
async function shown(page: Page): Promise<{ status: string; events: HookEvent[] }> {
  return page.evaluate(() => {
    const h = (window as unknown as { polyarchCalendar?: { status(): string; events(): HookEvent[] } })
      .polyarchCalendar;
    if (h === undefined) throw new Error('the calendar has not started');
    return { status: h.status(), events: h.events() };
  });
}

async function waitForStatus(page: Page, want: (status: string) => boolean, what: string): Promise<string> {
  return until(
    what,
    async () => {
      const { status } = await shown(page);
      return want(status) ? status : undefined;
    },
    WAIT_MS,
    100,
  );
}

async function waitForTitles(page: Page, titles: readonly string[], what: string): Promise<HookEvent[]> {
  return until(
    what,
    async () => {
      const { events } = await shown(page);
      const have = new Set(events.map((e) => e.title));
      return titles.every((t) => have.has(t)) ? events : undefined;
    },
    WAIT_MS,
    100,
  );
}

/** The calendar as a comparable string: ids, values and how many versions each has. */
function canonical(events: readonly HookEvent[]): string {
  return JSON.stringify([...events].sort((x, y) => x.id.localeCompare(y.id)));
}

const pad = (n: number): string => String(n).padStart(2, '0');
const now = new Date();
const TODAY = `${now.getFullYear()}-${pad(now.getMonth() + 1)}-${pad(now.getDate())}`;

/** Fills the open event form and saves it. */
async function fillAndSave(
  page: Page,
  e: { title: string; start?: string; end?: string; notes?: string },
): Promise<void> {
  const form = page.locator('#event-dialog');
  await form.waitFor({ state: 'visible' });
  await form.locator('input[name=title]').fill(e.title);
  await form.locator('input[name=date]').fill(TODAY);
  if (e.start !== undefined) await form.locator('input[name=start]').fill(e.start);
  if (e.end !== undefined) await form.locator('input[name=end]').fill(e.end);
  if (e.notes !== undefined) await form.locator('textarea[name=notes]').fill(e.notes);
  await form.locator('button[value=save]').click();
  await form.waitFor({ state: 'hidden' });
}

async function create(page: Page, e: { title: string; start: string; end: string; notes?: string }): Promise<void> {
  await page.locator('#new-event').click();
  await fillAndSave(page, e);
}

function chip(page: Page, title: string) {
  return page.locator('#calendar .event', { hasText: title });
}

describe.skipIf(!haveChromium && !inCi)('the offline-first calendar in a browser', () => {
  const cluster = new Cluster('e2e-calendar');
  let a: Leader;
  let b: Leader;
  let proxy: FaultProxy;
  const devices: Device[] = [];

  beforeAll(async () => {
    requireChromium();
    ensureWebBuild();
    [a, b] = (await cluster.start([
      { id: 'a', secret: SECRET, extraArgs: TOKENS },
      { id: 'b', secret: SECRET, peers: ['a'], extraArgs: TOKENS },
    ])) as [Leader, Leader];
    // Started after the leaders, so its own port cannot take one they reserved.
    proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: a.options.port } });
    cluster.onTeardown(() => proxy.close());
    await until('b to see a live', async () => {
      const res = await fetch(`${b.url}/status`, { headers: { authorization: `Bearer ${WRITER}` } });
      const s = (await res.json()) as { peers: { id: string | null; state: string }[] };
      return s.peers.some((p) => p.id === 'a' && p.state === 'live');
    });
    devices.push(await launchDevice({ width: 1000, height: 720 }), await launchDevice({ width: 1000, height: 720 }));
  });

  afterAll(async () => {
    await Promise.all(devices.map((d) => d.close()));
    await cluster.teardown();
  });

  it('two devices sync both ways, one edits offline and reloads, the conflict is flagged and resolved on both; a read-only token is refused', async () => {
    const log: string[] = [];
    onTestFailed(() => console.error(`${log.join('\n')}\n${cluster.logs()}`));
    const [deviceA, deviceB] = devices as [Device, Device];
    // A's page comes from leader a itself (so it can reload while its sync link is cut); its
    // WebSocket goes through the proxy.
    const pageA = await openPage(
      deviceA.context,
      `${a.url}/web/calendar/?leader=127.0.0.1:${proxy.port}&token=${WRITER}`,
      'A',
      log,
    );
    const pageB = await openPage(deviceB.context, `${b.url}/web/calendar/?token=${WRITER}`, 'B', log);
    await waitForStatus(pageA, (s) => s === 'up to date', 'A to be up to date');
    await waitForStatus(pageB, (s) => s === 'up to date', 'B to be up to date');

    // Both online: each device's event reaches the other.
    await create(pageA, { title: 'Standup', start: '09:00', end: '09:30' });
    await create(pageB, { title: 'Lunch', start: '12:00', end: '13:00', notes: 'the usual place' });
    await waitForTitles(pageA, ['Standup', 'Lunch'], 'A to show both events');
    await waitForTitles(pageB, ['Standup', 'Lunch'], 'B to show both events');
    await chip(pageB, 'Standup').waitFor();
    await waitForStatus(pageA, (s) => s === 'up to date', 'the server to hold all of A');

    // A goes offline for real: the browser is offline and its link to the leader is cut.
    await deviceA.context.setOffline(true);
    proxy.partition();
    proxy.cut();
    await waitForStatus(pageA, (s) => s.startsWith('offline'), 'A to show offline');
    await create(pageA, { title: 'Dentist', start: '15:00', end: '16:00' });
    await chip(pageA, 'Standup').click();
    await fillAndSave(pageA, { title: 'Standup (A: moved)', start: '09:15', end: '09:45' });
    await waitForStatus(pageA, (s) => s === 'offline · 2 to sync', 'A to count its 2 changes to sync');

    // A reloads. A page cannot load with no network at all (no service worker), so the browser
    // is online for the reload while the link to the leader stays cut: what shows is from IndexedDB.
    await deviceA.context.setOffline(false);
    await pageA.reload();
    const reloaded = await waitForTitles(
      pageA,
      ['Standup (A: moved)', 'Lunch', 'Dentist'],
      'A to show its events after the reload',
    );
    expect(reloaded.find((e) => e.title === 'Dentist')?.versions).toBe(1);
    expect((await shown(pageA)).status).not.toBe('up to date');
    await deviceA.context.setOffline(true);
    await waitForStatus(pageA, (s) => s.startsWith('offline'), 'A to show offline after the reload');

    // Meanwhile B edits the same event.
    await chip(pageB, 'Standup').click();
    await fillAndSave(pageB, { title: 'Standup (B: renamed)', notes: 'bring the slides' });
    await waitForTitles(pageB, ['Standup (B: renamed)'], 'B to show its edit');
    expect((await shown(pageA)).events.map((e) => e.title)).not.toContain('Standup (B: renamed)');

    // A comes back: both show the same calendar, the event edited on both flagged in conflict.
    proxy.heal();
    await deviceA.context.setOffline(false);
    await waitForStatus(pageA, (s) => s === 'up to date', 'A to be up to date again');
    const agreed = await until(
      'both devices to show the same calendar',
      async () => {
        const [sa, sb] = await Promise.all([shown(pageA), shown(pageB)]);
        return canonical(sa.events) === canonical(sb.events) && sa.events.length === 3 ? sa.events : undefined;
      },
      WAIT_MS,
      100,
    );
    const standup = agreed.find((e) => e.title.startsWith('Standup'));
    expect(standup?.versions).toBe(2);
    // Flagged in the month view on A and in the day view on B.
    await pageA.locator('#calendar .month .event.conflicted').waitFor();
    await pageB.locator(`#calendar [data-day="${TODAY}"] .day-number`).click();
    await pageB.locator('#calendar .day .event.conflicted').waitFor();
    expect(await pageA.locator('#calendar .event.conflicted').count()).toBe(1);
    await screenshot(pageA, 'calendar-a-conflict.png');
    await screenshot(pageB, 'calendar-b-conflict.png');

    // A opens it: both versions side by side; A merges them into one.
    await pageA.locator('#calendar .event.conflicted').click();
    const versions = pageA.locator('#conflict-dialog .version');
    await versions.nth(1).waitFor();
    expect(await versions.count()).toBe(2);
    const cards = (await versions.allTextContents()).join('\n');
    expect(cards).toContain('Standup (A: moved)');
    expect(cards).toContain('Standup (B: renamed)');
    expect(cards).toContain('bring the slides');
    await screenshot(pageA, 'calendar-a-versions.png');
    await pageA.locator('#conflict-dialog .merge').click();
    const merged = pageA.locator('#event-dialog input[name=title]');
    await merged.waitFor();
    expect(await merged.inputValue()).toMatch(
      /Standup \(A: moved\) \/ Standup \(B: renamed\)|Standup \(B: renamed\) \/ Standup \(A: moved\)/,
    );
    await fillAndSave(pageA, { title: 'Standup (merged)', start: '09:15', end: '09:45', notes: 'bring the slides' });

    // The resolution replicates: B shows it, and no flag on either.
    await waitForTitles(pageB, ['Standup (merged)'], 'B to show the resolution');
    await until(
      'the conflict to be gone on both',
      async () => {
        const [sa, sb] = await Promise.all([shown(pageA), shown(pageB)]);
        return sa.events.every((e) => e.versions === 1) && canonical(sa.events) === canonical(sb.events);
      },
      WAIT_MS,
      100,
    );
    await pageB.locator('#calendar .event', { hasText: 'Standup (merged)' }).waitFor();
    expect(await pageB.locator('#calendar .event.conflicted').count()).toBe(0);
    expect(await pageA.locator('#calendar .event.conflicted').count()).toBe(0);
    const final = (await shown(pageB)).events.find((e) => e.title === 'Standup (merged)');
    expect(final?.notes).toBe('bring the slides');
    expect(new Date(final?.start ?? '').getMinutes()).toBe(15);
    await screenshot(pageA, 'calendar-a-resolved.png');
    await screenshot(pageB, 'calendar-b-resolved.png');

    // A reader: a token that may only read `events`. It sees them, but its write is refused,
    // and the page says so. (Another origin in B's browser: its own IndexedDB.)
    const pageC = await openPage(
      deviceB.context,
      `${a.url}/web/calendar/?leader=${new URL(b.url).host}&token=${READER}`,
      'C',
      log,
    );
    await waitForTitles(pageC, ['Standup (merged)', 'Lunch', 'Dentist'], 'the reader to see the events');
    await create(pageC, { title: 'Not allowed', start: '17:00', end: '18:00' });
    const refusal = pageC.locator('#sync-error');
    await refusal.waitFor({ state: 'visible', timeout: WAIT_MS });
    expect(await refusal.textContent()).toMatch(
      /refused your change to “Not allowed”.*may only read collection events/,
    );
    await chip(pageC, 'Not allowed').and(pageC.locator('.refused')).waitFor();
    await screenshot(pageC, 'calendar-reader-refused.png');
    const listed = await fetch(`${b.url}/db/events`, { headers: { authorization: `Bearer ${WRITER}` } });
    const titles = ((await listed.json()) as { results: { value: { title: string } }[] }).results.map(
      (d) => d.value.title,
    );
    expect(titles.sort()).toEqual(['Dentist', 'Lunch', 'Standup (merged)']);
    expect((await shown(pageB)).events.map((e) => e.title)).not.toContain('Not allowed');
  });
});
