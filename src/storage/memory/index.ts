/**
 * The memory adapter's public face: a Storage that lives and dies with the process.
 * Browser-safe: nothing here may import a Node built-in.
 */
export { MemoryStorage, openMemoryStorage } from './memory-storage.js';
