/**
 * bench:geo smoke: every scenario, scaled to seconds with tiny delays, on real `polyarch serve`
 * processes. Asserts only that each completes with sane output; the numbers themselves belong
 * to the benchmark, not to a test on a shared machine.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SCENARIOS, SMOKE_DELAYS, runGeo } from '../../bench/geo/run.js';
import type { GeoResults } from '../../bench/geo/run.js';

const DCS = ['eu', 'us', 'ap'] as const;
const out = mkdtempSync(path.join(os.tmpdir(), 'polyarch-geo-smoke-'));
const committed = fileURLToPath(new URL('../../bench/results', import.meta.url));

/** name -> mtime of the committed bench:geo results, to check the smoke leaves them alone. */
function committedResults(): Map<string, number> {
  if (!existsSync(committed)) return new Map();
  return new Map(
    readdirSync(committed)
      .filter((f) => f.startsWith('geo-'))
      .map((f) => [f, statSync(path.join(committed, f)).mtimeMs]),
  );
}
afterAll(() => rmSync(out, { recursive: true, force: true }));

const positive = (n: number) => {
  expect(Number.isFinite(n)).toBe(true);
  expect(n).toBeGreaterThan(0);
};
const availability = (n: number) => {
  expect(n).toBeGreaterThanOrEqual(0);
  expect(n).toBeLessThanOrEqual(100);
};

describe('bench:geo --smoke', () => {
  it('runs every scenario and writes sane results to the given directory only', async () => {
    const before = committedResults();
    const r: GeoResults = await runGeo({
      preset: 'smoke',
      scenarios: [...SCENARIOS],
      outDir: out,
      delays: SMOKE_DELAYS,
      jitter: 0.1,
      localMs: 1,
      built: false,
      print: false,
    });

    const latency = JSON.parse(readFileSync(path.join(out, 'geo-latency.json'), 'utf8')) as Record<string, unknown>;
    for (const mode of ['multiLeader', 'singleLeader'] as const) {
      const m = latency[mode] as Record<string, Record<string, number>>;
      expect(Object.keys(m).sort()).toEqual([...DCS].sort());
      for (const dc of DCS) {
        expect(Object.keys(m[dc] as object).sort()).toEqual(['p50', 'p99']);
        positive(m[dc]?.p50 as number);
        expect(m[dc]?.p99).toBeGreaterThanOrEqual(m[dc]?.p50 as number);
      }
    }

    const lag = r.lag;
    expect(lag?.settled).toBe(true);
    for (const v of Object.values(lag?.links ?? {})) {
      positive(v.p50);
      positive(v.n);
    }
    for (const dc of DCS) positive(lag?.achievedPerDc[dc] as number);

    const outage = r.outage;
    for (const run of [outage?.multiLeader, outage?.singleLeader]) {
      for (const dc of DCS) {
        availability(run?.availabilityDuringOutage[dc] as number);
        availability(run?.availabilityOverall[dc] as number);
      }
    }
    // The leaders that stayed up took every write while us was down.
    expect(outage?.multiLeader.availabilityDuringOutage.eu).toBe(100);
    expect(outage?.multiLeader.availabilityDuringOutage.ap).toBe(100);
    expect(outage?.multiLeader.catchUpSeconds).toBeGreaterThanOrEqual(0);
    positive(outage?.multiLeader.owed as number);

    for (const run of [r.flaky?.clean, r.flaky?.flaky]) {
      positive(run?.writesPerSec as number);
      positive(run?.links['eu->ap'].p50 as number);
    }

    for (const c of r.conflicts ?? []) {
      positive(c.sharedKeys);
      expect(c.conflictedDocs).toBeGreaterThanOrEqual(0);
      expect(c.conflictedDocs).toBeLessThanOrEqual(c.sharedKeys);
    }

    const files = readdirSync(out);
    for (const s of ['latency', 'lag', 'outage', 'flaky', 'conflicts']) expect(files).toContain(`geo-${s}.json`);
    for (const s of ['latency', 'lag', 'outage', 'flaky']) {
      expect(readFileSync(path.join(out, `geo-${s}.svg`), 'utf8')).toMatch(/^<svg [^>]*>[\s\S]*<\/svg>\n$/);
    }
    expect(committedResults()).toEqual(before);
  }, 120_000);
});
