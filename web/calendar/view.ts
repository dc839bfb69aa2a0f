/**
 * The calendar's DOM: the month grid, the day's hours, the event form and the conflict panel.
 * Plain DOM, re-rendered whole from what the store returns (a month holds few events); the
 * dialogs resolve a promise with what the user chose, and main.ts does the writing.
 */
import type { CalendarEvent, EventVersion, StoredEvent } from './store.js';

export type Mode = 'month' | 'day';

export interface CalendarModel {
  mode: Mode;
  /** The day shown (day view) or a day of the month shown, at local midnight. */
  cursor: Date;
  events: readonly StoredEvent[];
  /** Events a write of which the server refused. */
  refused: ReadonlySet<string>;
}

export interface CalendarActions {
  open(id: string): void;
  create(day: Date): void;
  showDay(day: Date): void;
}

type Child = Node | string | null | false;

/** A tiny element builder: `h('li', { className: 'x' }, 'text')`. */
function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]> & { dataset?: Record<string, string> } = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const { dataset, ...rest } = props;
  const el = Object.assign(document.createElement(tag), rest);
  if (dataset !== undefined) Object.assign(el.dataset, dataset);
  for (const c of children) if (c !== null && c !== false) el.append(c);
  return el;
}

// ---- dates: events hold ISO instants; the page shows and edits local time ----

const pad = (n: number): string => String(n).padStart(2, '0');

/** `YYYY-MM-DD` of a local day. */
export function dayKey(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

export function startOfDay(d: Date): Date {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate());
}

export function addDays(d: Date, n: number): Date {
  return new Date(d.getFullYear(), d.getMonth(), d.getDate() + n);
}

export function addMonths(d: Date, n: number): Date {
  return new Date(d.getFullYear(), d.getMonth() + n, 1);
}

