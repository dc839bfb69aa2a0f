/**
 * The offline-first calendar page: a replica in IndexedDB (`indexeddb:calendar`, shared by the
 * tabs of this origin, kept across reloads), synced with one leader while a network allows.
 * Every write is local first; the status line says whether the server has it yet. Events in
 * conflict (edited on two devices apart) are flagged, and resolved by the user.
 *
 * URL parameters: `leader` (host:port or a ws(s):// or http(s):// url; default the server that
 * served the page), `token` (a client token, when the leader has tokens), `cluster` (default:
 * the serving leader's, from ../config.json).
 */
import { openReplica } from '../../src/client/index.js';
import type { Database, SyncHandle } from '../../src/client/index.js';
import { EventStore, isStale } from './store.js';
import type { CalendarEvent, StoredEvent } from './store.js';
import { addDays, addMonths, chooseVersion, editEvent, renderCalendar, startOfDay } from './view.js';
import type { CalendarModel, Mode } from './view.js';
import { clusterOf, element, leaderOf } from '../shared/page.js';

/** What the end-to-end test reads; it acts through the page's own buttons and forms. */
export interface CalendarTestHook {
  /** The status line as shown: offline, connecting, syncing N, up to date. */
  status(): string;
  pending(): number;
  /** Every event with the number of its versions (2 or more: in conflict). */
  events(): { id: string; title: string; start: string; end: string; notes: string | null; versions: number }[];
}

declare global {
  interface Window {
    polyarchCalendar?: CalendarTestHook;
  }
}

/** The status line: what the user needs to know is whether the server has their changes. */
function statusText(sync: SyncHandle): string {
  const pending = sync.pending;
  switch (sync.status) {
    case 'online':
      return 'up to date';
    case 'syncing':
      return `syncing ${pending}`;
    case 'offline':
      return pending > 0 ? `offline · ${pending} to sync` : 'offline';
    default:
      return sync.status;
  }
}

class CalendarApp {
  private readonly store: EventStore;
  private events = new Map<string, StoredEvent>();
  private readonly refused = new Set<string>();
  private mode: Mode = 'month';
  private cursor = startOfDay(new Date());
  private renderQueued = false;
  private readonly loading = new Set<string>();
  private readonly changedAgain = new Set<string>();

  constructor(
    db: Database,
    private readonly sync: SyncHandle,
  ) {
    this.store = new EventStore(db);
  }

  async start(): Promise<void> {
    for (const e of await this.store.all()) this.events.set(e.id, e);
    this.store.subscribe((id) => void this.reload(id));
    this.sync.subscribe(() => this.renderStatus());
    this.sync.onRefused(({ docs }) => {
      for (const d of docs) if (d.collection === 'events') this.refused.add(d.id);
      const first = docs[0];
      if (first !== undefined) {
        const title = this.events.get(first.id)?.event.title ?? first.id;
        this.showError(`The server refused your change to “${title}”: ${first.message}`, 'refusal');
      }
      this.queueRender();
    });
    element('prev').addEventListener('click', () => this.step(-1));
    element('next').addEventListener('click', () => this.step(1));
    element('today').addEventListener('click', () => this.go(this.mode, startOfDay(new Date())));
    element('month-view').addEventListener('click', () => this.go('month', this.cursor));
    element('day-view').addEventListener('click', () => this.go('day', this.cursor));
    element('new-event').addEventListener('click', () => void this.create(this.cursor));
    element('sync-error').addEventListener('click', (ev) => {
      const box = ev.currentTarget as HTMLElement;
      box.hidden = true;
      box.dataset['kind'] = '';
    });
    this.render();
  }

  /** A changed event is read again (a delete removes it; a remote change may bring a conflict). */
  private async reload(id: string): Promise<void> {
    // A change heard during a read is read again after it, so the last read is never stale.
    if (this.loading.has(id)) {
      this.changedAgain.add(id);
      return;
    }
    this.loading.add(id);
    try {
      do {
        this.changedAgain.delete(id);
        const stored = await this.store.get(id);
        if (stored === null) this.events.delete(id);
        else this.events.set(id, stored);
      } while (this.changedAgain.has(id));
    } finally {
      this.loading.delete(id);
    }
    this.queueRender();
  }

  private step(n: number): void {
    this.go(this.mode, this.mode === 'month' ? addMonths(this.cursor, n) : addDays(this.cursor, n));
  }

  private go(mode: Mode, cursor: Date): void {
    this.mode = mode;
    this.cursor = startOfDay(cursor);
    this.render();
  }

