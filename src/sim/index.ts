/**
 * The deterministic simulator's public face: run a seed, check G1-G5, shrink a failure,
 * render reports, and the catalog of deliberate bugs it must catch. Nothing in the product
 * imports this folder (DESIGN.md section 3): it is for tests, the CLI and people.
 */
export { FAULT_KINDS, isFaultKind, replayCommand, resolveOptions, runSimulation } from './simulator.js';
export type {
  FaultKind,
  MutantContext,
  MutantSpec,
  ResolvedOptions,
  RunExtras,
  SimOptions,
  SimResult,
  SimStats,
} from './simulator.js';
export { Checker, History } from './checker.js';
export type { Invariant, Violation } from './checker.js';
export { MUTANTS, findMutant, huntMutant } from './mutant-catalog.js';
export type { HuntResult, MutantEntry } from './mutant-catalog.js';
export { shrink } from './shrink.js';
export { addResult, emptyTotals, formatTotals, formatViolation, minimalTrace } from './report.js';
export { TOPOLOGIES, isTopology } from './topology.js';
export type { Topology } from './topology.js';
