/**
 * The simulator's randomness: one SeededRandom made from the run's seed, split into named
 * streams (network, faults, workload, ...) so that changing how often one of them is drawn
 * (fewer operations while shrinking) leaves the others' schedules intact.
 * Invariant: nothing in src/sim draws randomness from anywhere else.
 */
import { SeededRandom } from '../env/index.js';

export { SeededRandom };

/** The independent streams of one run, drawn from the root seed in a fixed order. */
export interface RandomStreams {
  /** Replica count, topology, link parameters, clock skews: the shape of the run. */
  readonly shape: SeededRandom;
  readonly network: SeededRandom;
  readonly faults: SeededRandom;
  readonly workload: SeededRandom;
  /** Handed to the replicas and sessions as env.random (challenges). */
  readonly env: SeededRandom;
  /** Mutant decisions (which apply to corrupt), apart so mutants leave the rest untouched. */
  readonly mutant: SeededRandom;
}

export function randomStreams(seed: number): RandomStreams {
  const root = new SeededRandom(seed);
  const fork = (): SeededRandom => new SeededRandom(root.nextU32());
  return {
    shape: fork(),
    network: fork(),
    faults: fork(),
    workload: fork(),
    env: fork(),
    mutant: fork(),
  };
}

/** True with probability `p`. */
export function chance(rng: SeededRandom, p: number): boolean {
  return rng.next() < p;
}

/** An integer in [lo, hi]. */
export function between(rng: SeededRandom, lo: number, hi: number): number {
  return lo + rng.int(hi - lo + 1);
}

/** A uniformly shuffled copy (Fisher-Yates). */
export function shuffled<T>(rng: SeededRandom, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const x = out[i] as T;
    out[i] = out[j] as T;
    out[j] = x;
  }
  return out;
}

/** Picks an item with probability proportional to its weight. */
export function weighted<T>(rng: SeededRandom, items: readonly (readonly [T, number])[]): T {
  let total = 0;
  for (const [, w] of items) total += w;
  let x = rng.next() * total;
  for (const [item, w] of items) {
    if (x < w) return item;
    x -= w;
  }
  const last = items[items.length - 1];
  if (last === undefined) throw new Error('weighted pick from an empty list');
  return last[0];
}
