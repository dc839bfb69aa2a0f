/** The PouchDB build bench:compare uses, in its child processes and to seed a store on disk. */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import PouchDB from 'pouchdb-core';
import type { PouchDBStatic } from 'pouchdb-core';
import httpAdapter from 'pouchdb-adapter-http';
import leveldbAdapter from 'pouchdb-adapter-leveldb';
import memoryAdapter from 'pouchdb-adapter-memory';
import replication from 'pouchdb-replication';

export type PouchAdapter = 'memory' | 'leveldb';

/**
 * PouchDB with one adapter: `memory` (memdown) or `leveldb` (leveldown, whose prebuilt
 * binary ships inside its npm package, so it installs with no download), databases under `dir`.
 */
export function pouchWith(adapter: string, dir: string): PouchDBStatic {
  if (adapter !== 'memory' && adapter !== 'leveldb') throw new Error(`unknown PouchDB adapter ${adapter}`);
  const base = PouchDB.plugin(httpAdapter).plugin(replication).plugin(memoryAdapter).plugin(leveldbAdapter);
  mkdirSync(dir, { recursive: true });
  return base.defaults({ adapter, prefix: dir + path.sep });
}
