/**
 * The storage seam of the simulator. A replica's durable store (a MemoryStorage that outlives
 * crashes) is reached through a SimStorage handle per process lifetime, which
 *  - records every committed document row in commit order (the replica's ReplicaLog), the
 *    checker's view of what each replica held at every instant;
 *  - is fenced when its process crashes: a transaction not yet committed then rolls back,
 *    and nothing of the dead process reaches the store again;
 *  - lets the workload capture exactly which commit a client write made and which committed
 *    state a client read saw;
 *  - counts transactions in flight, so the simulator knows when the system is settled;
 *  - carries the hooks of storage-level mutants (mutant-catalog.ts). Without hooks it changes
 *    nothing that passes through it.
 * Every other call of a transaction (meta reads and writes, listMeta, deleteMeta: a trigger's
 * outbox) reaches the durable store's own transaction unchanged (but for a mutant's mapMeta), so a meta delete, like a put,
 * is durable exactly when its commit is and is lost with a transaction a crash fenced.
 */
import type { DocRow, ReadTx, Storage, WriteTx } from '../storage/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import type { VirtualTime } from './sim-clock.js';

export const docKey = (collection: string, id: string): string => `${collection}/${id}`;

export interface PutRecord {
  readonly key: string;
  readonly collection: string;
  readonly id: string;
  /** The replicated state as committed (the row without its local flag byte). */
  readonly state: Uint8Array;
  /** The state before this commit, if the document existed. */
  readonly prev: Uint8Array | undefined;
  /** The feed seq the row was stored at (a change event names it). */
  readonly seq: number;
}

export interface CommitRecord {
  /** Position in this replica's log. */
  readonly index: number;
  readonly atMs: number;
  readonly puts: readonly PutRecord[];
  /** Set when the transaction stored a checkpoint: a remote apply. */
  readonly checkpoint: { readonly peer: string; readonly seq: number } | undefined;
  /** True when a client write armed the capture: a local commit without it is the replica's own work. */
  readonly client: boolean;
}

/** Everything a replica's store committed, across all its process lifetimes. */
export class ReplicaLog {
  readonly commits: CommitRecord[] = [];
  /** Current state bytes per document key. */
  readonly current = new Map<string, Uint8Array>();
}

/** Storage transactions in flight across the whole simulation. */
export class ActivityMonitor {
  pending = 0;
}

export interface StorageHooks {
  /**
   * Rewrites a document row before it is stored; `remote` when the transaction applies a peer's
   * batch; `prev` is the document's committed state before the transaction (no flag byte).
   */
  mapPut?(row: DocRow, remote: boolean, prev: Uint8Array | undefined): DocRow;
  /**
   * Asked when a remote apply with documents is about to commit: true stores its checkpoint in
   * a transaction of its own, loses the documents, and crashes the replica.
   */
  loseApplyKeepCheckpoint?(): boolean;
  /**
   * Rewrites a meta value a transaction puts (a sequence's position, a trigger's outbox entry,
   * the replica's own bookkeeping); undefined drops the put, as a build that never wrote it would.
   */
  mapMeta?(key: string, value: Uint8Array): Uint8Array | undefined;
}

export interface WriteCapture {
  commit: CommitRecord | undefined;
}

export interface ReadCapture {
  readonly key: string;
  seen: boolean;
  /** The committed state the read transaction saw. */
  state: Uint8Array | undefined;
}

const crashed = (): DbError => new DbError(ErrorCode.closed, 'the replica process crashed (simulated)');

export class SimStorage implements Storage {
  readonly name = 'sim';
  private fenced = false;
  private armedWrite: WriteCapture | undefined;
  private armedRead: ReadCapture | undefined;

  constructor(
    private readonly durable: Storage,
    private readonly log: ReplicaLog,
    private readonly monitor: ActivityMonitor,
    private readonly time: VirtualTime,
    private readonly hooks: StorageHooks,
    private readonly observer: { committed(c: CommitRecord): void; crashRequested(): void },
  ) {}

  get isFenced(): boolean {
    return this.fenced;
  }

  /** The process died: nothing from this handle commits any more. */
  fence(): void {
    this.fenced = true;
  }

  /** The next write transaction started (synchronously, by the caller's next call) is captured. */
  armWrite(): WriteCapture {
    const cap: WriteCapture = { commit: undefined };
    this.armedWrite = cap;
    return cap;
  }

