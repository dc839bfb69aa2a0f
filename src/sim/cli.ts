/**
 * `npm run sim -- ...`: runs the deterministic simulator over many seeds and prints a summary
 * table; on a violation it prints the violation, a minimal trace and the exact command that
 * replays it, shrinks it, and exits non-zero. The only module of src/sim that touches Node
 * (arguments, real time for the wall-clock column, child processes for --jobs).
 *
 *   npm run sim -- --seeds 500                  500 seeds from a random start (printed)
 *   npm run sim -- --seed 42                    one seed, with its details
 *   npm run sim -- --seeds 100 --seed 1000      seeds 1000..1099
 *   options: --replicas R --ops K --faults crash,partition,cut,skew,clockjump|none
 *            --topology all-to-all|star|ring|line|random --keys K --mutant NAME
 *            --workload mixed|records (records only: as before map, counter and set documents)
 *            --jobs J (parallel processes) --no-shrink --trace (print the whole trace)
 */
import { fork } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { MUTANTS, findMutant } from './mutant-catalog.js';
import type { MutantEntry } from './mutant-catalog.js';
import { addResult, describeOptions, emptyTotals, formatTotals, formatViolation } from './report.js';
import type { Totals } from './report.js';
import { shrink } from './shrink.js';
import { FAULT_KINDS, START_MS, isFaultKind, replayCommand, runSimulation } from './simulator.js';
import type { FaultKind, SimOptions, SimResult } from './simulator.js';
import { TOPOLOGIES, isTopology } from './topology.js';
import { formatTime } from './trace.js';
import { WORKLOAD_MIXES } from './workload.js';
import type { WorkloadMix } from './workload.js';

function isWorkloadMix(name: string): name is WorkloadMix {
  return (WORKLOAD_MIXES as readonly string[]).includes(name);
}

interface CliOptions {
  start: number;
  count: number;
  base: Omit<SimOptions, 'seed'>;
  mutant: MutantEntry | undefined;
  shrink: boolean;
  trace: boolean;
  jobs: number;
  child: boolean;
}

class UsageError extends Error {}

function int(name: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`--${name} must be an integer in ${min}..${max}`);
  return n;
}

function parse(argv: string[]): CliOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      seeds: { type: 'string' },
      seed: { type: 'string' },
      replicas: { type: 'string' },
      ops: { type: 'string' },
      faults: { type: 'string' },
      topology: { type: 'string' },
      keys: { type: 'string' },
      mutant: { type: 'string' },
      workload: { type: 'string' },
      jobs: { type: 'string' },
      'no-shrink': { type: 'boolean' },
      trace: { type: 'boolean' },
      child: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help === true) {
    throw new UsageError('');
  }
  const base: Omit<SimOptions, 'seed'> = {};
  const replicas = int('replicas', values.replicas, 2, 12);
  if (replicas !== undefined) base.replicas = replicas;
  const ops = int('ops', values.ops, 0, 1_000_000);
  if (ops !== undefined) base.ops = ops;
  const keys = int('keys', values.keys, 1, 1000);
  if (keys !== undefined) base.keys = keys;
  if (values.faults !== undefined) {
    const list = values.faults === 'none' ? [] : values.faults === 'all' ? [...FAULT_KINDS] : values.faults.split(',');
    const bad = list.filter((k) => !isFaultKind(k));
    if (bad.length > 0) throw new UsageError(`unknown fault kind(s) ${bad.join(',')}: use ${FAULT_KINDS.join(',')}`);
    base.faults = list as FaultKind[];
  }
  if (values.topology !== undefined) {
    if (!isTopology(values.topology)) throw new UsageError(`--topology must be one of ${TOPOLOGIES.join(', ')}`);
    base.topology = values.topology;
  }
  if (values.workload !== undefined) {
    const w = values.workload;
    if (!isWorkloadMix(w)) throw new UsageError(`--workload must be one of ${WORKLOAD_MIXES.join(', ')}`);
    base.workload = w;
  }
  let mutant: MutantEntry | undefined;
  if (values.mutant !== undefined) {
    mutant = findMutant(values.mutant);
    if (mutant === undefined) {
      throw new UsageError(`unknown mutant ${values.mutant}: use ${MUTANTS.map((m) => m.spec.name).join(', ')}`);
    }
    base.mutant = values.mutant;
  }
  const count = int('seeds', values.seeds, 1, 100_000_000) ?? 1;
  const start = int('seed', values.seed, 0, 2 ** 32 - 1) ?? randomInt(1, 2 ** 31);
  return {
    start,
    count,
    base,
    mutant,
    shrink: values['no-shrink'] !== true,
    trace: values.trace === true,
    jobs: int('jobs', values.jobs, 1, 64) ?? 1,
    child: values.child === true,
  };
}

