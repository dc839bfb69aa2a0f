/**
 * The SQLite adapter's public face (Node only: it loads the better-sqlite3 native module).
 * A store file belongs to one replica in one process at a time.
 */
export { SQLITE_SCHEMA_VERSION, SqliteStorage, openSqliteStorage } from './sqlite-storage.js';
export type { SqliteStorageOptions } from './sqlite-storage.js';
