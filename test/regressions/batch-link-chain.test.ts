/**
 * Regression (found by the simulator, seeds 267 and 39 of sim-seeds.json): an atomic batch is
 * shipped half when one of its documents was rewritten twice. The first rewrite moves the
 * document out of the batch's group and links the batch's seq to it; the second moves it
 * from a seq that is not a group, so no link follows it, and a peer that pulls in small
 * batches commits the rest of the batch without it. G4 says a batch appears atomically
 * everywhere, even after one of its documents was rewritten later.
 */
import { describe, expect, it } from 'vitest';
import { seededEnv } from '../../src/env/index.js';
import { Replica } from '../../src/replication/index.js';
import { openMemoryStorage } from '../../src/storage/memory/index.js';

describe('an atomic batch whose document was rewritten twice', () => {
  it('never reaches a peer half applied, whatever the batch size the peer pulls with', async () => {
    const a = await Replica.open({ storage: openMemoryStorage(), id: 'a', env: seededEnv(1) });
    const b = await Replica.open({ storage: openMemoryStorage(), id: 'b', env: seededEnv(2) });
    await a.write([
      { type: 'put', collection: 'c', id: 'x', value: 1 },
      { type: 'put', collection: 'c', id: 'y', value: 1 },
    ]); // seq 1: the group {x, y}
    await a.put('c', 'y', 2); // seq 2: y leaves the group; link 1 -> 2
    await a.put('c', 'y', 3); // seq 3: y moves again, and nothing links 1 (or 2) to 3
    let after = 0;
    for (let round = 0; round < 10 && after < a.seq; round++) {
      const batch = await a.readBatch(after, 1, b.context());
      await b.applyRemote(batch.changes, { peer: 'a', toSeq: batch.toSeq, context: batch.context });
      const x = await b.get('c', 'x');
      const y = await b.get('c', 'y');
      // Once x of the batch shows, y must show the batch's write or a later one.
      if (x !== null) expect(y, `after pulling through seq ${batch.toSeq}, b shows x but not y`).not.toBeNull();
      after = batch.toSeq;
    }
    expect((await b.get('c', 'y'))?.value).toBe(3);
  });
});
