import 'fake-indexeddb/auto';
import { IDBFactory } from 'fake-indexeddb';
import { describe, expect, it } from 'vitest';
import { DbError, ErrorCode } from '../../shared/index.js';
import { FakeWebLocks } from '../../../test/support/fake-web-locks.js';
import { describeStorageContract } from '../contract.test-suite.js';
import type { Storage } from '../storage.js';
import { openIndexedDbStorage } from './index.js';

// One fresh factory per store: tests never see each other's databases. Reopening a store uses
// the factory it was opened with, as a page reload keeps the browser's databases.
const factories = new WeakMap<Storage, IDBFactory>();
async function open(indexedDB = new IDBFactory()): Promise<Storage> {
  const s = await openIndexedDbStorage('contract', { indexedDB, locks: null });
  factories.set(s, indexedDB);
  return s;
}

describeStorageContract(
  'indexeddb',
  () => open(),
  (closed) => open(factories.get(closed)),
);

const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);

async function errorOf(p: Promise<unknown>): Promise<DbError> {
  const e: unknown = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(DbError);
  return e as DbError;
}

describe('indexeddb storage', () => {
  it('commits a write whose callback awaits a macrotask between its changes, all together', async () => {
    // IndexedDB commits an idle transaction by itself: a transaction held open across this
    // await would commit the first put alone.
    const indexedDB = new IDBFactory();
    const s = await open(indexedDB);
    const seen: string[] = [];
    const writing = s.write(async (tx) => {
      tx.putDoc({ collection: 'c', id: 'a', seq: 1, state: bytes(1) });
      await new Promise((resolve) => setTimeout(resolve, 0));
      tx.putMeta('m', bytes(2));
      await new Promise((resolve) => setTimeout(resolve, 0));
      tx.putLink(1, 2);
      tx.setCheckpoint('p', 3);
      return 'done';
    });
    // Nothing shows through a second connection until the callback has finished.
    const other = await openIndexedDbStorage('contract', { indexedDB, locks: null });
    seen.push(labelsOf(await other.read((tx) => tx.feed(0, 10))));
    expect(await writing).toBe('done');
    seen.push(labelsOf(await other.read((tx) => tx.feed(0, 10))));
    expect(seen).toEqual(['', 'c/a@1']);
    expect(
      await other.read(async (tx) => [
        await tx.getMeta('m'),
        await tx.linkedThrough(0, 5),
        await tx.getCheckpoint('p'),
      ]),
    ).toEqual([bytes(2), 2, 3]);
    await Promise.all([s.close(), other.close()]);
  });

  it('a write that throws after awaiting a macrotask leaves IndexedDB untouched', async () => {
    const indexedDB = new IDBFactory();
    const s = await open(indexedDB);
    await s.write((tx) => tx.putMeta('m', bytes(1)));
    const boom = new Error('boom');
    await expect(
      s.write(async (tx) => {
        tx.putMeta('m', bytes(2));
        tx.putDoc({ collection: 'c', id: 'a', seq: 1, state: bytes(1) });
        await new Promise((resolve) => setTimeout(resolve, 0));
        throw boom;
      }),
    ).rejects.toBe(boom);
    await s.close();
    const again = await open(indexedDB);
    expect(await again.read(async (tx) => [await tx.getMeta('m'), await tx.feed(0, 10)])).toEqual([bytes(1), []]);
    await again.close();
  });

  it('holds the store under a Web Lock: a second opener fails with unavailable until the first closes', async () => {
    const indexedDB = new IDBFactory();
    const locks = new FakeWebLocks();
    const first = await openIndexedDbStorage('held', { indexedDB, locks: locks.tab() });
    expect(locks.holder('polyarch-idb:held')).toBeDefined();
    const error = await errorOf(openIndexedDbStorage('held', { indexedDB, locks: locks.tab() }));
    expect(error.code).toBe(ErrorCode.unavailable);
    expect(error.message).toMatch(/open in another tab/);
    await first.write((tx) => tx.putMeta('m', bytes(1)));
    await first.close();
    expect(locks.holder('polyarch-idb:held')).toBeUndefined();
    const second = await openIndexedDbStorage('held', { indexedDB, locks: locks.tab() });
    expect(await second.read((tx) => tx.getMeta('m'))).toEqual(bytes(1));
    await second.close();
  });

  it('rejects a bad store name with invalid_name and a missing IndexedDB with unavailable', async () => {
    for (const name of ['', 'a/b', 'x'.repeat(65), 'sp ace', 42 as unknown as string]) {
      expect((await errorOf(openIndexedDbStorage(name, { locks: null }))).code).toBe(ErrorCode.invalidName);
    }
    const noIdb = { open: undefined } as unknown as IDBFactory;
    const error = await errorOf(openIndexedDbStorage('ok', { indexedDB: noIdb, locks: null }));
    expect(error.code).toBe(ErrorCode.unavailable);
  });

  it('steps aside when the database is deleted elsewhere: later transactions fail with unavailable', async () => {
    const indexedDB = new IDBFactory();
    const s = await open(indexedDB);
    await s.write((tx) => tx.putMeta('m', bytes(1)));
    await new Promise<void>((resolve, reject) => {
      const request = indexedDB.deleteDatabase('polyarch:contract');
      request.onsuccess = () => resolve();
      request.onerror = () => reject(request.error);
    });
    expect((await errorOf(s.read((tx) => tx.getMeta('m')))).code).toBe(ErrorCode.unavailable);
    expect((await errorOf(s.write((tx) => tx.putMeta('m', bytes(2))))).code).toBe(ErrorCode.unavailable);
    await s.close();
  });

  it('names itself indexeddb:NAME', async () => {
    const s = await open();
    expect(s.name).toBe('indexeddb:contract');
    await s.close();
  });
});

function labelsOf(rows: readonly { collection: string; id: string; seq: number }[]): string {
  return rows.map((r) => `${r.collection}/${r.id}@${r.seq}`).join(',');
}
