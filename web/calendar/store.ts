/**
 * The calendar's data: one record document per event in collection `events`, value
 * `{ title, start, end, notes? }` (start and end are ISO instants, shown in local time).
 * Every write that changes what the user saw carries the version read, so a change that
 * arrived meanwhile fails loudly (ConflictError) here and becomes a visible conflict elsewhere,
 * never a silent overwrite. No DOM here: the view renders what this module returns.
 */
import { ConflictError } from '../../src/client/index.js';
import type { ChangeEvent, Collection, Database } from '../../src/client/index.js';

/** A type, not an interface, so that it is a JsonValue (interfaces have no index signature). */
export type CalendarEvent = {
  title: string;
  /** ISO 8601 instants (`new Date().toISOString()`): one meaning in every time zone. */
  start: string;
  end: string;
  notes?: string;
};

/** One sibling of an event in conflict: a value, or a delete made concurrently with an edit. */
export interface EventVersion {
  /** The version that replaces exactly this sibling (not used to resolve: see `resolve`). */
  version: string;
  /** null for a delete, or for a value that is not a calendar event. */
  event: CalendarEvent | null;
  deleted: boolean;
  /** The replica that wrote it, and when (its hybrid clock, ISO). */
  origin: string;
  time: string;
}

export interface StoredEvent {
  id: string;
  /** The winner: the same at every replica. */
  event: CalendarEvent;
  /** The whole document's version: writing with it replaces every sibling read here. */
  version: string;
  /** Every sibling, winner first; more than one means the event is in conflict. */
  versions: EventVersion[];
}

/** The event a JSON value holds, or null when it is not one (written by another tool, say). */
export function toEvent(value: unknown): CalendarEvent | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  const { title, start, end, notes } = v;
  if (typeof title !== 'string' || typeof start !== 'string' || typeof end !== 'string') return null;
  if (Number.isNaN(Date.parse(start)) || Number.isNaN(Date.parse(end))) return null;
  return { title, start, end, ...(typeof notes === 'string' && notes !== '' ? { notes } : {}) };
}

export class EventStore {
  private readonly events: Collection;

  constructor(private readonly db: Database) {
    this.events = db.collection('events');
  }

  /** Every event, read page by page; documents that are not events are left out. */
  async all(): Promise<StoredEvent[]> {
    const out: StoredEvent[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.events.list({ limit: 500, ...(after === undefined ? {} : { after }) });
      for (const doc of page.results) {
        const stored = toStored(doc);
        if (stored !== null) out.push(stored);
      }
      if (page.next === null) return out;
      after = page.next;
    }
  }

  /** One event as stored now, or null when absent, deleted or not an event. */
  async get(id: string): Promise<StoredEvent | null> {
    const doc = await this.events.get(id);
    return doc === null ? null : toStored(doc);
  }

  async create(event: CalendarEvent): Promise<string> {
    // Unique without asking anyone, so two offline devices never pick the same one; and
    // sortable by time, so the store lists events in the order they were created.
    const id = this.db.newId();
    await this.events.put(id, clean(event), { ifAbsent: true });
    return id;
  }

  /**
   * Writes `event` over the versions read as `version`: an edit, a move, or the resolution of
   * a conflict (it replaces every sibling read, so the conflict ends, here and where it
   * replicates). Fails with ConflictError if the event changed here since it was read.
   */
  save(id: string, event: CalendarEvent, version: string): Promise<unknown> {
    return this.events.put(id, clean(event), { version });
  }

  /** Deletes what was read as `version` (a delete concurrent with an edit elsewhere is a conflict, not a loss). */
  remove(id: string, version: string): Promise<unknown> {
    return this.events.delete(id, { version });
  }

  /** Calls `listener` with the id of each event changed, here or by replication. */
  subscribe(listener: (id: string, change: ChangeEvent) => void): () => void {
    return this.events.subscribe((change) => listener(change.id, change));
  }
}

/** True when `e` is the error of a write whose read is stale. */
export function isStale(e: unknown): boolean {
  return e instanceof ConflictError;
}

function clean(event: CalendarEvent): CalendarEvent {
  const notes = event.notes?.trim() ?? '';
  return {
    title: event.title.trim(),
    start: event.start,
    end: event.end,
    ...(notes === '' ? {} : { notes }),
  };
}

function toStored(doc: {
  id: string;
  value: unknown;
  version: string;
  origin: string;
  time: string;
  conflicts: readonly { value: unknown; deleted: boolean; version: string; origin: string; time: string }[];
}): StoredEvent | null {
  const event = toEvent(doc.value);
  if (event === null) return null;
  const versions: EventVersion[] = [
    { version: doc.version, event, deleted: false, origin: doc.origin, time: doc.time },
    ...doc.conflicts.map((c) => ({
      version: c.version,
      event: c.deleted ? null : toEvent(c.value),
      deleted: c.deleted,
      origin: c.origin,
      time: c.time,
    })),
  ];
  return { id: doc.id, event, version: doc.version, versions };
}
