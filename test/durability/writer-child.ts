/**
 * Child process of sqlite-kill.test.ts: commits one document per write transaction, forever,
 * and prints `ack <n>` only after write() has resolved, so every acked n must survive SIGKILL.
 * Document n is c/d<n> at seq n with state = UTF-8 of `state of d<n>`.
 * Usage: node --import tsx writer-child.ts <store-file>
 */
import { openSqliteStorage } from '../../src/storage/sqlite/index.js';

async function main(file: string): Promise<void> {
  const storage = openSqliteStorage(file);
  const encoder = new TextEncoder();
  for (let n = 1; ; n++) {
    const state = encoder.encode(`state of d${n}`);
    await storage.write((tx) => tx.putDoc({ collection: 'c', id: `d${n}`, seq: n, state }));
    process.stdout.write(`ack ${n}\n`);
    // The write loop alone never yields to the event loop; let it run now and then.
    if (n % 64 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write('usage: writer-child.ts <store-file>\n');
  process.exit(2);
}
main(file).catch((e: unknown) => {
  process.stderr.write(`writer-child failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
