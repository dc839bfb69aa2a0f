/**
 * A 60-second chaos run on real processes in every test run (see test/chaos/chaos.ts): kills,
 * restarts, partitions and cuts under a write load, then the guarantees checked over HTTP.
 */
import { describe, expect, it } from 'vitest';
import { runChaos } from '../chaos/chaos.js';

describe('chaos on real processes', () => {
  it('keeps every acknowledged write, converges, and goes quiet, through kills and partitions', async () => {
    const lines: string[] = [];
    const result = await runChaos({ seconds: 60, leaders: 3, log: (l) => lines.push(l) });
    const summary = JSON.stringify({ ...result, violations: result.violations.slice(0, 20) }, null, 2);
    expect(result.violations, `${summary}\n${lines.join('\n')}`).toEqual([]);
    // The run did what it claims: writes were acknowledged and the nemesis struck.
    expect(result.acked, summary).toBeGreaterThan(100);
    expect(result.kills + result.partitions + result.cuts, summary).toBeGreaterThan(5);
  }, 240_000);
});
