/**
 * npm run chaos -- [--minutes M | --seconds S] [--leaders N] [--seed S]: a longer chaos run
 * on real processes (see chaos.ts); prints what happened and exits non-zero on a violation.
 */
import { parseArgs } from 'node:util';
import { runChaos } from './chaos.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    seconds: { type: 'string' },
    leaders: { type: 'string', default: '3' },
    seed: { type: 'string' },
    quiet: { type: 'boolean', default: false },
  },
});
const seconds = values.seconds !== undefined ? Number(values.seconds) : Number(values.minutes ?? '1') * 60;
const result = await runChaos({
  seconds,
  leaders: Number(values.leaders),
  ...(values.seed === undefined ? {} : { seed: Number(values.seed) }),
  log: values.quiet === true ? () => {} : (line) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${line}`),
});
console.log(JSON.stringify({ ...result, violations: result.violations.length }, null, 2));
if (result.violations.length > 0) {
  for (const v of result.violations.slice(0, 50)) console.error(v);
  console.error(
    `replay the nemesis schedule with: npm run chaos -- --seconds ${seconds} --leaders ${result.leaders} --seed ${result.seed}`,
  );
  process.exitCode = 1;
}
