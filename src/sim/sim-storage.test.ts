import { describe, expect, it } from 'vitest';
import { openMemoryStorage } from '../storage/memory/index.js';
import { VirtualTime } from './sim-clock.js';
import { ActivityMonitor, ReplicaLog, SimStorage } from './sim-storage.js';

const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);

function handle(durable = openMemoryStorage()): SimStorage {
  return new SimStorage(
    durable,
    new ReplicaLog(),
    new ActivityMonitor(),
    new VirtualTime(),
    {},
    {
      committed: () => undefined,
      crashRequested: () => undefined,
    },
  );
}

describe('SimStorage meta ranges and deletes', () => {
  it('passes listMeta and deleteMeta through to the durable store', async () => {
    const durable = openMemoryStorage();
    const s = handle(durable);
    await s.write((tx) => {
      tx.putMeta('tq/a/1', bytes(1));
      tx.putMeta('tq/a/2', bytes(2));
    });
    await s.write(async (tx) => {
      tx.deleteMeta('tq/a/1');
      expect((await tx.listMeta('tq/a/', undefined, 10)).map((r) => r.key)).toEqual(['tq/a/2']);
    });
    const again = handle(durable);
    expect(await again.read((tx) => tx.listMeta('tq/', undefined, 10))).toEqual([{ key: 'tq/a/2', value: bytes(2) }]);
  });

  it('a delete in a transaction that a crash fenced never reaches the store', async () => {
    const durable = openMemoryStorage();
    const s = handle(durable);
    await s.write((tx) => tx.putMeta('tq/a/1', bytes(1)));
    const fencedWrite = s.write(async (tx) => {
      tx.deleteMeta('tq/a/1');
      s.fence(); // the process dies before its commit
    });
    await expect(fencedWrite).rejects.toMatchObject({ code: 'closed' });
    const next = handle(durable);
    expect(await next.read((tx) => tx.getMeta('tq/a/1'))).toEqual(bytes(1));
  });
});
