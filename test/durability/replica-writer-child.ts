/**
 * Child process of replica-kill.test.ts: opens the SDK replica `writer` on a SQLite file and
 * writes forever through the public API, printing `ack <collection>/<id> <json value>` only
 * after the write has resolved, so every acked document must survive SIGKILL.
 * Write n (n = 1, 2, ...) is deterministic: every third one is an atomic batch of 5 documents
 * batches/b<n>-<k> (k = 1..5) with value {n, k, of: 5}; the others are a single put of
 * singles/s<n> with value {n, text}. The ack lines of a batch follow its resolution.
 * Usage: node --import tsx replica-writer-child.ts <store-file>
 */
import { openReplica } from '../../src/index.js';
import type { WriteOp } from '../../src/index.js';

// Kept in step with replica-kill.test.ts by hand: importing this file would run main().
const BATCH_DOCS = 5;
const isBatch = (n: number): boolean => n % 3 === 0;

async function main(file: string): Promise<void> {
  const db = await openReplica({ id: 'writer', storage: file });
  for (let n = 1; ; n++) {
    if (isBatch(n)) {
      const ops: WriteOp[] = [];
      for (let k = 1; k <= BATCH_DOCS; k++) {
        ops.push({ type: 'put', collection: 'batches', id: `b${n}-${k}`, value: { n, k, of: BATCH_DOCS } });
      }
      await db.batch(ops);
      let out = '';
      for (const op of ops) if (op.type === 'put') out += `ack ${op.collection}/${op.id} ${JSON.stringify(op.value)}\n`;
      process.stdout.write(out);
    } else {
      const value = { n, text: `single write number ${n}` };
      await db.collection('singles').put(`s${n}`, value);
      process.stdout.write(`ack singles/s${n} ${JSON.stringify(value)}\n`);
    }
    // The write loop alone hardly yields to the event loop; let it run now and then.
    if (n % 64 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write('usage: replica-writer-child.ts <store-file>\n');
  process.exit(2);
}
main(file).catch((e: unknown) => {
  process.stderr.write(`replica-writer-child failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
