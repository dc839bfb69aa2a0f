/**
 * `npm run sim:mutants`: shows that the checker catches deliberate bugs. Runs each mutant of
 * mutant-catalog.ts over seeds until the checker reports a violation on a seed the unmutated
 * code passes, prints per mutant whether and how it was caught, and exits non-zero if any
 * mutant went undetected. An entry point like cli.ts: it reads process.argv and sets the
 * exit code, and imports no Node module.
 *
 *   npm run sim:mutants -- [--seeds N (per mutant, default 40)] [--ops K (default 80)] [--seed S (first seed, default 1)]
 */
import { MUTANTS, huntMutant } from './mutant-catalog.js';
import { replayCommand } from './simulator.js';

function flag(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const text = at >= 0 ? process.argv[at + 1] : undefined;
  const n = text === undefined ? fallback : Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
}

const perMutant = flag('seeds', 40);
const ops = flag('ops', 80);
const first = flag('seed', 1);
const seeds = Array.from({ length: perMutant }, (_, i) => first + i);

let undetected = 0;
console.log(`sim:mutants: ${MUTANTS.length} mutants, up to ${perMutant} seeds each from ${first}, ${ops} ops`);
for (const m of MUTANTS) {
  const hunt = await huntMutant(m, seeds, { ops });
  console.log(`\n${m.spec.name}: ${m.description}`);
  console.log(`  seam: ${m.seam}`);
  if (hunt.detected && hunt.result !== undefined) {
    const v = hunt.result.violations[0];
    console.log(
      `  DETECTED on seed ${hunt.result.options.seed} after ${hunt.runs} runs by ${hunt.invariants.join(', ')} (expected ${m.expect.join(' or ')})`,
    );
    if (v !== undefined) console.log(`  first: ${v.invariant}: ${v.message.slice(0, 400)}`);
    console.log(`  replay: ${replayCommand(hunt.result.options)}`);
  } else {
    undetected++;
    console.log(`  NOT DETECTED in ${hunt.runs} runs`);
  }
  if (hunt.confounded.length > 0) {
    console.log(`  (seeds ${hunt.confounded.join(', ')} failed without the mutant too, so they were not counted)`);
  }
}
console.log(`\n${MUTANTS.length - undetected} of ${MUTANTS.length} mutants detected`);
process.exitCode = undetected > 0 ? 1 : 0;
