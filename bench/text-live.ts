/**
 * bench:text-live: typing through replicas. Replica A types the first --edits edits of the
 * automerge-paper trace into `db.text()`, one edit per event-loop turn (as a person types),
 * while a live session streams its changes to replica B. It reports what a keystroke costs:
 * edits per second at A (each commit durable, on memory and on SQLite), storage transactions per
 * edit, bytes sent to B per edit, the size of the stored document against its snapshot, and how long B takes
 * to show the final text after the last edit. B's text must equal the trace's.
 *
 * Two pacings: 'per turn' types as fast as the loop goes, one edit per event-loop turn, so edits
 * made while a commit runs are coalesced into the next one; 'per commit' waits for each edit's
 * commit before the next, the cost of a slow typist's every keystroke.
 *
 * Usage: npm run bench:text-live [-- --edits 10000 --no-write]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openReplica, memoryConnectionPair } from '../src/index.js';
import type { Connection } from '../src/index.js';
import { encodeRecord, isTextState, textEntryInfo } from '../src/core/index.js';
import { loadTrace } from './text/trace.js';
import { fmt, machine, printTable, writeResults } from './support.js';

const { values: args } = parseArgs({
  options: { edits: { type: 'string' }, 'no-write': { type: 'boolean', default: false } },
});
const limit = Number(args.edits ?? 10_000);

/** A connection that counts the bytes it sends. */
function counting(conn: Connection): Connection & { bytes: number } {
  const c = {
    bytes: 0,
    send(frame: Uint8Array): boolean {
      c.bytes += frame.length;
      return conn.send(frame);
    },
    close: (code: string, message: string) => conn.close(code, message),
    onFrame: (l: (f: Uint8Array) => void) => conn.onFrame(l),
    onClose: (l: (i: { code: string; message: string }) => void) => conn.onClose(l),
  };
  return c;
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

type Mode = 'per turn' | 'per commit';

async function run(storage: 'memory' | 'sqlite', mode: Mode) {
  const trace = loadTrace('automerge-paper', limit);
  const dir = mkdtempSync(join(tmpdir(), 'polyarch-text-live-'));
  const spec = (id: string) => (storage === 'memory' ? 'memory' : join(dir, `${id}.db`));
  const a = await openReplica({ id: 'a', storage: spec('a') });
  const b = await openReplica({ id: 'b', storage: spec('b') });
  try {
    const [ca, cb] = memoryConnectionPair();
    const sent = counting(ca);
    a.connect(sent);
    b.connect(cb);
    const ta = a.text('docs', 'paper');
    const tb = b.text('docs', 'paper');
    await Promise.all([ta.ready, tb.ready]);
    const seq0 = a.status().seq;
    const t0 = performance.now();
    let edits = 0;
    for (const txn of trace.txns) {
      for (const [pos, del, ins] of txn) {
        if (del > 0) ta.delete(pos, del);
        if (ins.length > 0) ta.insert(pos, ins);
        edits++;
      }
      // 'per turn': as fast as the loop goes, one edit per turn (edits coalesce while a commit
      // runs); 'per commit': each edit committed alone, as a slow typist's keystrokes are.
      if (mode === 'per turn') await turn();
      else await ta.flush();
    }
    await ta.flush();
    const typed = performance.now() - t0;
    const t1 = performance.now();
    while (tb.toString() !== trace.endContent) {
      if (performance.now() - t1 > 60_000) throw new Error('B did not converge in 60 s');
      await new Promise((r) => setTimeout(r, 1));
    }
    const converge = performance.now() - t1;
    if (ta.toString() !== trace.endContent) throw new Error('A does not hold the trace text');
    const commits = a.status().seq - seq0;
    const state = await a.replica.getState('docs', 'paper');
    if (state === undefined || !isTextState(state)) throw new Error('no text state');
    const stored = encodeRecord(state).length;
    let snapshot = 0;
    for (const s of state.siblings) {
      const info = textEntryInfo(s);
      if (info.kind === 'snapshot') snapshot = Math.max(snapshot, info.payload.length);
    }
    return {
      storage,
      mode,
      edits,
      'edits/s': fmt(edits / (typed / 1000)),
      'commits/edit': fmt(commits / edits, 2),
      'bytes sent/edit': fmt(sent.bytes / edits, 1),
      'stored KiB': fmt(stored / 1024, 1),
      'snapshot KiB': fmt(snapshot / 1024, 1),
      'entries held': state.siblings.length,
      'B caught up ms': fmt(converge, 1),
    };
  } finally {
    await a.close();
    await b.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A burst (a paste, a script) in one turn: one commit, however many edits. */
async function burst() {
  const a = await openReplica({ id: 'a', storage: 'memory' });
  try {
    const t = a.text('docs', 'burst');
    await t.ready;
    const seq0 = a.status().seq;
    for (let i = 0; i < 1000; i++) t.insert(i, 'x');
    await t.flush();
    return a.status().seq - seq0;
  } finally {
    await a.close();
  }
}

const rows = [];
for (const storage of ['memory', 'sqlite'] as const)
  for (const mode of ['per turn', 'per commit'] as const) rows.push(await run(storage, mode));
console.log(
  `\nbench:text-live: automerge-paper, first ${fmt(limit)} transactions typed one per turn at A, streamed to B\n`,
);
printTable(rows);
const burstCommits = await burst();
console.log(`\n1,000 edits in one turn: ${burstCommits} commit(s)`);
if (!args['no-write'] && args.edits === undefined) {
  const file = writeResults('text-live', { date: new Date().toISOString(), machine: machine(), rows, burstCommits });
  console.log(`\nresults: ${file}`);
}
