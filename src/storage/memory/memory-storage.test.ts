import { describe, expect, it } from 'vitest';
import { describeStorageContract } from '../contract.test-suite.js';
import { openMemoryStorage } from './index.js';

describeStorageContract('memory', () => openMemoryStorage());

describe('memory storage at scale', () => {
  it('pages a large feed quickly after many documents were rewritten', async () => {
    const s = openMemoryStorage();
    const n = 50_000;
    await s.write((tx) => {
      for (let i = 1; i <= n; i++) tx.putDoc({ collection: 'c', id: `d${i}`, seq: i, state: new Uint8Array([1]) });
    });
    // Rewrite most documents so the old seqs go dead and the index has to compact.
    await s.write((tx) => {
      for (let i = 1; i <= n - 10; i++)
        tx.putDoc({ collection: 'c', id: `d${i}`, seq: n + i, state: new Uint8Array([2]) });
    });
    const started = performance.now();
    let after = 0;
    let total = 0;
    for (;;) {
      const page = await s.read((tx) => tx.feed(after, 100));
      if (page.length === 0) break;
      total += page.length;
      after = page[page.length - 1]?.seq ?? after;
    }
    const elapsedMs = performance.now() - started;
    expect(total).toBe(n);
    // 500 pages; sorting all documents per page would take seconds.
    expect(elapsedMs).toBeLessThan(2_000);
    const tail = await s.read((tx) => tx.feed(n - 12, 3));
    expect(tail.map((r) => r.id)).toEqual(['d49991', 'd49992', 'd49993']);
    await s.close();
  });
});
