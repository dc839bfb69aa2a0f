/**
 * bench:text: polyarch's text type against Yjs, json-joy and Loro on real editing traces
 * (test/fixtures/traces: automerge-paper, seph-blog1), through one adapter per library
 * (bench/text/adapters.ts) and the same harness (bench/text/measure.ts).
 *
 * For each library and trace, in a process of its own (node --expose-gc):
 *   replay:     the whole trace as local edits into an empty replica (the text must equal the
 *               trace's endContent);
 *   memory:     the heap held by the replayed document alone, after GC (Loro: plus the growth
 *               of its WebAssembly memory);
 *   encoded:    size of the whole document as the library stores it (Yjs: V1 and V2 updates;
 *               json-joy: the model's binary encoding; Loro: a snapshot), and the time to load it;
 *   merge:      the time to merge all of a replica's changes (its sync encoding from nothing)
 *               into an empty replica;
 *   concurrent: two replicas of the same empty document each replay a different quarter of the
 *               trace (the second clamped to its own text), then exchange what the other lacks;
 *               the time of the exchange, and both texts must be equal.
 * Times are medians of --runs runs after --warmup runs. Each figure is printed with its ratio
 * to the best peer (the lowest of Yjs, json-joy and Loro).
 *
 * Usage: npm run bench:text [-- --runs 5 --warmup 2 --trace automerge-paper --lib yjs --limit N --no-write]
 * (--trace and --lib may repeat; --limit keeps the first N transactions and writes no results)
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LIBRARIES, PACKAGES, PEERS, POLYARCH_TEXT, installedVersion, loadAdapter } from './text/adapters.js';
import type { Library } from './text/adapters.js';
import { measure } from './text/measure.js';
import type { LibraryFigures } from './text/measure.js';
import { TRACES, loadTrace } from './text/trace.js';
import { fmt, machine, printTable, writeResults } from './support.js';

const { values: args } = parseArgs({
  options: {
    runs: { type: 'string' },
    warmup: { type: 'string' },
    trace: { type: 'string', multiple: true },
    lib: { type: 'string', multiple: true },
    limit: { type: 'string' },
    child: { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
  },
});

/** Runs and warm-ups per trace, unless given: seph-blog1 has long pastes and is slower per edit. */
const DEFAULTS: Record<string, { runs: number; warmup: number }> = {
  'automerge-paper': { runs: 5, warmup: 2 },
  'seph-blog1': { runs: 5, warmup: 1 },
};
const MARK = 'BENCH-TEXT-RESULT ';

type Outcome = { ok: true; figures: LibraryFigures } | { ok: false; error: string };