  armRead(key: string): ReadCapture {
    const cap: ReadCapture = { key, seen: false, state: undefined };
    this.armedRead = cap;
    return cap;
  }

  disarm(): void {
    this.armedWrite = undefined;
    this.armedRead = undefined;
  }

  read<T>(fn: (tx: ReadTx) => Promise<T> | T): Promise<T> {
    const cap = this.armedRead;
    this.armedRead = undefined;
    if (this.fenced) return Promise.reject(crashed());
    return this.track(
      this.durable.read(async (tx) => {
        if (this.fenced) throw crashed();
        if (cap !== undefined) {
          cap.seen = true;
          cap.state = this.log.current.get(cap.key);
        }
        return fn(tx);
      }),
    );
  }

  write<T>(fn: (tx: WriteTx) => Promise<T> | T): Promise<T> {
    const cap = this.armedWrite;
    this.armedWrite = undefined;
    if (this.fenced) return Promise.reject(crashed());
    return this.track(
      this.durable.write(async (tx) => {
        if (this.fenced) throw crashed();
        const rows: DocRow[] = [];
        let checkpoint: { peer: string; seq: number } | undefined;
        const wrapped = Object.create(tx) as WriteTx;
        wrapped.putDoc = (row: DocRow) => {
          rows.push(row);
          tx.putDoc(row);
        };
        wrapped.setCheckpoint = (peer: string, seq: number) => {
          checkpoint = { peer, seq };
          tx.setCheckpoint(peer, seq);
        };
        const mapMeta = this.hooks.mapMeta;
        if (mapMeta !== undefined) {
          wrapped.putMeta = (key: string, value: Uint8Array) => {
            const mapped = mapMeta(key, value);
            if (mapped !== undefined) tx.putMeta(key, mapped);
          };
        }
        const result = await fn(wrapped);
        if (this.fenced) throw crashed();
        const remote = checkpoint !== undefined;
        let stored = rows;
        if (this.hooks.mapPut !== undefined) {
          const map = this.hooks.mapPut;
          stored = rows.map((row) => {
            const mapped = map(row, remote, this.log.current.get(docKey(row.collection, row.id)));
            if (mapped !== row) tx.putDoc(mapped);
            return mapped;
          });
        }
        if (remote && rows.length > 0 && this.hooks.loseApplyKeepCheckpoint?.() === true) {
          // The mutant's order: the checkpoint alone is durable, then the process dies.
          this.fenced = true;
          const cp = checkpoint as { peer: string; seq: number };
          void this.track(
            this.durable.write((tx2) => {
              tx2.setCheckpoint(cp.peer, cp.seq);
              this.record([], cp, false);
            }),
          );
          this.observer.crashRequested();
          throw crashed();
        }
        const commit = this.record(stored, checkpoint, cap !== undefined);
        if (cap !== undefined) cap.commit = commit;
        return result;
      }),
    );
  }

  close(): Promise<void> {
    // A process lifetime ends; the durable store lives on (it is closed by nobody).
    this.fenced = true;
    return Promise.resolve();
  }

  private record(rows: readonly DocRow[], checkpoint: CommitRecord['checkpoint'], client: boolean): CommitRecord {
    const puts: PutRecord[] = [];
    for (const row of rows) {
      const key = docKey(row.collection, row.id);
      const state = row.state.slice(1);
      // A transaction may put one row twice (a mutant rewriting it): the last put wins.
      const at = puts.findIndex((p) => p.key === key);
      const prev = at >= 0 ? (puts[at] as PutRecord).prev : this.log.current.get(key);
      const put = { key, collection: row.collection, id: row.id, state, prev, seq: row.seq };
      if (at >= 0) puts[at] = put;
      else puts.push(put);
    }
    for (const p of puts) this.log.current.set(p.key, p.state);
    const commit: CommitRecord = { index: this.log.commits.length, atMs: this.time.nowMs, puts, checkpoint, client };
    this.log.commits.push(commit);
    this.observer.committed(commit);
    return commit;
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.monitor.pending++;
    return p.then(
      (v) => {
        this.monitor.pending--;
        return v;
      },
      (e: unknown) => {
        this.monitor.pending--;
        throw e;
      },
    );
  }
}
