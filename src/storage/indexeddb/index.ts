/**
 * The IndexedDB adapter's public face: a Storage that survives page reloads. Browser-safe:
 * nothing here may import a Node built-in.
 */
export {
  INDEXEDDB_SCHEMA_VERSION,
  IndexedDbStorage,
  defaultLocks,
  openIndexedDbStorage,
  tryLock,
} from './indexeddb-storage.js';
export type { IndexedDbStorageOptions, LockManagerLike } from './indexeddb-storage.js';
