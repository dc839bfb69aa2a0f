/**
 * The measurements of one library on one trace, run in a process of their own (started with
 * --expose-gc) so that each library's memory and compiled code start from nothing.
 */
import type { TextAdapter } from './adapters.js';
import { replay, replayClamped } from './trace.js';
import type { Trace } from './trace.js';

export interface EncodingFigures {
  /** Bytes of the encoded document. */
  bytes: number;
  /** Median milliseconds to encode it. */
  encodeMs: number;
  /** Median milliseconds to load a replica from it. */
  loadMs: number;
}

export interface LibraryFigures {
  /** Median milliseconds to replay the whole trace as local edits into an empty replica. */
  replayMs: number;
  /** Every replay's milliseconds, in run order (warm-ups excluded). */
  replayRunsMs: number[];
  /** Milliseconds of the first replay in a fresh process (the one measured for memory). */
  coldReplayMs: number;
  /** Memory held by the replayed document, in bytes: `heapBytes + offHeapBytes`. */
  memoryBytes: number;
  /** JavaScript heap held by the first replica replayed in the process, after GC. */
  heapBytes: number;
  /** WebAssembly memory (Loro): growth per further replica held, after the first. */
  offHeapBytes: number;
  /** WebAssembly memory (Loro): growth over the first replica, temporary peak included. */
  firstOffHeapBytes: number;
  encodings: Record<string, EncodingFigures>;
  /** Bytes of all the document's changes as sent to an empty replica (`encodeSince` from nothing). */
  updateBytes: number;
  /** Median milliseconds to merge them into an empty replica. */
  mergeMs: number;
  concurrent: {
    /** Transactions each replica replayed. */
    txnsEach: number;
    /** Bytes each way (A to B, B to A). */
    bytes: [number, number];
    /** Median milliseconds of the exchange: versions, encoding both ways, and merging both ways. */
    exchangeMs: number;
    /** Length of the merged text. */
    length: number;
  };
}

export interface MeasureOptions {
  runs: number;
  warmup: number;
}

const gc = (): void => {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) throw new Error('run with node --expose-gc');
  g();
  g();
};

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

function check(what: string, got: string, want: string): void {
  if (got === want) return;
  let i = 0;
  while (i < got.length && got[i] === want[i]) i++;
  throw new Error(
    `${what}: text differs (length ${got.length}, expected ${want.length}; first difference at ${i}: ` +
      `${JSON.stringify(got.slice(i, i + 20))} vs ${JSON.stringify(want.slice(i, i + 20))})`,
  );
}

/** Runs `fn` warm-up times, then `runs` times with GC before each, and returns the milliseconds of the timed part. */
function repeat(opts: MeasureOptions, fn: () => number): number[] {
  for (let i = 0; i < opts.warmup; i++) fn();
  const out: number[] = [];
  for (let i = 0; i < opts.runs; i++) {
    gc();
    out.push(fn());
  }
  return out;
}

function fullReplayOf<D>(a: TextAdapter<D>, txns: Trace['txns']): void {
  const d = a.create(9);
  replay(a, d, txns);
  a.commit?.(d);
}

