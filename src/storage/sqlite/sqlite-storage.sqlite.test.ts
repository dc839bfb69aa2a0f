import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { DbError, ErrorCode } from '../../shared/index.js';
import { describeStorageContract } from '../contract.test-suite.js';
import type { Storage } from '../storage.js';
import { SQLITE_SCHEMA_VERSION, SqliteStorage, openSqliteStorage } from './index.js';

const dir = mkdtempSync(join(tmpdir(), 'polyarch-sqlite-'));
let files = 0;
const nextFile = (): string => join(dir, `store-${++files}.db`);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function pathOf(s: Storage): string {
  if (!(s instanceof SqliteStorage)) throw new Error('not a SqliteStorage');
  return s.path;
}

describeStorageContract(
  'sqlite file',
  () => openSqliteStorage(nextFile()),
  (closed) => openSqliteStorage(pathOf(closed)),
);
describeStorageContract('sqlite file, synchronous full', () => openSqliteStorage(nextFile(), { synchronous: 'full' }));
describeStorageContract('sqlite :memory:', () => openSqliteStorage(':memory:'));

function openError(path: string): DbError {
  try {
    openSqliteStorage(path);
  } catch (e) {
    if (e instanceof DbError) return e;
    throw e;
  }
  throw new Error(`opening ${path} unexpectedly succeeded`);
}

describe('sqlite storage', () => {
  it('refuses a second open of a store that is already open, at once and with a clear error', async () => {
    const path = nextFile();
    const first = openSqliteStorage(path);
    await first.write((tx) => tx.putMeta('m', new Uint8Array([1])));
    const started = performance.now();
    const error = openError(path);
    expect(performance.now() - started).toBeLessThan(1_000);
    expect(error.code).toBe(ErrorCode.invalidInput);
    expect(error.message).toMatch(/in use by another process/);
    // The failed open left the first one working.
    await first.write((tx) => tx.putMeta('m', new Uint8Array([2])));
    expect(await first.read((tx) => tx.getMeta('m'))).toEqual(new Uint8Array([2]));
    await first.close();
    const second = openSqliteStorage(path);
    expect(await second.read((tx) => tx.getMeta('m'))).toEqual(new Uint8Array([2]));
    await second.close();
  });

  it('holds the lock from the moment it opens, before any transaction', async () => {
    const path = nextFile();
    const first = openSqliteStorage(path);
    expect(openError(path).code).toBe(ErrorCode.invalidInput);
    await first.close();
  });

  it('stamps a new store with the current schema version and reopens it', async () => {
    const path = nextFile();
    await openSqliteStorage(path).close();
    const raw = new Database(path);
    expect(raw.pragma('user_version', { simple: true })).toBe(SQLITE_SCHEMA_VERSION);
    raw.close();
    await openSqliteStorage(path).close();
  });

  it('refuses to open a store written by a newer schema version', () => {
    const path = nextFile();
    const raw = new Database(path);
    raw.pragma(`user_version = ${SQLITE_SCHEMA_VERSION + 1}`);
    raw.close();
    const error = openError(path);
    expect(error.code).toBe(ErrorCode.invalidInput);
    expect(error.message).toMatch(/newer than this polyarch supports/);
  });

  it('refuses a file that is not a SQLite database with a corrupt error', () => {
    const path = nextFile();
    writeFileSync(path, 'this is not a database, only text long enough to fill a header. '.repeat(20));
    expect(openError(path).code).toBe(ErrorCode.corrupt);
  });

  it('names itself after its file', async () => {
    const path = nextFile();
    const s = openSqliteStorage(path);
    expect(s.name).toBe(`sqlite:${path}`);
    await s.close();
  });

  it('rolls back a write whose callback throws, leaving the connection outside any transaction', async () => {
    const s = openSqliteStorage(nextFile());
    await expect(
      s.write((tx) => {
        tx.putDoc({ collection: 'c', id: 'a', seq: 1, state: new Uint8Array([1]) });
        throw new Error('no');
      }),
    ).rejects.toThrow('no');
    // A BEGIN left open would make this one fail with "cannot start a transaction within a transaction".
    await s.write((tx) => tx.putDoc({ collection: 'c', id: 'b', seq: 2, state: new Uint8Array([2]) }));
    expect((await s.read((tx) => tx.feed(0, 10))).map((r) => r.id)).toEqual(['b']);
    await s.close();
  });
});

describe('opening a store in a directory that does not exist (regression)', () => {
  it('fails with a DbError that names the path, not a TypeError', async () => {
    const { openSqliteStorage: open } = await import('./sqlite-storage.js');
    const { DbError: E } = await import('../../shared/errors.js');
    const path = '/nonexistent-polyarch-dir/x/polyarch.db';
    let err: unknown;
    try {
      open(path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(E);
    expect((err as Error).message).toContain(path);
  });
});
