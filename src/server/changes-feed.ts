/**
 * The live forms of GET /changes and GET /conflicts: longpoll and server-sent events. Both
 * are driven by db.subscribe, never by polling: they subscribe before their first read, so a
 * change committed between that read and the subscription still wakes them.
 */
import type { FastifyBaseLogger, FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { Database, FeedEntry } from '../client/index.js';

export interface ChangesPage<T extends { seq: number } = FeedEntry> {
  results: T[];
  last_seq: number;
}

/** What a live form reads: a page of entries after a seq, and the events that wake it. */
export interface FeedSource<T extends { seq: number }> {
  read(since: number, limit: number | undefined): Promise<ChangesPage<T>>;
  subscribe(listener: (e: { seq: number }) => void): () => void;
}

/** The changes feed as a source. */
export function changesSource(db: Database): FeedSource<FeedEntry> {
  return { read: (since, limit) => read(db, since, limit), subscribe: (l) => db.subscribe(l) };
}

/** The live feeds in flight, so a closing server ends them rather than waiting out their timeouts. */
export class LiveFeeds {
  private readonly stops = new Set<() => void>();

  /** Tracks a feed; returns the function that forgets it. */
  add(stop: () => void): () => void {
    this.stops.add(stop);
    return () => this.stops.delete(stop);
  }

  stopAll(): void {
    for (const stop of [...this.stops]) stop();
  }
}

function read(db: Database, since: number, limit: number | undefined): Promise<ChangesPage> {
  return db.changes(limit === undefined ? { since } : { since, limit });
}

/**
 * Answers as soon as the feed has an entry after `since`, or after `timeoutMs` (or an abort)
 * with whatever is there then, usually nothing: `{ results: [], last_seq: since }`. A read that
 * comes back empty though the feed moved (a token's filter left everything out) waits on from
 * its `last_seq`.
 */
export async function longpoll<T extends { seq: number } = FeedEntry>(
  db: Database,
  options: { since: number; limit?: number; timeoutMs: number; signal?: AbortSignal; source?: FeedSource<T> },
): Promise<ChangesPage<T>> {
  const { limit, signal } = options;
  const source = options.source ?? (changesSource(db) as unknown as FeedSource<T>);
  let cursor = options.since;
  let over = false;
  // Set by a change after the cursor, so one committed between a read and the wait still wakes it.
  let dirty = false;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const end = (): void => {
    over = true;
    poke();
  };
  const unsubscribe = source.subscribe((e) => {
    if (e.seq > cursor) {
      dirty = true;
      poke();
    }
  });
  const timer = setTimeout(end, options.timeoutMs);
  signal?.addEventListener('abort', end, { once: true });
  if (signal?.aborted === true) over = true;
  try {
    let page = await source.read(cursor, limit);
    while (page.results.length === 0 && !over) {
      cursor = Math.max(cursor, page.last_seq);
      if (!dirty) await new Promise<void>((resolve) => (wake = resolve));
      dirty = false;
      // Woken by a change, the timeout or an abort alike: read again, as a change may have
      // committed just as the timer fired.
      page = await source.read(cursor, limit);
    }
    return page;
  } finally {
    unsubscribe();
    clearTimeout(timer);
    signal?.removeEventListener('abort', end);
  }
}

export interface StreamOptions {
  since: number;
  /** What to stream; the changes feed by default. */
  source?: FeedSource<{ seq: number }>;
  /** Entries read from the feed at a time. */
  pageSize: number;
  heartbeatMs: number;
  feeds: LiveFeeds;
  log: FastifyBaseLogger;
}

/** Resolves when `res` can take more, or has closed. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/**
 * Streams the feed as server-sent events (`id: <seq>` and `data: <entry JSON>`): the entries
 * after `since`, then each new one as it commits, with a `: heartbeat` comment every
 * `heartbeatMs`, until the client disconnects or the server closes. Takes the reply over.
 */
export function streamChanges(db: Database, reply: FastifyReply, options: StreamOptions): void {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    // Proxies that buffer (nginx) would hold events back.
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();

  let cursor = options.since;
  let open = true;
  // Whether the feed may hold entries after `cursor` that were not sent yet.
  let dirty = true;
  let wake: (() => void) | undefined;
  const poke = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  const source = options.source ?? changesSource(db);
  const unsubscribe = source.subscribe((e) => {
    if (e.seq > cursor) {
      dirty = true;
      poke();
    }
  });
  const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), options.heartbeatMs);
  const stop = (): void => {
    if (!open) return;
    open = false;
    unsubscribe();
    clearInterval(heartbeat);
    untrack();
    poke();
    if (!res.writableEnded && !res.destroyed) res.end();
  };
  const untrack = options.feeds.add(stop);
  res.on('close', stop);
  res.on('error', stop);

  const pump = async (): Promise<void> => {
    while (open) {
      if (!dirty) {
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      dirty = false;
      const page = await source.read(cursor, options.pageSize);
      for (const entry of page.results) {
        if (!open) return;
        if (!res.write(`id: ${entry.seq}\ndata: ${JSON.stringify(entry)}\n\n`)) await drained(res);
      }
      cursor = page.last_seq;
      // A full page may not have reached the head; an empty read settles it.
      if (page.results.length > 0) dirty = true;
    }
  };
  pump()
    .catch((err: unknown) => options.log.warn({ err }, 'changes stream ended by an error'))
    .finally(stop);
}
