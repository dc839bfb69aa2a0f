/**
 * Rendering of results: a violation with its seed, its replay command and a minimal trace of
 * what led to it (the events touching the documents and replicas involved), and the summary
 * table of many runs. Pure string building: printing is the entry points' business.
 */
import type { Violation } from './checker.js';
import type { FaultKind, ResolvedOptions, SimResult } from './simulator.js';
import { FAULT_KINDS, START_MS, replayCommand } from './simulator.js';
import { formatTime } from './trace.js';
import type { TraceEntry } from './trace.js';

/** The trace lines that touch the violation's documents (or, with none, its replicas), up to it. */
export function minimalTrace(result: SimResult, v: Violation, maxLines = 60): TraceEntry[] {
  const keys = new Set(v.keys);
  const replicas = new Set(v.replicas);
  const since = v.sinceMs ?? -Infinity;
  const relevant = result.trace.filter((e, i) => {
    if (i === 0) return true; // the run's header: its shape
    if (e.atMs > v.atMs || e.atMs < since) return false;
    if (e.text.startsWith('VIOLATION')) return false;
    if (keys.size > 0) {
      if (e.keys !== undefined) return e.keys.some((k) => keys.has(k));
      // Faults and lifecycle events of the replicas involved explain gaps in delivery.
      return !e.noise && (e.replicas === undefined || e.replicas.some((r) => replicas.has(r)));
    }
    if (e.noise) return false;
    return e.replicas === undefined || e.replicas.some((r) => replicas.has(r));
  });
  return relevant.length <= maxLines ? relevant : [relevant[0] as TraceEntry, ...relevant.slice(-(maxLines - 1))];
}

export function formatViolation(result: SimResult, v: Violation, options: { traceLines?: number } = {}): string {
  const lines: string[] = [];
  lines.push(`VIOLATION ${v.invariant} (seed ${result.options.seed}) at ${formatTime(v.atMs, START_MS)}`);
  lines.push(`  ${v.message}`);
  lines.push(`  replay: ${replayCommand(result.options)}`);
  const trace = minimalTrace(result, v, options.traceLines ?? 60);
  if (trace.length > 0) {
    const about = v.keys.length > 0 ? v.keys.join(', ') : v.replicas.map((r) => result.replicaIds[r]).join(', ');
    lines.push(`  trace (events touching ${about || 'the cluster'}):`);
    for (const e of trace) lines.push(`    ${formatTime(e.atMs, START_MS).padStart(9)} ${e.text}`);
  }
  return lines.join('\n');
}

/** Totals over many runs, for the summary table. */
export interface Totals {
  seeds: number;
  failed: number;
  ops: number;
  writes: number;
  kindWrites: number;
  textEdits: number;
  writeBacks: number;
  reads: number;
  batches: number;
  expectedErrors: number;
  deliveries: number;
  crashes: number;
  faults: Record<FaultKind, number>;
  virtualMs: number;
  violations: Record<string, number>;
  /** The features' counts, summed over seeds. */
  features: Record<string, number>;
  wallMs: number;
}

export function emptyTotals(): Totals {
  return {
    seeds: 0,
    failed: 0,
    ops: 0,
    writes: 0,
    kindWrites: 0,
    textEdits: 0,
    writeBacks: 0,
    reads: 0,
    batches: 0,
    expectedErrors: 0,
    deliveries: 0,
    crashes: 0,
    faults: { crash: 0, partition: 0, cut: 0, skew: 0, clockjump: 0 },
    virtualMs: 0,
    violations: {},
    features: {},
    wallMs: 0,
  };
}

export function addResult(t: Totals, r: SimResult): void {
  t.seeds++;
  if (r.violations.length > 0) t.failed++;
  t.ops += r.stats.ops;
  t.writes += r.stats.writes;
  t.kindWrites += r.stats.kindWrites;
  t.textEdits += r.stats.textEdits;
  t.writeBacks += r.stats.writeBacks;
  t.reads += r.stats.reads;
  t.batches += r.stats.batches;
  t.deliveries += r.stats.deliveries;
  t.crashes += r.stats.crashes;
  t.virtualMs += r.stats.virtualMs;
  for (const n of Object.values(r.stats.expectedErrors)) t.expectedErrors += n;
  for (const k of FAULT_KINDS) t.faults[k] += r.stats.faults[k];
  for (const [k, v] of Object.entries(r.stats.features)) t.features[k] = (t.features[k] ?? 0) + v;
  for (const inv of new Set(r.violations.map((v) => v.invariant))) t.violations[inv] = (t.violations[inv] ?? 0) + 1;
}

export function formatTotals(t: Totals): string {
  const rows: [string, string][] = [
    ['seeds run', `${t.seeds}`],
    ['seeds failed', `${t.failed}`],
    ['client ops', `${t.ops}`],
    ['  writes acknowledged', `${t.writes}`],
    ['    to maps, counters, sets', `${t.kindWrites}`],
    ['    text edits', `${t.textEdits}`],
    ['  merge write-backs', `${t.writeBacks}`],
    ['  atomic batches', `${t.batches}`],
    ['  reads', `${t.reads}`],
    ['  expected refusals', `${t.expectedErrors}`],
    ...Object.entries(t.features).map(([k, v]): [string, string] => [k, `${v}`]),
    ...FAULT_KINDS.map((k): [string, string] => [`faults: ${k}`, `${t.faults[k]}`]),
    ['crashes (incl. mutant)', `${t.crashes}`],
    ['frames delivered', `${t.deliveries}`],
    ['virtual time', `${(t.virtualMs / 1000).toFixed(1)} s`],
    [
      'violations',
      Object.entries(t.violations)
        .map(([k, n]) => `${k}: ${n} seeds`)
        .join(', ') || 'none',
    ],
    ['wall time', `${(t.wallMs / 1000).toFixed(1)} s`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}

export function describeOptions(o: ResolvedOptions): string {
  return (
    `${o.replicas} replicas, ${o.topology}, ${o.ops} ops, ${o.keys} keys, faults ${o.faults.join(',') || 'none'}` +
    `${o.workload === 'full' ? '' : `, ${o.workload} workload`}`
  );
}
