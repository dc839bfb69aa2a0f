/**
 * polyarch/client: the browser-safe SDK entry. Storage here is 'memory', 'indexeddb:NAME' or a
 * Storage you pass; the Node entry (`polyarch`) adds SQLite files.
 */
import { openMemoryStorage } from '../storage/memory/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { openDatabase } from './database.js';
import type { OpenOptions, Database } from './database.js';
import { openIndexedDbReplica } from './tabs.js';
import type { BrowserStorageOptions } from './tabs.js';

export { Collection, Database } from './database.js';
export type * from './database.js';
export { DbError, ConflictError, ErrorCode, isDbError } from '../shared/errors.js';
export { memoryConnectionPair } from '../transport/memory/index.js';
export { timeOfId } from '../core/time-id.js';
export { TabDatabase } from './tabs.js';
export type { BrowserStorageOptions, BroadcastChannelConstructor, LockManagerLike } from './tabs.js';
export { openIndexedDbStorage } from '../storage/indexeddb/index.js';

/**
 * Opens an embedded leader in a page or a process. `storage: 'indexeddb:NAME'` keeps it in
 * IndexedDB across reloads, shared by the tabs of the origin (see `BrowserStorageOptions`).
 * @example
 * import { openReplica } from 'polyarch/client';
 * const db = await openReplica({ storage: 'indexeddb:notes' });
 * await db.collection('notes').put('n1', { text: 'hello' });
 */
export function openReplica(options: OpenOptions & BrowserStorageOptions): Promise<Database> {
  if (typeof options?.storage === 'string' && options.storage.startsWith('indexeddb:')) {
    return openIndexedDbReplica(options.storage.slice('indexeddb:'.length), options);
  }
  return openDatabase(options, async (spec) => {
    if (spec === 'memory') return openMemoryStorage();
    throw new DbError(
      ErrorCode.invalidInput,
      `storage ${JSON.stringify(spec)} is not available in this entry: use 'memory' or 'indexeddb:NAME'`,
    );
  });
}
