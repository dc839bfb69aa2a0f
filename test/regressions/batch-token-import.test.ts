/**
 * Regression (found by the simulator, seed 102180 of sim-seeds.json, which fails even with
 * the links of batch-link-chain.test.ts chained): a version token read at one leader and used
 * at another lets that leader supersede a write of an atomic batch it has not received yet.
 * When the batch arrives there, that document joins to nothing, so the rest of the batch is
 * recorded without it, and nothing ties the rest to the document's row: once that row moves
 * on, a peer pulling in small batches shows part of the batch. G4 says a batch appears
 * atomically everywhere.
 */
import { describe, expect, it } from 'vitest';
import { seededEnv } from '../../src/env/index.js';
import { Replica } from '../../src/replication/index.js';
import { openMemoryStorage } from '../../src/storage/memory/index.js';

describe('an atomic batch one of whose documents a token write superseded elsewhere first', () => {
  it('never reaches a third replica half applied', async () => {
    const open = (id: string, seed: number) => Replica.open({ storage: openMemoryStorage(), id, env: seededEnv(seed) });
    const a = await open('a', 1);
    const b = await open('b', 2);
    const c = await open('c', 3);
    await a.write([
      { type: 'put', collection: 'c', id: 'x', value: 'x1' },
      { type: 'put', collection: 'c', id: 'y', value: 'y1' },
    ]);
    // A client reads x at a and writes it at b with that version: b's x now supersedes x1.
    const version = (await a.get('c', 'x'))?.version as string;
    await b.put('c', 'x', 'x2', { version });
    const all = await a.readBatch(0, 100, b.context());
    await b.applyRemote(all.changes, { peer: 'a', toSeq: all.toSeq, context: all.context });
    await b.put('c', 'x', 'x3');
    let after = 0;
    for (let round = 0; round < 10 && after < b.seq; round++) {
      const batch = await b.readBatch(after, 1, c.context());
      await c.applyRemote(batch.changes, { peer: 'b', toSeq: batch.toSeq, context: batch.context });
      const y = await c.get('c', 'y');
      const x = await c.get('c', 'x');
      // Once y1 of the batch shows, x must show the batch's x1 or a write that replaced it.
      if (y !== null) expect(x, `after pulling through seq ${batch.toSeq}, c shows y1 but no x`).not.toBeNull();
      after = batch.toSeq;
    }
    expect((await c.get('c', 'x'))?.value).toBe('x3');
  });
});