function runOne(o: CliOptions, seed: number, keepTrace: boolean): Promise<SimResult> {
  return runSimulation(
    { ...o.base, seed },
    { ...(o.mutant === undefined ? {} : { mutant: o.mutant.spec }), keepTrace },
  );
}

/** The report of one failing seed: the violation, its trace, and the shrunk replay. */
async function describeFailure(o: CliOptions, failed: SimResult): Promise<string> {
  const extras = { ...(o.mutant === undefined ? {} : { mutant: o.mutant.spec }), keepTrace: true };
  // Re-run with the trace kept (runs are deterministic: this is the same run).
  const full = await runSimulation({ ...o.base, seed: failed.options.seed }, extras);
  const out: string[] = [];
  const first = full.violations[0];
  if (first === undefined) return `seed ${failed.options.seed}: failed once, passed on replay: NONDETERMINISM`;
  out.push(formatViolation(full, first));
  const others = full.violations.slice(1, 6).map((v) => `    ${v.invariant}: ${v.message.slice(0, 300)}`);
  if (others.length > 0) out.push(`  and ${full.violations.length - 1} more, among them:\n${others.join('\n')}`);
  if (o.shrink) {
    const { result, runs } = await shrink(full, extras);
    if (result !== full) {
      const v = result.violations.find((x) => x.invariant === first.invariant) ?? result.violations[0];
      out.push(`  shrunk in ${runs} runs to ${describeOptions(result.options)}:`);
      if (v !== undefined) out.push(formatViolation(result, v).replace(/^/gm, '  '));
    } else out.push(`  (no smaller failing run found in ${runs} tries)`);
  }
  return out.join('\n');
}

interface ChildReport {
  totals: Totals;
  failures: string[];
}

