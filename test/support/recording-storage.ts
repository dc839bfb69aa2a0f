/**
 * A Storage wrapper that records every document row a committed write transaction put,
 * in commit order: tests use it to check that a replica only ever records a change that
 * moves a document up the lattice (no no-op records, no going backwards, no loops).
 */
import type { DocRow, Storage, WriteTx } from '../../src/storage/index.js';

export interface RecordedPut {
  collection: string;
  id: string;
  seq: number;
  /** The replicated state bytes (the row without its local flag byte). */
  state: Uint8Array;
  /** Which committed write transaction put it (0, 1, 2, ...). */
  commit: number;
}

export class RecordingStorage implements Storage {
  readonly puts: RecordedPut[] = [];
  readonly name: string;
  private commits = 0;

  constructor(private readonly inner: Storage) {
    this.name = `recording:${inner.name}`;
  }

  read: Storage['read'] = (fn) => this.inner.read(fn);

  async write<T>(fn: (tx: WriteTx) => Promise<T> | T): Promise<T> {
    const staged: RecordedPut[] = [];
    const result = await this.inner.write((tx) => {
      const wrapped: WriteTx = Object.create(tx) as WriteTx;
      wrapped.putDoc = (row: DocRow) => {
        staged.push({ collection: row.collection, id: row.id, seq: row.seq, state: row.state.slice(1), commit: -1 });
        tx.putDoc(row);
      };
      return fn(wrapped);
    });
    const commit = this.commits++;
    for (const p of staged) this.puts.push({ ...p, commit });
    return result;
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