  /** Many changes in one turn (a sync batch) become one render. */
  private queueRender(): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    queueMicrotask(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  private render(): void {
    const model: CalendarModel = {
      mode: this.mode,
      cursor: this.cursor,
      events: [...this.events.values()],
      refused: this.refused,
    };
    element('month-view').ariaPressed = String(this.mode === 'month');
    element('day-view').ariaPressed = String(this.mode === 'day');
    renderCalendar(element('calendar'), element('period'), model, {
      open: (id) => void this.open(id),
      create: (day) => void this.create(day),
      showDay: (day) => this.go('day', day),
    });
    const conflicts = model.events.filter((e) => e.versions.length > 1).length;
    const banner = element('conflicts');
    banner.hidden = conflicts === 0;
    banner.textContent = `${conflicts} event${conflicts === 1 ? '' : 's'} changed on two devices at once: open the ⚠ ones to choose.`;
    this.renderStatus();
  }

  private renderStatus(): void {
    const box = element('sync-status');
    box.className = `status ${this.sync.status}`;
    box.textContent = statusText(this.sync);
    const error = this.sync.lastError;
    const errorBox = element('sync-error');
    if (errorBox.dataset['kind'] === 'refusal') return;
    if (error !== null && this.sync.status !== 'online' && this.sync.status !== 'syncing') {
      this.showError(`Last sync error: ${error.message}`, 'sync');
    } else if (errorBox.dataset['kind'] === 'sync') {
      errorBox.hidden = true;
      errorBox.dataset['kind'] = '';
    }
  }

  private showError(message: string, kind: 'sync' | 'refusal' | 'write'): void {
    const box = element('sync-error');
    box.textContent = message;
    box.dataset['kind'] = kind;
    box.hidden = false;
  }

  private async create(day: Date): Promise<void> {
    const start = new Date(day);
    // A day picked in the month view starts at local midnight: suggest the morning instead.
    if (start.getHours() === 0) start.setHours(9);
    const end = new Date(start.getTime() + 60 * 60 * 1000);
    const result = await editEvent(element('event-dialog'), {
      heading: 'New event',
      event: { title: '', start: start.toISOString(), end: end.toISOString() },
      canDelete: false,
    });
    if (result?.action !== 'save') return;
    await this.write(() => this.store.create(result.event));
  }

  private async open(id: string): Promise<void> {
    const stored = await this.store.get(id);
    if (stored === null) return;
    if (stored.versions.length > 1) return this.resolve(stored);
    const result = await editEvent(element('event-dialog'), {
      heading: 'Edit event',
      event: stored.event,
      canDelete: true,
    });
    if (result === null) return;
    await this.write(() =>
      result.action === 'delete'
        ? this.store.remove(id, stored.version)
        : this.store.save(id, result.event, stored.version),
    );
  }

  /**
   * Every version side by side; the one kept (or the merge edited from all of them) is written
   * with the version read, so it replaces every sibling, here and wherever it replicates.
   */
  private async resolve(stored: StoredEvent): Promise<void> {
    const choice = await chooseVersion(element('conflict-dialog'), stored);
    if (choice === null) return;
    let event: CalendarEvent | null;
    if (choice.action === 'pick') {
      event = choice.version.event;
      if (event === null && !choice.version.deleted) return;
    } else {
      const edited = await editEvent(element('event-dialog'), {
        heading: 'Merge the versions',
        event: choice.event,
        canDelete: false,
      });
      if (edited?.action !== 'save') return;
      event = edited.event;
    }
    const chosen = event;
    await this.write(() =>
      chosen === null
        ? this.store.remove(stored.id, stored.version)
        : this.store.save(stored.id, chosen, stored.version),
    );
  }

  private async write(run: () => Promise<unknown>): Promise<void> {
    try {
      await run();
    } catch (e) {
      this.showError(
        isStale(e)
          ? 'This event changed while you were editing it: open it again to see the latest.'
          : `The change was not saved: ${e instanceof Error ? e.message : String(e)}`,
        'write',
      );
    }
  }

  readonly hook: CalendarTestHook = {
    status: () => statusText(this.sync),
    pending: () => this.sync.pending,
    events: () =>
      [...this.events.values()].map((e) => ({
        id: e.id,
        title: e.event.title,
        start: e.event.start,
        end: e.event.end,
        notes: e.event.notes ?? null,
        versions: e.versions.length,
      })),
  };
}

async function start(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const leader = leaderOf(params);
  const token = params.get('token');
  element('leader').textContent = `Syncing with ${leader}; the events live in this browser (IndexedDB) too.`;
  const cluster = await clusterOf(params);
  const db = await openReplica({ storage: 'indexeddb:calendar' });
  // The token rides in the url (a browser WebSocket cannot set headers): use https in production.
  const sync = db.sync(leader, { cluster, ...(token === null || token === '' ? {} : { token }) });
  const app = new CalendarApp(db, sync);
  await app.start();
  window.polyarchCalendar = app.hook;
}

start().catch((e: unknown) => {
  const box = element('sync-error');
  box.textContent = `The calendar could not start: ${e instanceof Error ? e.message : String(e)}`;
  box.hidden = false;
});
