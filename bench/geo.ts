/**
 * bench:geo: three datacenters (eu, us, ap) of real `polyarch serve` processes on loopback,
 * every inter-DC link through a fault proxy with one-way delay and jitter, one client per
 * datacenter; measured claims of multi-leader replication against a single leader (eu) on the
 * same build and network. Scenarios: latency, lag, outage, flaky, conflicts (see bench/README.md).
 *
 * Usage: npm run bench:geo [-- --quick | --smoke] [--scenario NAME] [--out DIR]
 *          [--eu-us 40 --eu-ap 110 --us-ap 90 --jitter 0.1] [--rate 1000] [--drop 0.05]
 *          [--overlap 0.01,0.1] [--no-build] [--tsx]
 */
import { execSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DEFAULT_DELAYS, SCENARIOS, SMOKE_DELAYS, runGeo } from './geo/run.js';
import type { Preset, ScenarioName } from './geo/run.js';
import type { Scale } from './geo/scenarios.js';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    smoke: { type: 'boolean', default: false },
    scenario: { type: 'string', multiple: true },
    out: { type: 'string' },
    'eu-us': { type: 'string' },
    'eu-ap': { type: 'string' },
    'us-ap': { type: 'string' },
    jitter: { type: 'string', default: '0.1' },
    local: { type: 'string', default: '1' },
    rate: { type: 'string' },
    drop: { type: 'string' },
    overlap: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    tsx: { type: 'boolean', default: false },
  },
});

function num(name: string, v: string | undefined, min = 0): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    console.error(`--${name} must be a number >= ${min}, got ${v}`);
    process.exit(2);
  }
  return n;
}

const preset: Preset = args.smoke ? 'smoke' : args.quick ? 'quick' : 'full';
const scenarios = (args.scenario ?? [...SCENARIOS]) as ScenarioName[];
for (const s of scenarios) {
  if (!(SCENARIOS as readonly string[]).includes(s)) {
    console.error(`unknown scenario ${s}; one of ${SCENARIOS.join(', ')}`);
    process.exit(2);
  }
}
const base = preset === 'smoke' ? SMOKE_DELAYS : DEFAULT_DELAYS;
const delays = {
  'eu-us': num('eu-us', args['eu-us']) ?? base['eu-us'],
  'eu-ap': num('eu-ap', args['eu-ap']) ?? base['eu-ap'],
  'us-ap': num('us-ap', args['us-ap']) ?? base['us-ap'],
};
const scale: Partial<Scale> = {};
const rate = num('rate', args.rate, 1);
if (rate !== undefined) scale.lagRate = rate;
const drop = num('drop', args.drop);
if (drop !== undefined) scale.dropPerSecond = drop;
if (args.overlap !== undefined) {
  scale.overlaps = args.overlap.split(',').map((x) => num('overlap', x, 0.0001) as number);
  if (scale.overlaps.some((x) => x > 1)) {
    console.error('--overlap fractions must be in (0, 1]');
    process.exit(2);
  }
}
// The full run uses the compiled build, like bench:replication; quick and smoke run the
// sources through tsx (same code, slower start) so they need no build.
const built = !args.tsx && preset === 'full';
if (built && !args['no-build']) execSync('npm run build', { stdio: 'ignore' });

const here = path.dirname(fileURLToPath(import.meta.url));
await runGeo({
  preset,
  scenarios,
  outDir: args.out ?? path.join(here, 'results'),
  delays,
  jitter: num('jitter', args.jitter) ?? 0.1,
  localMs: num('local', args.local) ?? 1,
  built,
  scale,
});
