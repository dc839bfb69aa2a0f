/**
 * Shrinking a failing run: retries its seed with fewer client operations (the same seed with
 * fewer ops replays a prefix of the same schedule, then heals) and with fault kinds left
 * out, keeping the smallest configuration that still fails the same way. Smaller runs have
 * shorter traces, which is the point: the report of a shrunk run is readable.
 */
import type { Invariant } from './checker.js';
import { runSimulation } from './simulator.js';
import type { RunExtras, SimOptions, SimResult } from './simulator.js';

export interface ShrinkOutcome {
  readonly result: SimResult;
  readonly runs: number;
}

/** The smallest variant of `failing` found within `budget` runs that fails with the same invariant. */
export async function shrink(failing: SimResult, extras: RunExtras = {}, budget = 16): Promise<ShrinkOutcome> {
  const first = failing.violations[0];
  if (first === undefined) return { result: failing, runs: 0 };
  const target: Invariant = first.invariant;
  let best = failing;
  let runs = 0;
  const attempt = async (options: SimOptions): Promise<boolean> => {
    if (runs >= budget) return false;
    runs++;
    const r = await runSimulation(options, extras);
    if (!r.violations.some((v) => v.invariant === target)) return false;
    best = r;
    return true;
  };
  const base = (): SimOptions => {
    const o = best.options;
    const out: SimOptions = {
      seed: o.seed,
      replicas: o.replicas,
      ops: o.ops,
      faults: o.faults,
      topology: o.topology,
      keys: o.keys,
      workload: o.workload,
    };
    if (o.mutant !== undefined) out.mutant = o.mutant;
    return out;
  };
  // Fewest ops: a bisection (failure is not monotone in ops, so this finds a small one, not the least).
  let lo = 1;
  let hi = best.options.ops;
  while (lo < hi && runs < budget) {
    const mid = Math.floor((lo + hi) / 2);
    if (await attempt({ ...base(), ops: mid })) hi = mid;
    else lo = mid + 1;
  }
  // Fault kinds it does not need.
  for (const kind of [...best.options.faults]) {
    if (runs >= budget) break;
    await attempt({ ...base(), faults: best.options.faults.filter((k) => k !== kind) });
  }
  return { result: best, runs };
}