/** `HH:MM` local. */
function clock(iso: string): string {
  const d = new Date(iso);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The ISO instant of a local date (`YYYY-MM-DD`) and time (`HH:MM`). */
function instant(date: string, time: string): string {
  return new Date(`${date}T${time}`).toISOString();
}

function byStart(a: StoredEvent, b: StoredEvent): number {
  return a.event.start.localeCompare(b.event.start) || a.id.localeCompare(b.id);
}

function eventsOn(day: Date, events: readonly StoredEvent[]): StoredEvent[] {
  const key = dayKey(day);
  return events.filter((e) => dayKey(new Date(e.event.start)) === key).sort(byStart);
}

// ---- the views ----

/** An event as a button: its time and title, flagged when in conflict or refused. */
function chip(e: StoredEvent, model: CalendarModel, actions: CalendarActions): HTMLButtonElement {
  const conflicted = e.versions.length > 1;
  const refused = model.refused.has(e.id);
  const button = h(
    'button',
    {
      type: 'button',
      className: `event${conflicted ? ' conflicted' : ''}${refused ? ' refused' : ''}`,
      title: conflicted
        ? `${e.versions.length} versions of this event: open it to choose or merge`
        : refused
          ? 'the server did not accept this change'
          : (e.event.notes ?? e.event.title),
      dataset: { id: e.id },
    },
    conflicted ? h('span', { className: 'flag', ariaLabel: 'in conflict' }, '⚠') : null,
    refused ? h('span', { className: 'flag', ariaLabel: 'refused by the server' }, '!') : null,
    h('span', { className: 'time' }, clock(e.event.start)),
    h('span', { className: 'title' }, e.event.title),
  );
  button.addEventListener('click', (ev) => {
    ev.stopPropagation();
    actions.open(e.id);
  });
  return button;
}

const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

/** Six weeks from the Monday on or before the 1st, so every month fits. */
function renderMonth(root: HTMLElement, model: CalendarModel, actions: CalendarActions): void {
  const first = new Date(model.cursor.getFullYear(), model.cursor.getMonth(), 1);
  const start = addDays(first, -((first.getDay() + 6) % 7));
  const today = dayKey(new Date());
  const cells: HTMLElement[] = WEEKDAYS.map((d) => h('div', { className: 'weekday' }, d));
  for (let i = 0; i < 42; i++) {
    const day = addDays(start, i);
    const dayButton = h(
      'button',
      { type: 'button', className: 'day-number', title: 'show this day' },
      `${day.getDate()}`,
    );
    dayButton.addEventListener('click', (ev) => {
      ev.stopPropagation();
      actions.showDay(day);
    });
    const cell = h(
      'div',
      {
        className: [
          'cell',
          day.getMonth() === first.getMonth() ? '' : 'other-month',
          dayKey(day) === today ? 'today' : '',
        ].join(' '),
        title: 'click to add an event',
        dataset: { day: dayKey(day) },
      },
      dayButton,
      ...eventsOn(day, model.events).map((e) => chip(e, model, actions)),
    );
    cell.addEventListener('click', () => actions.create(day));
    cells.push(cell);
  }
  root.replaceChildren(h('div', { className: 'month' }, ...cells));
}

/** The day's hours, each event in the row of the hour it starts. */
function renderDay(root: HTMLElement, model: CalendarModel, actions: CalendarActions): void {
  const events = eventsOn(model.cursor, model.events);
  const rows: HTMLElement[] = [];
  for (let hour = 0; hour < 24; hour++) {
    const at = events.filter((e) => new Date(e.event.start).getHours() === hour);
    const row = h(
      'div',
      { className: 'hour', dataset: { hour: String(hour) } },
      h('span', { className: 'label' }, `${pad(hour)}:00`),
      ...at.map((e) => {
        const c = chip(e, model, actions);
        c.append(h('span', { className: 'until' }, `until ${clock(e.event.end)}`));
        return c;
      }),
    );
    row.addEventListener('click', () => {
      const day = new Date(model.cursor);
      day.setHours(hour);
      actions.create(day);
    });
    rows.push(row);
  }
  root.replaceChildren(h('div', { className: 'day', dataset: { day: dayKey(model.cursor) } }, ...rows));
}

export function renderCalendar(
  root: HTMLElement,
  title: HTMLElement,
  model: CalendarModel,
  actions: CalendarActions,
): void {
  const c = model.cursor;
  title.textContent =
    model.mode === 'month'
      ? c.toLocaleDateString(undefined, { month: 'long', year: 'numeric' })
      : c.toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });
  if (model.mode === 'month') renderMonth(root, model, actions);
  else renderDay(root, model, actions);
}

// ---- the event form ----

export type FormResult = { action: 'save'; event: CalendarEvent } | { action: 'delete' } | null;

/**
 * Shows the event form in `dialog` (index.html's #event-dialog) and resolves with what the user
 * did: saved (the event as edited), deleted, or cancelled (null).
 */
export function editEvent(
  dialog: HTMLDialogElement,
  options: { heading: string; event: CalendarEvent; canDelete: boolean },
): Promise<FormResult> {
  const form = dialog.querySelector('form') as HTMLFormElement;
  const field = (name: string): HTMLInputElement => form.elements.namedItem(name) as HTMLInputElement;
  const { event } = options;
  (dialog.querySelector('h2') as HTMLElement).textContent = options.heading;
  field('title').value = event.title;
  field('date').value = dayKey(new Date(event.start));
  field('start').value = clock(event.start);
  field('end').value = clock(event.end);
  (form.elements.namedItem('notes') as HTMLTextAreaElement).value = event.notes ?? '';
  const error = dialog.querySelector('.form-error') as HTMLElement;
  error.hidden = true;
  const remove = form.querySelector('[value=delete]') as HTMLButtonElement;
  remove.hidden = !options.canDelete;

  return new Promise((resolve) => {
    const finish = (result: FormResult): void => {
      form.removeEventListener('submit', onSubmit);
      dialog.removeEventListener('close', onClose);
      if (dialog.open) dialog.close();
      resolve(result);
    };
    const onSubmit = (ev: SubmitEvent): void => {
      ev.preventDefault();
      const action = (ev.submitter as HTMLButtonElement | null)?.value ?? 'save';
      if (action === 'cancel') return finish(null);
      if (action === 'delete') return finish({ action: 'delete' });
      const date = field('date').value;
      const start = instant(date, field('start').value);
      const end = instant(date, field('end').value);
      if (field('title').value.trim() === '') return showFormError(error, 'An event needs a title.');
      if (end < start) return showFormError(error, 'The event ends before it starts.');
      const notes = (form.elements.namedItem('notes') as HTMLTextAreaElement).value;
      finish({
        action: 'save',
        event: { title: field('title').value, start, end, ...(notes === '' ? {} : { notes }) },
      });
    };
    const onClose = (): void => finish(null);
    form.addEventListener('submit', onSubmit);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
    field('title').focus();
  });
}

