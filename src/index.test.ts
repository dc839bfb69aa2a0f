/**
 * The Node entry's storage specs: 'indexeddb:NAME' is refused with a clear error instead of
 * becoming a SQLite file of that name; file paths that merely mention IndexedDB still open.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, openReplica } from './index.js';
import { dbErrorOfPromise } from '../test/support/errors.js';

const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('openReplica from the Node entry', () => {
  it("refuses 'indexeddb:NAME' with invalid_input and creates no file", async () => {
    const err = await dbErrorOfPromise(openReplica({ id: 'laptop', storage: 'indexeddb:notes' }));
    expect(err.code).toBe(ErrorCode.invalidInput);
    expect(err.message).toContain('IndexedDB is for browsers');
    expect(err.message).toContain("'memory'");
    expect(err.message).toContain("'polyarch/client'");
    expect(existsSync('indexeddb:notes')).toBe(false);
  });

  it('refuses an indexeddb: spec with no name the same way', async () => {
    const err = await dbErrorOfPromise(openReplica({ storage: 'indexeddb:' }));
    expect(err.code).toBe(ErrorCode.invalidInput);
    expect(err.message).toContain('IndexedDB is for browsers');
  });

  it('still opens a SQLite file whose path mentions indexeddb', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'polyarch-node-entry-'));
    dirs.push(dir);
    const file = join(dir, 'indexeddb-notes.db');
    const db = await openReplica({ id: 'laptop', storage: file });
    try {
      await db.collection('notes').put('n1', { text: 'hello' });
      expect((await db.collection('notes').get('n1'))?.value).toEqual({ text: 'hello' });
    } finally {
      await db.close();
    }
    expect(existsSync(file)).toBe(true);
  });
});
