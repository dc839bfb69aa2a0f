/**
 * bench:geo driver: presets (full, quick, smoke), one topology for the whole run, the
 * scenarios in order, and the outputs (tables on stdout, `geo-<scenario>.json`, SVG plots and
 * a markdown summary in the output directory).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fmt, machine, printTable } from '../support.js';
import { boxChartSvg, lineChartSvg } from '../plot/svg.js';
import { DCS, GeoTopology } from './topology.js';
import type { Delays } from './topology.js';
import * as sc from './scenarios.js';
import type { Scale } from './scenarios.js';

export const SCENARIOS = ['latency', 'lag', 'outage', 'flaky', 'conflicts'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export type Preset = 'full' | 'quick' | 'smoke';

export interface GeoOptions {
  preset: Preset;
  scenarios: ScenarioName[];
  /** Where results go (JSON, SVG, summary). */
  outDir: string;
  delays: Delays;
  jitter: number;
  localMs: number;
  built: boolean;
  /** Overrides of the preset's scale. */
  scale?: Partial<Scale>;
  /** Print tables (default true). */
  print?: boolean;
}

export const SCALES: Record<Preset, Scale> = {
  full: {
    latencySeconds: 15,
    latencyRate: 50,
    lagRate: 1000,
    lagSeconds: 20,
    warmupSeconds: 3,
    outageRate: 200,
    outageBeforeSeconds: 5,
    outageDownSeconds: 30,
    outageAfterSeconds: 15,
    flakyRate: 300,
    flakySeconds: 20,
    dropPerSecond: 0.05,
    conflictWrites: 2000,
    conflictRate: 200,
    overlaps: [0.01, 0.1],
  },
  quick: {
    latencySeconds: 4,
    latencyRate: 50,
    lagRate: 500,
    lagSeconds: 6,
    warmupSeconds: 1,
    outageRate: 100,
    outageBeforeSeconds: 2,
    outageDownSeconds: 6,
    outageAfterSeconds: 3,
    flakyRate: 200,
    flakySeconds: 6,
    dropPerSecond: 0.05,
    conflictWrites: 500,
    conflictRate: 250,
    overlaps: [0.01, 0.1],
  },
  smoke: {
    latencySeconds: 1,
    latencyRate: 50,
    lagRate: 100,
    lagSeconds: 1.5,
    warmupSeconds: 0.3,
    outageRate: 50,
    outageBeforeSeconds: 0.5,
    outageDownSeconds: 1,
    outageAfterSeconds: 1,
    flakyRate: 50,
    flakySeconds: 1.5,
    dropPerSecond: 0.5,
    conflictWrites: 100,
    conflictRate: 200,
    overlaps: [0.1],
  },
};

export const DEFAULT_DELAYS: Delays = { 'eu-us': 40, 'eu-ap': 110, 'us-ap': 90 };
export const SMOKE_DELAYS: Delays = { 'eu-us': 3, 'eu-ap': 6, 'us-ap': 5 };

export interface GeoResults {
  latency?: sc.LatencyResult;
  lag?: sc.LagResult;
  outage?: sc.OutageResult;
  flaky?: sc.FlakyResult;
  conflicts?: sc.ConflictRun[];
  /** Files written, by name. */
  files: string[];
}

const f1 = (n: number) => fmt(n, 1);