function showFormError(box: HTMLElement, message: string): void {
  box.textContent = message;
  box.hidden = false;
}

// ---- the conflict panel ----

export type ConflictChoice =
  | { action: 'pick'; version: EventVersion }
  | { action: 'merge'; event: CalendarEvent }
  | null;

/** Every version's titles and notes together, the winner's times: a starting point to edit. */
export function combined(versions: readonly EventVersion[]): CalendarEvent {
  const live = versions.flatMap((v) => (v.event === null ? [] : [v.event]));
  const first = live[0] as CalendarEvent;
  const distinct = (xs: (string | undefined)[]): string[] => [...new Set(xs.filter((x): x is string => !!x))];
  const notes = distinct(live.map((e) => e.notes)).join('\n');
  return {
    title: distinct(live.map((e) => e.title)).join(' / '),
    start: first.start,
    end: first.end,
    ...(notes === '' ? {} : { notes }),
  };
}

function versionCard(v: EventVersion, index: number, pick: () => void): HTMLElement {
  const e = v.event;
  const when = new Date(v.time).toLocaleString();
  const button = h('button', { type: 'button', className: 'pick' }, v.deleted ? 'Keep it deleted' : 'Keep this one');
  button.addEventListener('click', pick);
  return h(
    'article',
    { className: `version${v.deleted ? ' deleted' : ''}`, dataset: { index: String(index) } },
    h('h3', {}, v.deleted ? 'Deleted' : (e?.title ?? '(not an event)')),
    e === null
      ? null
      : h('p', { className: 'when' }, `${new Date(e.start).toLocaleDateString()} ${clock(e.start)}–${clock(e.end)}`),
    e?.notes === undefined ? null : h('p', { className: 'notes' }, e.notes),
    h('p', { className: 'origin' }, `written on ${v.origin}, ${when}`),
    button,
  );
}

/**
 * Shows every version of `stored` side by side in `dialog` (#conflict-dialog) and resolves with
 * the one the user keeps, a request to merge (the combined version, to edit), or null.
 */
export function chooseVersion(dialog: HTMLDialogElement, stored: StoredEvent): Promise<ConflictChoice> {
  return new Promise((resolve) => {
    const finish = (choice: ConflictChoice): void => {
      dialog.removeEventListener('close', onClose);
      if (dialog.open) dialog.close();
      resolve(choice);
    };
    const onClose = (): void => finish(null);
    const list = dialog.querySelector('.versions') as HTMLElement;
    list.replaceChildren(
      ...stored.versions.map((v, i) => versionCard(v, i, () => finish({ action: 'pick', version: v }))),
    );
    const merge = dialog.querySelector('.merge') as HTMLButtonElement;
    merge.onclick = () => finish({ action: 'merge', event: combined(stored.versions) });
    const cancel = dialog.querySelector('.cancel') as HTMLButtonElement;
    cancel.onclick = () => finish(null);
    dialog.addEventListener('close', onClose);
    dialog.showModal();
  });
}