async function runRange(
  o: CliOptions,
  start: number,
  count: number,
  log: (line: string) => void,
): Promise<ChildReport> {
  const totals = emptyTotals();
  const failures: string[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const seed = (start + i) >>> 0;
    let result: SimResult;
    try {
      result = await runOne(o, seed, false);
    } catch (e) {
      totals.seeds++;
      totals.failed++;
      totals.violations.exception = (totals.violations.exception ?? 0) + 1;
      const text = `SIMULATOR EXCEPTION (seed ${seed}): ${(e as Error).stack ?? String(e)}\n  replay: npm run sim -- --seed ${seed}`;
      failures.push(text);
      log(text);
      continue;
    }
    addResult(totals, result);
    if (result.violations.length > 0) {
      const text = await describeFailure(o, result);
      failures.push(text);
      log(text);
    }
    if (!o.child && count > 1 && (i + 1) % 100 === 0) {
      log(`  ... ${i + 1}/${count} seeds, ${totals.failed} failed, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
  }
  totals.wallMs = performance.now() - t0;
  return { totals, failures };
}

function mergeTotals(into: Totals, t: Totals): void {
  for (const k of [
    'seeds',
    'failed',
    'ops',
    'writes',
    'kindWrites',
    'textEdits',
    'writeBacks',
    'reads',
    'batches',
    'expectedErrors',
    'deliveries',
    'crashes',
    'virtualMs',
  ] as const) {
    into[k] += t[k];
  }
  for (const k of FAULT_KINDS) into.faults[k] += t.faults[k];
  for (const [k, n] of Object.entries(t.violations)) into.violations[k] = (into.violations[k] ?? 0) + n;
}

/** Splits the seeds over `jobs` child processes (this same script, with --child). */
async function runParallel(o: CliOptions, argv: string[]): Promise<ChildReport> {
  const t0 = performance.now();
  const totals = emptyTotals();
  const failures: string[] = [];
  const per = Math.ceil(o.count / o.jobs);
  const passOn = argv.filter(
    (a, i) =>
      !['--seeds', '--seed', '--jobs'].includes(a) && !['--seeds', '--seed', '--jobs'].includes(argv[i - 1] ?? ''),
  );
  const children: Promise<void>[] = [];
  for (let j = 0; j < o.jobs; j++) {
    const start = o.start + j * per;
    const count = Math.min(per, o.count - j * per);
    if (count <= 0) break;
    const args = [...passOn, '--seed', `${start}`, '--seeds', `${count}`, '--child'];
    const child = fork(process.argv[1] as string, args, {
      execArgv: process.execArgv,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(
      new Promise((resolve, reject) => {
        child.on('message', (m: ChildReport) => {
          mergeTotals(totals, m.totals);
          failures.push(...m.failures);
        });
        child.on('error', reject);
        child.on('exit', (code) =>
          code === 0 || code === 1 ? resolve() : reject(new Error(`a child exited with ${code}`)),
        );
      }),
    );
  }
  await Promise.all(children);
  totals.wallMs = performance.now() - t0;
  return { totals, failures };
}

async function main(argv: string[]): Promise<number> {
  let o: CliOptions;
  try {
    o = parse(argv);
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true) {
      const usage =
        'usage: npm run sim -- [--seeds N] [--seed S] [--replicas R] [--ops K] [--faults LIST|none] ' +
        '[--topology T] [--keys K] [--workload mixed|records] [--mutant NAME] [--jobs J] [--no-shrink] [--trace]';
      if ((e as Error).message === '') {
        console.log(usage);
        return 0;
      }
      console.error(`sim: ${(e as Error).message}\n${usage}`);
      return 2;
    }
    throw e;
  }
  if (o.child) {
    const report = await runRange(o, o.start, o.count, (line) => console.log(line));
    // The parent prints failures once, from the report: children only print as they go.
    process.send?.({ totals: report.totals, failures: [] } satisfies ChildReport);
    return report.totals.failed > 0 ? 1 : 0;
  }
  if (o.count === 1) {
    const t0 = performance.now();
    const result = await runOne(o, o.start, true);
    const ms = performance.now() - t0;
    console.log(`seed ${o.start}: ${describeOptions(result.options)}`);
    console.log(`  links ${result.links.map(([a, b]) => `r${a}-r${b}`).join(' ')}`);
    console.log(
      `  trace ${result.traceHash}, ${result.trace.length} events, digests ${[...new Set(result.digests)].map((d) => d.slice(0, 12)).join(' ')}`,
    );
    if (o.trace) {
      for (const e of result.trace)
        if (!e.noise) console.log(`    ${formatTime(e.atMs, START_MS).padStart(9)} ${e.text}`);
    }
    const totals = emptyTotals();
    addResult(totals, result);
    totals.wallMs = ms;
    if (result.violations.length > 0) console.log(await describeFailure(o, result));
    else console.log(`  ok: ${replayCommand(result.options)}`);
    console.log(formatTotals(totals));
    return result.violations.length > 0 ? 1 : 0;
  }
  console.log(
    `sim: ${o.count} seeds from ${o.start}${o.mutant === undefined ? '' : `, mutant ${o.mutant.spec.name}`}` +
      `${o.jobs > 1 ? `, ${o.jobs} processes` : ''}`,
  );
  const report = o.jobs > 1 ? await runParallel(o, argv) : await runRange(o, o.start, o.count, (l) => console.log(l));
  console.log(formatTotals(report.totals));
  if (report.totals.failed > 0) {
    console.log(
      `${report.totals.failed} of ${report.totals.seeds} seeds failed (each is printed above with its replay command)`,
    );
  }
  return report.totals.failed > 0 ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
