/**
 * Prometheus metrics for one leader: counters the server and replication bump as things
 * happen, and gauges read from their source at scrape time (no timers, no stale copies).
 * Uses its own registry, never prom-client's global one, so several servers fit in a process.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** Where the gauges read from at scrape time. */
export interface MetricsSource {
  status(): { docs: number; conflicts: number };
  peers(): { id: string; lag: { changes: number; ms: number } }[];
  sessions(): number;
  /** Merge resolutions this leader wrote back since it started. */
  mergeWriteBacks?(): number;
  /** Presence publishers this leader holds a live state of, in any room. */
  presencePublishers?(): number;
  /** The triggers this leader's store declares, with their counts (TriggerStatus). */
  triggers?(): readonly { name: string; pending: number; delivered: number; failures: number }[];
}

export interface Metrics {
  registry: Registry;
  /** Documents written through the HTTP API (a batch counts each document). */
  writes: Counter;
  /** Changes this leader sent to peers. */
  changesSent: Counter;
  /** Changes this leader received from peers. */
  changesReceived: Counter;
  feedRowsRead: Counter;
}

export function createMetrics(source: MetricsSource): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const scalar = (name: string, help: string, read: () => number): void => {
    new Gauge({
      name,
      help,
      registers,
      collect(this: Gauge) {
        this.set(read());
      },
    });
  };
  scalar('polyarch_docs', 'Live documents held by this leader.', () => source.status().docs);
  scalar('polyarch_conflicts', 'Documents holding concurrent writes (more than one sibling).', () => {
    return source.status().conflicts;
  });
  scalar('polyarch_sessions', 'Open replication sessions.', () => source.sessions());
  scalar(
    'polyarch_merge_write_backs',
    'Merge-function resolutions this leader wrote back since it started.',
    () => source.mergeWriteBacks?.() ?? 0,
  );
  scalar(
    'polyarch_presence_publishers',
    'Presence publishers (connected clients in rooms) this leader holds a live state of.',
    () => source.presencePublishers?.() ?? 0,
  );

  const perPeer = (name: string, help: string, read: (lag: { changes: number; ms: number }) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['peer'],
      registers,
      collect(this: Gauge<'peer'>) {
        // Peers come and go: drop the series of a peer that is gone.
        this.reset();
        for (const p of source.peers()) this.set({ peer: p.id }, read(p.lag));
      },
    });
  };
  perPeer('polyarch_peer_lag_changes', "This leader's changes a peer has not acknowledged.", (lag) => lag.changes);
  perPeer(
    'polyarch_peer_lag_seconds',
    'How long the oldest change a peer has not acknowledged has waited.',
    (lag) => lag.ms / 1000,
  );

  // Per trigger, from the core's status at scrape time; a dropped trigger's series goes away.
  const triggers = (): readonly { name: string; pending: number; delivered: number; failures: number }[] =>
    source.triggers?.() ?? [];
  new Gauge({
    name: 'polyarch_trigger_pending',
    help: 'Trigger events waiting for delivery, by trigger.',
    labelNames: ['trigger'],
    registers,
    collect(this: Gauge<'trigger'>) {
      this.reset();
      for (const t of triggers()) this.set({ trigger: t.name }, t.pending);
    },
  });
  const triggerTotal = (name: string, help: string, read: (t: { delivered: number; failures: number }) => number) => {
    new Counter({
      name,
      help,
      labelNames: ['trigger'],
      registers,
      collect(this: Counter<'trigger'>) {
        this.reset();
        for (const t of triggers()) this.inc({ trigger: t.name }, read(t));
      },
    });
  };
  triggerTotal('polyarch_trigger_deliveries_total', 'Trigger events acknowledged, by trigger.', (t) => t.delivered);
  triggerTotal(
    'polyarch_trigger_failures_total',
    'Failed trigger delivery attempts (each is retried), by trigger.',
    (t) => t.failures,
  );

  return {
    registry,
    writes: new Counter({ name: 'polyarch_writes_total', help: 'Documents written through the HTTP API.', registers }),
    changesSent: new Counter({
      name: 'polyarch_changes_sent_total',
      help: 'Changes sent to peers.',
      registers,
    }),
    changesReceived: new Counter({
      name: 'polyarch_changes_received_total',
      help: 'Changes received from peers.',
      registers,
    }),
    feedRowsRead: new Counter({
      name: 'polyarch_feed_rows_read_total',
      help: 'Feed entries read to serve peers (before skipping what they hold): what catch-up costs.',
      registers,
    }),
  };
}