export function measure<D>(a: TextAdapter<D>, trace: Trace, opts: MeasureOptions): LibraryFigures {
  const { txns, endContent } = trace;
  const heap = () => process.memoryUsage().heapUsed;
  const offHeap = () => a.offHeap?.() ?? 0;
  const fullReplay = (replica: number): D => {
    const d = a.create(replica);
    replay(a, d, txns);
    a.commit?.(d);
    return d;
  };

  // Memory, in this fresh process: compile the hot paths on a short prefix, then replay the
  // whole trace into one replica and count what the heap holds while only it is kept.
  for (let i = 0; i < 2; i++) fullReplayOf(a, txns.slice(0, 2000));
  gc();
  const baseHeap = heap();
  const baseOff = offHeap();
  let t = performance.now();
  let probe: D | undefined = fullReplay(1);
  const coldReplayMs = performance.now() - t;
  check(`${a.name} replay`, a.toString(probe), endContent);
  const held: unknown[] = [a.documentOnly?.(probe) ?? probe];
  probe = undefined;
  gc();
  const heapBytes = heap() - baseHeap;
  const firstOffHeapBytes = offHeap() - baseOff;
  // Memory off the JavaScript heap (WebAssembly) never shrinks, so its growth over the first
  // replica also holds the peak of the replay's temporary memory: count instead its growth per
  // further replica held, which reuses that room.
  let offHeapBytes = 0;
  if (a.offHeap !== undefined) {
    const off1 = offHeap();
    for (let i = 0; i < 2; i++) {
      const d = fullReplay(3 + i);
      held.push(a.documentOnly?.(d) ?? d);
    }
    gc();
    offHeapBytes = (offHeap() - off1) / 2;
  }
  if (held.length === 0) throw new Error('unreachable');
  held.length = 0;

  // The replica the encodings and the merge start from.
  const source = fullReplay(1);

  // Replay time.
  const replayRunsMs = repeat(opts, () => {
    const d = a.create(1);
    const t0 = performance.now();
    replay(a, d, txns);
    a.commit?.(d);
    const ms = performance.now() - t0;
    check(`${a.name} replay`, a.toString(d), endContent);
    return ms;
  });

  // Encodings: size, encoding time, loading time.
  const encodings: Record<string, EncodingFigures> = {};
  for (const [name, enc] of Object.entries(a.encodings)) {
    let bytes = enc.encode(source);
    const encodeRuns = repeat(opts, () => {
      const t0 = performance.now();
      bytes = enc.encode(source);
      return performance.now() - t0;
    });
    const loadRuns = repeat(opts, () => {
      const t0 = performance.now();
      const d = enc.load(bytes, 2);
      const text = a.toString(d);
      const ms = performance.now() - t0;
      check(`${a.name} load (${name})`, text, endContent);
      return ms;
    });
    encodings[name] = { bytes: bytes.length, encodeMs: median(encodeRuns), loadMs: median(loadRuns) };
  }

  // A full remote copy merged into an empty replica, through the sync path.
  const update = a.encodeSince(source);
  const mergeRuns = repeat(opts, () => {
    const d = a.create(2);
    const t0 = performance.now();
    a.merge(d, update);
    const text = a.toString(d);
    const ms = performance.now() - t0;
    check(`${a.name} merge`, text, endContent);
    return ms;
  });

  // Concurrent: A replays the first quarter of the trace, B the second quarter (clamped to its
  // own text), both from the same empty document; then they exchange what the other lacks.
  const q = Math.floor(txns.length / 4);
  const first = txns.slice(0, q);
  const second = txns.slice(q, 2 * q);
  let exchanged: [number, number] = [0, 0];
  let mergedLength = 0;
  const exchangeRuns = repeat(opts, () => {
    const x = a.create(1);
    const y = a.create(2);
    const lx = replayClamped(a, x, first, 0);
    const ly = replayClamped(a, y, second, 0);
    a.commit?.(x);
    a.commit?.(y);
    gc();
    t = performance.now();
    const vx = a.version(x);
    const vy = a.version(y);
    const toY = a.encodeSince(x, vy);
    const toX = a.encodeSince(y, vx);
    a.merge(y, toY);
    a.merge(x, toX);
    const sx = a.toString(x);
    const sy = a.toString(y);
    const ms = performance.now() - t;
    check(`${a.name} concurrent`, sy, sx);
    // The replicas delete only their own text, so the merged text holds both in full.
    if (sx.length !== lx + ly) throw new Error(`${a.name} concurrent: length ${sx.length}, expected ${lx + ly}`);
    exchanged = [toY.length, toX.length];
    mergedLength = sx.length;
    return ms;
  });

  return {
    replayMs: median(replayRunsMs),
    replayRunsMs,
    coldReplayMs,
    memoryBytes: heapBytes + offHeapBytes,
    heapBytes,
    offHeapBytes,
    firstOffHeapBytes,
    encodings,
    updateBytes: update.length,
    mergeMs: median(mergeRuns),
    concurrent: { txnsEach: q, bytes: exchanged, exchangeMs: median(exchangeRuns), length: mergedLength },
  };
}
