/**
 * bench:compare's runs, apart from its command line so the smoke test can drive them tiny:
 * the same catch-up and live replication work done by polyarch and by PouchDB, per storage.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fmt, machine } from '../support.js';
import { polyarchCatchUp, polyarchLive, polyarchStartupMs } from './polyarch.js';
import type { CatchUpResult, PolyarchStorage } from './polyarch.js';
import { pouchCatchUp, pouchLive } from './pouchdb.js';
import type { PouchAdapter } from './pouch-setup.js';
import type { LiveOptions, LiveResult } from './shared.js';

/** `durable`: polyarch on SQLite against PouchDB on LevelDB; `memory`: both in memory. */
export type StoragePair = 'durable' | 'memory';

const PAIRS: Record<StoragePair, { polyarch: PolyarchStorage; pouchdb: PouchAdapter }> = {
  durable: { polyarch: 'sqlite', pouchdb: 'leveldb' },
  memory: { polyarch: 'memory', pouchdb: 'memory' },
};

export interface CompareOptions {
  docs: number;
  live: LiveOptions;
  storages: StoragePair[];
  /** Run polyarch from dist/ (after a build) rather than from the sources through tsx. */
  built: boolean;
  /** Starts of an idle leader to time, the best of which is taken off polyarch's catch-up time. */
  startupRuns?: number;
  log?: (line: string) => void;
}

export interface PairResult {
  storage: StoragePair;
  polyarchStorage: PolyarchStorage;
  pouchdbAdapter: PouchAdapter;
  catchUp: { polyarch: CatchUpResult; pouchdb: CatchUpResult };
  live: { polyarch: LiveResult; pouchdb: LiveResult };
}

export interface CompareResult {
  bench: 'compare';
  date: string;
  machine: Record<string, string | number>;
  docs: number;
  live: LiveOptions;
  pairs: PairResult[];
  rows: Row[];
}

export interface Row {
  storage: string;
  figure: string;
  polyarch: number;
  pouchdb: number;
  /** polyarch / PouchDB. */
  ratio: number;
  better: 'higher' | 'lower';
}

export async function runCompare(options: CompareOptions): Promise<CompareResult> {
  const log = options.log ?? (() => {});
  const root = mkdtempSync(path.join(os.tmpdir(), 'polyarch-bench-compare-'));
  try {
    const pairs: PairResult[] = [];
    for (const storage of options.storages) {
      const { polyarch, pouchdb } = PAIRS[storage];
      const where = { root, storage: polyarch, built: options.built };
      const startup = await polyarchStartupMs(where, options.startupRuns ?? 3);
      log(`${storage}: catch-up of ${fmt(options.docs)} documents, polyarch (${polyarch})`);
      const pc = await polyarchCatchUp(where, options.docs, startup);
      log(`${storage}: catch-up of ${fmt(options.docs)} documents, PouchDB (${pouchdb})`);
      const qc = await pouchCatchUp({ root, adapter: pouchdb }, options.docs);
      log(`${storage}: live, polyarch`);
      const pl = await polyarchLive(where, options.live);
      log(`${storage}: live, PouchDB`);
      const ql = await pouchLive({ root, adapter: pouchdb }, options.live);
      pairs.push({
        storage,
        polyarchStorage: polyarch,
        pouchdbAdapter: pouchdb,
        catchUp: { polyarch: pc, pouchdb: qc },
        live: { polyarch: pl, pouchdb: ql },
      });
    }
    return {
      bench: 'compare',
      date: new Date().toISOString(),
      machine: machine(),
      docs: options.docs,
      live: options.live,
      pairs,
      rows: pairs.flatMap(rowsOf),
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

function rowsOf(p: PairResult): Row[] {
  const storage = `${p.polyarchStorage} / ${p.pouchdbAdapter}`;
  const row = (figure: string, a: number, b: number, better: Row['better']): Row => ({
    storage,
    figure,
    polyarch: a,
    pouchdb: b,
    ratio: a / b,
    better,
  });
  const { catchUp: c, live: l } = p;
  return [
    row(`catch-up ${fmt(c.polyarch.docs)} docs: docs/s`, c.polyarch.perSec, c.pouchdb.perSec, 'higher'),
    row('catch-up: peak RSS source MiB', c.polyarch.rss.source, c.pouchdb.rss.source, 'lower'),
    row('catch-up: peak RSS replica MiB', c.polyarch.rss.replica, c.pouchdb.rss.replica, 'lower'),
    row('live: achieved writes/s', l.polyarch.achievedRate, l.pouchdb.achievedRate, 'higher'),
    row('live: delivered writes/s', l.polyarch.deliveredRate, l.pouchdb.deliveredRate, 'higher'),
    row('live: lag p50 ms', l.polyarch.p50, l.pouchdb.p50, 'lower'),
    row('live: lag p99 ms', l.polyarch.p99, l.pouchdb.p99, 'lower'),
  ];
}

/** The rows as printable cells: figures rounded, the ratio to two places. */
export function tableOf(rows: Row[]): Record<string, string>[] {
  return rows.map((r) => ({
    'polyarch / PouchDB storage': r.storage,
    figure: r.figure,
    polyarch: fmt(r.polyarch, r.polyarch < 100 ? 1 : 0),
    PouchDB: fmt(r.pouchdb, r.pouchdb < 100 ? 1 : 0),
    // Two significant digits below 0.1, so that a ratio of 0.0006 does not print as 0.00.
    'ratio polyarch/PouchDB': `${r.ratio >= 0.1 ? fmt(r.ratio, 2) : r.ratio.toPrecision(2)}x`,
    better: r.better,
  }));
}