async function child(): Promise<void> {
  const lib = args.lib?.[0] as Library;
  const traceName = args.trace?.[0] as string;
  const trace = loadTrace(traceName, args.limit === undefined ? undefined : Number(args.limit));
  let outcome: Outcome;
  try {
    const adapter = await loadAdapter(lib);
    outcome = { ok: true, figures: measure(adapter, trace, { runs: Number(args.runs), warmup: Number(args.warmup) }) };
  } catch (e) {
    outcome = { ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
  }
  process.stdout.write(MARK + JSON.stringify(outcome) + '\n');
}

function runChild(lib: Library, trace: string, runs: number, warmup: number): Outcome {
  const argv = [
    '--expose-gc',
    '--import',
    'tsx',
    fileURLToPath(import.meta.url),
    '--child',
    '--lib',
    lib,
    '--trace',
    trace,
    '--runs',
    String(runs),
    '--warmup',
    String(warmup),
  ];
  if (args.limit !== undefined) argv.push('--limit', args.limit);
  const r = spawnSync(process.execPath, argv, {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  const line = r.stdout
    .split('\n')
    .reverse()
    .find((l) => l.startsWith(MARK));
  if (line === undefined) return { ok: false, error: `process exited with ${r.status ?? r.signal} and no result` };
  return JSON.parse(line.slice(MARK.length)) as Outcome;
}

/** One row of the table: a library, or another encoding of one (with only the encoding's figures). */
interface Row {
  lib: Library;
  encoding: string;
  main: boolean;
  replayMs?: number;
  memoryBytes?: number;
  bytes: number;
  loadMs: number;
  updateBytes?: number;
  mergeMs?: number;
  exchangeMs?: number;
}

type Metric = 'replayMs' | 'memoryBytes' | 'bytes' | 'loadMs' | 'updateBytes' | 'mergeMs' | 'exchangeMs';
const METRICS: { key: Metric; label: string; unit: (n: number) => string }[] = [
  { key: 'replayMs', label: 'replay ms', unit: (n) => fmt(n, n < 100 ? 1 : 0) },
  { key: 'memoryBytes', label: 'memory MiB', unit: (n) => fmt(n / 2 ** 20, 2) },
  { key: 'bytes', label: 'encoded KiB', unit: (n) => fmt(n / 1024, 1) },
  { key: 'loadMs', label: 'load ms', unit: (n) => fmt(n, n < 100 ? 1 : 0) },
  { key: 'updateBytes', label: 'update KiB', unit: (n) => fmt(n / 1024, 1) },
  { key: 'mergeMs', label: 'merge ms', unit: (n) => fmt(n, n < 100 ? 1 : 0) },
  { key: 'exchangeMs', label: 'concurrent ms', unit: (n) => fmt(n, n < 100 ? 1 : 0) },
];

function rowsOf(lib: Library, f: LibraryFigures): Row[] {
  return Object.entries(f.encodings).map(([encoding, e], i) => {
    const row: Row = { lib, encoding, main: i === 0, bytes: e.bytes, loadMs: e.loadMs };
    if (i === 0) {
      row.replayMs = f.replayMs;
      row.memoryBytes = f.memoryBytes;
      row.updateBytes = f.updateBytes;
      row.mergeMs = f.mergeMs;
      row.exchangeMs = f.concurrent.exchangeMs;
    }
    return row;
  });
}

/** The lowest figure among the peers' rows, per metric. */
function bestPeer(rows: Row[]): Record<Metric, { value: number; by: string }> {
  const best = {} as Record<Metric, { value: number; by: string }>;
  for (const { key } of METRICS) {
    for (const r of rows) {
      const v = r[key];
      if (!PEERS.includes(r.lib) || v === undefined) continue;
      const cur = best[key];
      if (cur === undefined || v < cur.value) best[key] = { value: v, by: r.main ? r.lib : `${r.lib} ${r.encoding}` };
    }
  }
  return best;
}

function table(rows: Row[], best: Record<Metric, { value: number; by: string }>): Record<string, string>[] {
  const cell = (m: (typeof METRICS)[number], v: number | undefined) => {
    if (v === undefined) return '';
    const b = best[m.key];
    return b === undefined || b.value <= 0 ? m.unit(v) : `${m.unit(v)} (${fmt(v / b.value, 2)}x)`;
  };
  const out = rows.map((r) => {
    const o: Record<string, string> = { library: r.main ? r.lib : `  (${r.lib})`, encoding: r.encoding };
    for (const m of METRICS) o[m.label] = cell(m, r[m.key]);
    return o;
  });
  const o: Record<string, string> = { library: 'best peer', encoding: '' };
  for (const m of METRICS) o[m.label] = best[m.key] === undefined ? '' : best[m.key].by;
  out.push(o);
  return out;
}

async function main(): Promise<void> {
  if (args.child) return child();
  const started = performance.now();
  const traces = args.trace ?? [...TRACES];
  const libs = (args.lib ?? [...LIBRARIES]) as Library[];
  for (const l of libs) if (!LIBRARIES.includes(l)) throw new Error(`unknown library ${l}`);

  const notes: string[] = [];
  const skipped: Partial<Record<Library, string>> = {};
  if (libs.includes('polyarch') && !existsSync(POLYARCH_TEXT)) {
    skipped.polyarch = 'src/crdt/text/index.ts does not exist yet';
  }
  const adapterNotes: Record<string, string[]> = {};
  for (const l of libs) {
    if (skipped[l] !== undefined) continue;
    try {
      adapterNotes[l] = (await loadAdapter(l)).notes ?? [];
    } catch (e) {
      if (l !== 'polyarch') throw e;
      skipped.polyarch = `src/crdt/text fails to load: ${e instanceof Error ? e.message : String(e)}`;
    }
  }
  let polyarchFailed = false;
  const results: Record<string, unknown> = {};
  for (const name of traces) {
    const trace = loadTrace(name, args.limit === undefined ? undefined : Number(args.limit));
    const d = DEFAULTS[name] ?? { runs: 5, warmup: 2 };
    const runs = args.runs === undefined ? d.runs : Number(args.runs);
    const warmup = args.warmup === undefined ? d.warmup : Number(args.warmup);
    console.log(
      `\n## ${name}: ${fmt(trace.txns.length)} transactions, ${fmt(trace.edits)} edits, ` +
        `${fmt(trace.endContent.length)} characters at the end; medians of ${runs} runs after ${warmup} warm-up`,
    );
    const figures: Partial<Record<Library, LibraryFigures>> = {};
    const errors: Partial<Record<Library, string>> = {};
    for (const lib of libs) {
      if (skipped[lib] !== undefined) continue;
      const t0 = performance.now();
      const out = runChild(lib, name, runs, warmup);
      if (out.ok) {
        figures[lib] = out.figures;
        console.log(`  ${lib}: ${fmt((performance.now() - t0) / 1000, 1)} s`);
      } else if (lib === 'polyarch') {
        errors[lib] = out.error;
        polyarchFailed = true;
        console.log(`  ${lib}: FAILED, left out of the table:\n${out.error}`);
      } else {
        throw new Error(`${lib} on ${name}: ${out.error}`);
      }
    }
    const rows = libs.flatMap((l) => (figures[l] === undefined ? [] : rowsOf(l, figures[l])));
    const best = bestPeer(rows);
    console.log('');
    printTable(table(rows, best));
    results[name] = {
      txns: trace.txns.length,
      edits: trace.edits,
      endLength: trace.endContent.length,
      runs,
      warmup,
      bestPeer: best,
      libraries: figures,
      ...(Object.keys(errors).length > 0 ? { errors } : {}),
    };
  }

  for (const [l, why] of Object.entries(skipped)) {
    const msg = `NOTE: ${l} skipped: ${why}; the table shows the peers only.`;
    notes.push(msg);
    console.log(`\n${msg}`);
  }
  if (polyarchFailed) console.log('\nNOTE: polyarch failed on a trace (see above): it is left out of that table.');
  const seconds = (performance.now() - started) / 1000;
  console.log(`\ntotal ${fmt(seconds, 0)} s`);
  const data = {
    bench: 'text',
    date: new Date().toISOString(),
    machine: machine(),
    versions: Object.fromEntries(
      libs
        .filter((l) => l !== 'polyarch')
        .map((l) => [l, installedVersion(PACKAGES[l as Exclude<Library, 'polyarch'>])]),
    ),
    limit: args.limit === undefined ? null : Number(args.limit),
    seconds,
    skipped,
    method: [
      'each library runs in a process of its own (node --expose-gc); times are medians, warm-ups excluded',
      'replay: local edits from an empty replica, one commit/flush at the end where the library has one',
      'memory: JavaScript heap held by the replayed document after GC (plus WebAssembly memory for Loro)',
      'load and merge times run until the text has been read (toString) from the new replica',
      'concurrent: A replays the first quarter of the transactions, B the second (clamped to its own text); the time covers versions, encoding and merging both ways, and reading both texts',
      'ratios: against the lowest figure among Yjs, json-joy and Loro (any encoding)',
    ],
    notes: { ...adapterNotes, harness: notes },
    traces: results,
  };
  if (args['no-write'] || args.limit !== undefined) console.log('results not written (--limit or --no-write)');
  else console.log(`results: ${writeResults('text', data)}`);
  if (polyarchFailed) process.exitCode = 1;
}

await main();