export async function runGeo(o: GeoOptions): Promise<GeoResults> {
  const scale: Scale = { ...SCALES[o.preset], ...o.scale };
  const print = o.print !== false;
  const log = (s = '') => {
    if (print) console.log(s);
  };
  const table = (rows: Record<string, string | number>[]) => {
    if (print) printTable(rows);
    md.push(tableMd(rows), '');
  };
  const md: string[] = [];
  mkdirSync(o.outDir, { recursive: true });
  const results: GeoResults = { files: [] };
  const meta = {
    date: new Date().toISOString(),
    machine: machine(),
    preset: o.preset,
    delaysMs: o.delays,
    jitter: o.jitter,
    localMs: o.localMs,
    build: o.built ? 'dist' : 'tsx',
    scale,
  };
  const write = (name: string, data: unknown) => {
    const file = path.join(o.outDir, name);
    writeFileSync(file, typeof data === 'string' ? data : JSON.stringify(data, null, 2) + '\n');
    results.files.push(file);
  };
  const root = mkdtempSync(path.join(os.tmpdir(), 'polyarch-bench-geo-'));
  const topo = await GeoTopology.start({
    root,
    delays: o.delays,
    jitter: o.jitter,
    localMs: o.localMs,
    built: o.built,
  });
  try {
    log(
      `bench:geo (${o.preset}): one-way delays eu-us ${o.delays['eu-us']} ms, eu-ap ${o.delays['eu-ap']} ms, us-ap ${o.delays['us-ap']} ms, jitter ${o.jitter * 100}%, clients ${o.localMs} ms from their leader`,
    );
    for (const name of o.scenarios) {
      const t0 = performance.now();
      log(`\n## ${name}`);
      md.length = 0;
      if (name === 'latency') {
        const r = await sc.latency(topo, scale);
        results.latency = r;
        table(
          DCS.map((dc) => ({
            client: dc,
            'multi p50 ms': f1(r.multiLeader[dc].p50),
            'multi p99 ms': f1(r.multiLeader[dc].p99),
            'single (eu) p50 ms': f1(r.singleLeader[dc].p50),
            'single (eu) p99 ms': f1(r.singleLeader[dc].p99),
          })),
        );
        write('geo-latency.json', {
          multiLeader: r.multiLeader,
          singleLeader: r.singleLeader,
          meta: { ...meta, samples: r.samples, failed: r.failed, boxes: r.boxes },
        });
        write(
          'geo-latency.svg',
          boxChartSvg({
            title: 'Write latency (PUT round trip) per client',
            yLabel: 'ms (log scale)',
            series: ['multi-leader (local)', 'single-leader (eu)'],
            groups: DCS.map((dc) => ({ label: dc, boxes: [r.boxes.multiLeader[dc], r.boxes.singleLeader[dc]] })),
            logY: true,
          }),
        );
      } else if (name === 'lag') {
        const r = await sc.lag(topo, scale);
        results.lag = r;
        log(
          `offered ${fmt(r.offeredPerDc)} writes/s per DC; achieved ${DCS.map((dc) => `${dc} ${fmt(r.achievedPerDc[dc])}`).join(', ')} /s`,
        );
        md.push(
          `Offered ${fmt(r.offeredPerDc)} writes/s per DC; achieved ${DCS.map((dc) => `${dc} ${fmt(r.achievedPerDc[dc])}`).join(', ')} writes/s.`,
          '',
        );
        table(
          Object.entries(r.links).map(([d, v]) => ({
            link: d,
            'lag p50 ms': f1(v.p50),
            'lag p99 ms': f1(v.p99),
            writes: v.n,
          })),
        );
        write('geo-lag.json', { ...r, meta });
        write(
          'geo-lag.svg',
          boxChartSvg({
            title: `Replication lag per link at ${fmt(r.offeredPerDc)} writes/s per DC`,
            yLabel: 'ms (log scale)',
            series: ['lag'],
            groups: Object.entries(r.boxes).map(([d, b]) => ({ label: d, boxes: [b] })),
            logY: true,
          }),
        );
      } else if (name === 'outage') {
        const r = await sc.outage(topo, scale);
        results.outage = r;
        const m = r.multiLeader;
        const s = r.singleLeader;
        table(
          DCS.map((dc) => ({
            client: dc,
            [`multi, us down ${fmt(m.downSeconds, 1)} s: available %`]: f1(m.availabilityDuringOutage[dc]),
            'multi, whole run %': f1(m.availabilityOverall[dc]),
            [`single, eu down ${fmt(s.downSeconds, 1)} s: available %`]: f1(s.availabilityDuringOutage[dc]),
            'single, whole run %': f1(s.availabilityOverall[dc]),
          })),
        );
        const line =
          `us restarted (spawn to answering /status) in ${fmt(m.restartSeconds, 2)} s, then caught up in ${fmt(m.catchUpSeconds, 2)} s ` +
          `(all ${fmt(m.owed)} writes acknowledged at eu and ap before its restart seen in its change feed); ` +
          `the three digests were equal ${fmt(m.convergeAfterLoadSeconds, 2)} s after the load stopped.`;
        log(line);
        md.push(line, '');
        write('geo-outage.json', { ...r, meta });
        write(
          'geo-outage.svg',
          lineChartSvg({
            title: `Replication lag during an outage of us (multi-leader, ${fmt(r.rate)} writes/s per DC)`,
            xLabel: 'time of the write (s since the start)',
            yLabel: 'lag ms, max per bucket (log scale)',
            series: Object.entries(m.timeline).map(([d, points]) => ({ name: d, points })),
            shaded: [{ from: m.window.from, to: m.window.to, label: 'us down' }],
            logY: true,
          }),
        );
      } else if (name === 'flaky') {
        const r = await sc.flaky(topo, scale);
        results.flaky = r;
        const row = (label: string, x: sc.FlakyRun) => ({
          'eu-ap link': label,
          'writes/s (all)': fmt(x.writesPerSec),
          'eu->ap p50 ms': f1(x.links['eu->ap'].p50),
          'eu->ap p99 ms': f1(x.links['eu->ap'].p99),
          'ap->eu p50 ms': f1(x.links['ap->eu'].p50),
          'ap->eu p99 ms': f1(x.links['ap->eu'].p99),
          'eu->ap writes/s': fmt(x.euToApPerSec),
        });
        table([
          row('clean', r.clean),
          row(`drops ${fmt(r.dropPerSecond * 100)}%/s per connection`, r.flaky),
          row(`drops ${fmt(r.heavyDropPerSecond * 100)}%/s per connection`, r.heavy),
        ]);
        write('geo-flaky.json', { ...r, meta });
        write(
          'geo-flaky.svg',
          boxChartSvg({
            title: 'Lag across the eu-ap link, clean vs flaky',
            yLabel: 'ms (log scale)',
            series: ['clean', `${fmt(r.dropPerSecond * 100)}% drops/s`, `${fmt(r.heavyDropPerSecond * 100)}% drops/s`],
            groups: (['eu->ap', 'ap->eu'] as const).map((d) => ({
              label: d,
              boxes: [r.clean.boxes[d], r.flaky.boxes[d], r.heavy.boxes[d]],
            })),
            logY: true,
          }),
        );
      } else {
        const r = await sc.conflicts(topo, scale);
        results.conflicts = r;
        table(
          r.map((c) => ({
            overlap: `${c.overlap * 100}%`,
            'writes per DC': c.writesPerDc,
            'shared keys': c.sharedKeys,
            'conflicted docs': c.conflictedDocs,
            'detected / expected %': f1(c.detectedOfExpected),
            'conflicting writes %': f1(c.conflictingWriteRate),
            'expected %': f1(c.expectedRate),
            '/status delta eu/us/ap': DCS.map((dc) => c.statusDelta[dc]).join('/'),
            'GET /conflicts eu/us/ap': DCS.map((dc) => c.listed[dc]).join('/'),
          })),
        );
        write('geo-conflicts.json', { runs: r, meta });
      }
      log(`(${name}: ${fmt((performance.now() - t0) / 1000, 1)} s)`);
      write(`geo-${name}.md`, md.join('\n'));
    }
  } finally {
    await topo.close();
    rmSync(root, { recursive: true, force: true });
  }
  return results;
}

function tableMd(rows: Record<string, string | number>[]): string {
  if (rows.length === 0) return '';
  const cols = Object.keys(rows[0] as object);
  return [
    `| ${cols.join(' | ')} |`,
    `|${cols.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${cols.map((c) => String(r[c] ?? '')).join(' | ')} |`),
  ].join('\n');
}
