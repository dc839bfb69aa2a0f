/**
 * The simulator in CI: a seed replays bit for bit; the workload writes records under every
 * policy and map, counter and set documents; a few hundred seeds of varied sizes,
 * topologies and fault mixes keep G1-G5; each deliberate bug of the mutant catalog is caught;
 * and every seed of test/regressions/sim-seeds.json replays clean. A failure prints the
 * violation, its minimal trace and the `npm run sim -- --seed N ...` line that replays it.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MUTANTS, huntMutant } from './mutant-catalog.js';
import { formatViolation } from './report.js';
import { isFaultKind, runSimulation } from './simulator.js';
import type { SimOptions, SimResult } from './simulator.js';
import { isTopology } from './topology.js';
import { COLLECTIONS, WORKLOAD_MIXES } from './workload.js';

/** Runs `seeds` with `options`; returns the reports of those that failed (traces re-run only for them). */
async function failuresOf(seeds: readonly number[], options: Omit<SimOptions, 'seed'>): Promise<string[]> {
  const failures: string[] = [];
  for (const seed of seeds) {
    const quick = await runSimulation({ ...options, seed }, { keepTrace: false });
    if (quick.violations.length === 0) continue;
    const full = await runSimulation({ ...options, seed });
    failures.push(report(full));
  }
  return failures;
}

function report(r: SimResult): string {
  const first = r.violations[0];
  return first === undefined ? `seed ${r.options.seed}: passed` : formatViolation(r, first, { traceLines: 25 });
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

function expectClean(failures: string[], of: number): void {
  expect(
    failures.length,
    `${failures.length} of ${of} seeds failed; the first:\n${failures.slice(0, 2).join('\n\n')}`,
  ).toBe(0);
}

// Runs of many seeds take a minute or two on a 2-core machine: longer than the default timeout.
describe('the deterministic simulator', { timeout: 240_000 }, () => {
  it('replays a seed bit for bit: same trace fingerprint, same digests, same counts', async () => {
    for (const seed of [7, 4242]) {
      const a = await runSimulation({ seed, ops: 80 });
      const b = await runSimulation({ seed, ops: 80 });
      expect(b.traceHash).toBe(a.traceHash);
      expect(b.digests).toEqual(a.digests);
      expect(b.stats).toEqual(a.stats);
      expect(b.trace.map((e) => `${e.atMs} ${e.text}`)).toEqual(a.trace.map((e) => `${e.atMs} ${e.text}`));
      // Keeping the trace or not does not change the run.
      const c = await runSimulation({ seed, ops: 80 }, { keepTrace: false });
      expect(c.traceHash).toBe(a.traceHash);
    }
    const other = await runSimulation({ seed: 8, ops: 80 }, { keepTrace: false });
    const seven = await runSimulation({ seed: 7, ops: 80 }, { keepTrace: false });
    expect(other.traceHash).not.toBe(seven.traceHash);
  });

  it('writes every kind of document under every policy, and replicas write merges back', async () => {
    const byCollection: Record<string, number> = {};
    let writeBacks = 0;
    let textEdits = 0;
    const features: Record<string, number> = {};
    for (const seed of [11, 12, 13]) {
      const r = await runSimulation({ seed, ops: 150, keys: 2 }, { keepTrace: false });
      expect(r.violations, report(r)).toEqual([]);
      textEdits += r.stats.textEdits;
      for (const [k, n] of Object.entries(r.stats.features)) features[k] = (features[k] ?? 0) + n;
      for (const [c, n] of Object.entries(r.stats.writesByCollection)) byCollection[c] = (byCollection[c] ?? 0) + n;
      writeBacks += r.stats.writeBacks;
    }
    for (const c of COLLECTIONS) expect(byCollection[c.name] ?? 0, `writes to ${c.name}`).toBeGreaterThan(10);
    expect(writeBacks).toBeGreaterThan(0);
    expect(textEdits, 'text edits').toBeGreaterThan(10);
    // The default workload exercises every feature of features.ts, including their hard cases:
    // a leader out of numbers, writes refused locally, violations flagged after a heal, retries.
    for (const k of [
      'sequences: numbers',
      'sequences: exhausted',
      'sequences: ids',
      'constraints: local refusals',
      'constraints: flagged after the heal',
      'triggers: origin keys',
      'triggers: every-replica keys',
      'triggers: handler failures',
    ]) {
      expect(features[k] ?? 0, k).toBeGreaterThan(0);
    }
    expect(features['triggers: origin keys']).toBe(features['triggers: local writes']);
    // The records-only workload is the simulator as it was before map, counter and set documents.
    const records = await runSimulation({ seed: 11, ops: 150, keys: 2, workload: 'records' }, { keepTrace: false });
    expect(records.stats.kindWrites + records.stats.writeBacks).toBe(0);
    expect(Object.keys(records.stats.writesByCollection).sort()).toEqual(['docs', 'notes', 'presence']);
  });

  it('keeps G1-G5 over 60 seeds of three replicas under every kind of fault', async () => {
    expectClean(await failuresOf(range(1, 60), { replicas: 3, ops: 150 }), 60);
  });

  it('keeps G1-G5 over 60 seeds of 3-7 replicas in every topology with crashes, partitions and cuts', async () => {
    expectClean(await failuresOf(range(1001, 60), { ops: 150, faults: ['crash', 'partition', 'cut'] }), 60);
  });

  it('keeps G1-G5 over 50 seeds with skewed and jumping clocks', async () => {
    expectClean(await failuresOf(range(2001, 50), { ops: 120, faults: ['skew', 'clockjump', 'cut'] }), 50);
  });

  it('keeps G1-G5 over 60 seeds whose shape and length come from the seed', async () => {
    expectClean(await failuresOf(range(5001, 60), {}), 60);
  });

  it('keeps G1-G5 over 20 seeds of long runs on two hot documents with every fault', async () => {
    expectClean(await failuresOf(range(3001, 20), { ops: 300, keys: 2 }), 20);
  });

  it('keeps G1-G5 over 20 seeds of long runs without faults', async () => {
    expectClean(await failuresOf(range(4001, 20), { ops: 200, faults: [] }), 20);
  });

  for (const mutant of MUTANTS) {
    it(`catches mutant ${mutant.spec.name}: ${mutant.description}`, async () => {
      const hunt = await huntMutant(mutant, range(1, 25), { ops: 60 });
      expect(hunt.detected, `not detected in ${hunt.runs} runs (confounded seeds: ${hunt.confounded.join(',')})`).toBe(
        true,
      );
    });
  }

  interface RegressionSeed {
    seed: number;
    options: Omit<SimOptions, 'seed'>;
    note: string;
  }
  const file = new URL('../../test/regressions/sim-seeds.json', import.meta.url);
  const regressions = JSON.parse(readFileSync(file, 'utf8')) as RegressionSeed[];

  it('has well-formed regression seeds', () => {
    expect(regressions.length).toBeGreaterThan(0);
    for (const r of regressions) {
      expect(Number.isSafeInteger(r.seed)).toBe(true);
      expect(typeof r.note).toBe('string');
      for (const f of r.options.faults ?? []) expect(isFaultKind(f)).toBe(true);
      if (r.options.topology !== undefined) expect(isTopology(r.options.topology)).toBe(true);
      if (r.options.workload !== undefined) expect(WORKLOAD_MIXES).toContain(r.options.workload);
    }
  });

  for (const r of regressions) {
    it(`replays regression seed ${r.seed} clean (${r.note.slice(0, 60)})`, async () => {
      const result = await runSimulation({ ...r.options, seed: r.seed });
      expect(result.violations.length, report(result)).toBe(0);
    });
  }
});
