/**
 * polyarch/client: the browser-safe SDK entry. Storage here is 'memory' or a Storage you
 * pass; the Node entry (`polyarch`) adds SQLite files.
 */
import { openMemoryStorage } from '../storage/memory/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { openDatabase } from './database.js';
import type { OpenOptions, Database } from './database.js';

export { Collection, Database } from './database.js';
export type * from './database.js';
export { DbError, ConflictError, ErrorCode, isDbError } from '../shared/errors.js';
export { memoryConnectionPair } from '../transport/memory/index.js';

/**
 * Opens an embedded leader in a page or a process.
 * @example
 * import { openReplica } from 'polyarch/client';
 * const db = await openReplica({ storage: 'memory' });
 * await db.collection('notes').put('n1', { text: 'hello' });
 */
export function openReplica(options: OpenOptions): Promise<Database> {
  return openDatabase(options, async (spec) => {
    if (spec === 'memory') return openMemoryStorage();
    throw new DbError(
      ErrorCode.invalidInput,
      `storage ${JSON.stringify(spec)} is not available in this entry: use 'memory'`,
    );
  });
}
