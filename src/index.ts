/**
 * polyarch: the Node entry of the SDK. Everything of polyarch/client, plus SQLite storage
 * for file paths (`storage: './data/eu.db'`).
 */
import { WebSocket } from 'ws';
import { openMemoryStorage } from './storage/memory/index.js';
import { setDefaultWebSocket } from './client/sync.js';
import { openDatabase } from './client/database.js';
import { DbError, ErrorCode } from './shared/errors.js';
import type { Database, OpenOptions } from './client/database.js';

export { Collection, Database } from './client/database.js';
export type * from './client/database.js';
export { DbError, ConflictError, ErrorCode, isDbError } from './shared/errors.js';
export { memoryConnectionPair } from './transport/memory/index.js';
export { timeOfId } from './core/time-id.js';
export type { Storage } from './storage/index.js';
export type { Connection } from './transport/index.js';

// Node 20 has no global WebSocket: db.sync uses ws's class unless given another.
setDefaultWebSocket(WebSocket);

/**
 * Opens an embedded leader. `storage` is `'memory'`, a SQLite file path, or a Storage;
 * `'indexeddb:NAME'` is refused with `invalid_input` (IndexedDB lives in browsers: `polyarch/client`).
 * @example
 * import { openReplica } from 'polyarch';
 * const db = await openReplica({ id: 'laptop', storage: './laptop.db' });
 * await db.collection('events').put('standup', { at: '09:30' });
 */
export function openReplica(options: OpenOptions): Promise<Database> {
  return openDatabase(options, async (spec) => {
    if (spec === 'memory') return openMemoryStorage();
    // Otherwise 'indexeddb:notes' would quietly become a SQLite file of that name in the working directory.
    if (spec.startsWith('indexeddb:')) {
      throw new DbError(
        ErrorCode.invalidInput,
        `storage ${JSON.stringify(spec)}: IndexedDB is for browsers: use a file path or 'memory' in Node, ` +
          "or import from 'polyarch/client' in a page",
      );
    }
    const { openSqliteStorage } = await import('./storage/sqlite/index.js');
    return openSqliteStorage(spec);
  });
}
