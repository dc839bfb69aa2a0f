/**
 * changesSince(vector) reads the feed from where the vector's knowledge ends (seq-index.ts),
 * so its cost follows what it returns, not the size of the store; and what it returns is
 * still everything the vector lacks, also after a restart and with writes from many origins.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { openReplica } from '../index.js';
import { openMemoryStorage } from '../storage/memory/index.js';
import type { Database } from '../index.js';
import type { ReadTx, Storage } from '../storage/index.js';
import { syncAll } from '../../test/support/sdk-sync.js';

/** Counts the document rows feed reads return. */
class CountingStorage implements Storage {
  rows = 0;
  readonly name = 'counting';
  constructor(private readonly inner: Storage) {}
  read<T>(fn: (tx: ReadTx) => Promise<T> | T): Promise<T> {
    return this.inner.read((tx) =>
      fn(
        new Proxy(tx, {
          get: (target, prop, receiver) => {
            const v = Reflect.get(target, prop, receiver) as unknown;
            if (prop !== 'feedRange' && prop !== 'feed') return typeof v === 'function' ? v.bind(target) : v;
            return async (...args: unknown[]) => {
              const rows = (await (v as (...a: unknown[]) => Promise<unknown[]>).apply(target, args)) as unknown[];
              this.rows += rows.length;
              return rows;
            };
          },
        }),
      ),
    );
  }
  write: Storage['write'] = (fn) => this.inner.write(fn);
  close(): Promise<void> {
    return this.inner.close();
  }
}

const opened: Database[] = [];
afterEach(async () => {
  for (const db of opened.splice(0)) await db.close();
});

describe('changesSince(vector)', () => {
  it('reads in proportion to what the vector lacks, not to the store', async () => {
    const storage = new CountingStorage(await openMemoryStorage());
    const a = await openReplica({ storage, id: 'a' });
    const b = await openReplica({ storage: 'memory', id: 'b' });
    opened.push(a, b);
    const docs = a.collection('docs');
    for (let i = 0; i < 100; i++) {
      await a.batch(
        Array.from({ length: 50 }, (_, j) => ({
          type: 'put' as const,
          collection: 'docs',
          id: `d${i * 50 + j}`,
          value: j,
        })),
      );
    }
    for (let i = 0; i < 200; i++) await docs.put(`s${i}`, i);
    await b.applyChanges(await a.changesSince(b.vector()));
    expect(b.status().docs).toBe(5200);
    for (let i = 0; i < 3; i++) await docs.put(`new${i}`, i);
    storage.rows = 0;
    const bytes = await a.changesSince(b.vector());
    // 3 new documents; the start is sampled, so up to 64 earlier commits' rows are read too.
    expect(storage.rows).toBeLessThanOrEqual(3 + 64);
    expect((await b.applyChanges(bytes)).recorded).toBe(3);
    expect(b.status().digest).toBe(a.status().digest);
    storage.rows = 0;
    await a.changesSince(b.vector());
    expect(storage.rows).toBe(0);
  });

  it('property: whatever the writes and vectors, it returns everything the vector lacks', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ at: fc.integer({ min: 0, max: 2 }), key: fc.integer({ min: 0, max: 30 }), sync: fc.boolean() }),
          {
            maxLength: 200,
          },
        ),
        async (steps) => {
          const dbs = await Promise.all(['x', 'y', 'z'].map((id) => openReplica({ storage: 'memory', id })));
          try {
            for (const [i, s] of steps.entries()) {
              await dbs[s.at]!.collection('c').put(`k${s.key}`, i);
              if (s.sync) {
                const to = dbs[(s.at + 1) % 3]!;
                await to.applyChanges(await dbs[s.at]!.changesSince(to.vector()));
              }
            }
            await syncAll(dbs);
            expect(new Set(dbs.map((d) => d.status().digest)).size).toBe(1);
          } finally {
            for (const d of dbs) await d.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  });
});
