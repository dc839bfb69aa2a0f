/**
 * What the replica tells the features built beside it (constraints, triggers, sequences)
 * about each commit. A hook sees every document a commit recorded, inside the transaction,
 * so it can keep its own durable bookkeeping atomic with the change (a trigger's outbox) or
 * refuse a local write before anything of it is stored (a unique constraint).
 */
import type { RecordState } from '../core/index.js';
import type { WriteTx } from '../storage/index.js';

/** One document a commit recorded: its state before (undefined when new here) and after. */
export interface RecordedChange {
  readonly collection: string;
  readonly id: string;
  readonly seq: number;
  /** 'local': a write made at this replica; 'remote': a change received from a peer. */
  readonly origin: 'local' | 'remote';
  readonly before: RecordState | undefined;
  readonly after: RecordState;
}

export interface CommitHook {
  /**
   * Inside the commit's transaction, after every document of it is recorded. May read and
   * write through `tx`. Throwing aborts the whole commit: only ever do so for local writes
   * (a remote change refused here would be refused forever, and replication would stall).
   */
  beforeCommit?(tx: WriteTx, changes: readonly RecordedChange[]): Promise<void> | void;
  /** After the commit is durable. */
  committed?(changes: readonly RecordedChange[]): void;
  /** The commit failed after beforeCommit ran: drop what was derived from its changes. */
  aborted?(): void;
}
