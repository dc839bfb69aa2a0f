// The PouchDB packages ship no types of their own; bench:compare uses this much of them.
declare module 'pouchdb-core' {
  interface Doc {
    _id: string;
    _rev?: string;
    [key: string]: unknown;
  }
  interface Emitter {
    on(event: string, listener: (arg: never) => void): this;
    cancel(): void;
  }
  interface ReplicationResult {
    ok: boolean;
    docs_written: number;
    errors: unknown[];
  }
  export interface Database {
    bulkDocs(docs: Doc[]): Promise<unknown[]>;
    info(): Promise<{ doc_count: number; update_seq: number | string }>;
    changes(options: { live: true; since: 'now' | number }): Emitter;
    close(): Promise<void>;
  }
  export interface PouchDBStatic {
    new (name: string, options?: Record<string, unknown>): Database;
    plugin(plugin: unknown): PouchDBStatic;
    defaults(options: Record<string, unknown>): PouchDBStatic;
    replicate(
      source: string | Database,
      target: string | Database,
      options?: Record<string, unknown>,
    ): Promise<ReplicationResult> & Emitter;
    sync(a: string | Database, b: string | Database, options?: Record<string, unknown>): Emitter;
  }
  const PouchDB: PouchDBStatic;
  export default PouchDB;
}
declare module 'pouchdb-adapter-memory' {
  const plugin: unknown;
  export default plugin;
}
declare module 'pouchdb-adapter-leveldb' {
  const plugin: unknown;
  export default plugin;
}
declare module 'pouchdb-adapter-http' {
  const plugin: unknown;
  export default plugin;
}
declare module 'pouchdb-replication' {
  const plugin: unknown;
  export default plugin;
}
declare module 'express-pouchdb' {
  import type { PouchDBStatic } from 'pouchdb-core';
  import type { RequestListener } from 'node:http';
  function expressPouchDB(PouchDB: PouchDBStatic, options?: Record<string, unknown>): RequestListener;
  export default expressPouchDB;
}
