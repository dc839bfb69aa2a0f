/**
 * Runs one replication session (session.ts) between a Replica and a Connection: decodes
 * frames into events, runs the effects the state machine asks for, and feeds the results
 * back as events. Everything it decides comes from step(); it only does the I/O.
 */
import { CausalContext } from '../core/index.js';
import type { Env } from '../env/env.js';
import { decodeMessage, encodeMessage } from '../protocol/index.js';
import type { Connection, CloseInfo } from '../transport/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import type { Replica } from './replica.js';
import { decodeContext, encodeContext } from './replica.js';
import { initialSession, step } from './session.js';
import type { Effect, SessionEvent, SessionState } from './session.js';

export interface SessionOptions {
  cluster?: string;
  /** Unacked batches in flight (default 4). */
  window?: number;
  /** Documents per batch, roughly (default 500): a batch never splits an atomic change. */
  batchDocs?: number;
  env: Env;
}

export interface SessionInfo {
  peer: string | null;
  phase: SessionState['phase'];
  checkpoint: number;
  sentBatches: number;
  receivedBatches: number;
  closeReason: CloseInfo | null;
}

export class SessionDriver {
  private state: SessionState;
  private peerContext = new CausalContext();
  private unsubscribe: (() => void) | undefined;
  private changePending = false;
  private readonly batchDocs: number;
  private readonly closeListeners: ((info: CloseInfo) => void)[] = [];
  private readonly idleListeners: (() => void)[] = [];
  /** Documents received in batches and found new here: a measure of what replication re-sent. */
  docsReceived = 0;
  docsRecorded = 0;

  constructor(
    private readonly replica: Replica,
    private readonly conn: Connection,
    private readonly options: SessionOptions,
  ) {
    this.state = initialSession({
      self: replica.id,
      cluster: options.cluster ?? 'default',
      window: options.window ?? 4,
    });
    this.batchDocs = options.batchDocs ?? 500;
  }

  start(): void {
    this.conn.onFrame((frame) => this.onFrame(frame));
    this.conn.onClose((info) => this.onClosed(info));
    this.unsubscribe = this.replica.subscribe(() => this.onLocalChange());
    this.dispatch({
      type: 'start',
      head: this.replica.seq,
      context: encodeContext(this.replica.context()),
      challenge: this.options.env.random.bytes(16),
    });
  }

  info(): SessionInfo {
    const s = this.state;
    return {
      peer: s.peer,
      phase: s.phase,
      checkpoint: s.checkpoint,
      sentBatches: s.sentBatches,
      receivedBatches: s.receivedBatches,
      closeReason: s.closeReason,
    };
  }

  /** True when nothing is in flight either way: all sent batches acked, none waiting to apply. */
  get idle(): boolean {
    const s = this.state;
    return (
      s.phase === 'open' && !s.reading && !s.applying && s.inflight === 0 && s.inbox.length === 0 && s.cursor >= s.head
    );
  }

  onClose(listener: (info: CloseInfo) => void): void {
    this.closeListeners.push(listener);
  }

  close(code = 'closed', message = 'session closed by this replica'): void {
    this.dispatch({ type: 'failed', code, message });
  }

  private onFrame(frame: Uint8Array): void {
    let message;
    try {
      message = decodeMessage(frame);
    } catch (e) {
      this.dispatch({ type: 'failed', code: ErrorCode.protocol, message: (e as Error).message });
      return;
    }
    this.dispatch({ type: 'received', message });
  }

  private onClosed(info: CloseInfo): void {
    this.dispatch({ type: 'disconnected' });
    this.unsubscribe?.();
    for (const l of this.closeListeners.splice(0)) l(this.state.closeReason ?? info);
  }

  /** Many commits in one turn become one local-change event. */
  private onLocalChange(): void {
    if (this.changePending) return;
    this.changePending = true;
    queueMicrotask(() => {
      this.changePending = false;
      this.dispatch({ type: 'local-change', head: this.replica.seq });
    });
  }

  private dispatch(ev: SessionEvent): void {
    const { state, effects } = step(this.state, ev);
    this.state = state;
    for (const e of effects) this.run(e);
    if (this.idle) for (const l of this.idleListeners) l();
  }

  private fail(e: unknown): void {
    const code = e instanceof DbError ? e.code : 'internal';
    const message = e instanceof Error ? e.message : String(e);
    if (!(e instanceof DbError)) this.options.env.logger.log('error', 'replication session failed', { error: message });
    this.dispatch({ type: 'failed', code, message });
  }

  private run(e: Effect): void {
    switch (e.type) {
      case 'send':
        this.conn.send(encodeMessage(e.message));
        return;
      case 'peer-known': {
        try {
          this.peerContext = decodeContext(e.context);
        } catch (err) {
          this.fail(err);
          return;
        }
        this.replica.checkpoint(e.peer).then(
          (checkpoint) => this.dispatch({ type: 'checkpoint-loaded', checkpoint }),
          (err: unknown) => this.fail(err),
        );
        return;
      }
      case 'read':
        this.replica.readBatch(e.afterSeq, this.batchDocs, this.peerContext).then(
          (batch) => this.dispatch({ type: 'batch-read', batch }),
          (err: unknown) => this.fail(err),
        );
        return;
      case 'apply': {
        const { batch } = e;
        const peer = this.state.peer as string;
        for (const c of batch.changes) this.docsReceived += c.docs.length;
        this.replica.applyRemote(batch.changes, { peer, toSeq: batch.toSeq, context: batch.context }).then(
          (result) => {
            this.docsRecorded += result.recorded;
            this.peerContext.join(result.learned);
            this.dispatch({ type: 'batch-applied', id: batch.id, toSeq: batch.toSeq });
          },
          (err: unknown) => this.fail(err),
        );
        return;
      }
      case 'close':
        this.unsubscribe?.();
        this.conn.close(e.code, e.message);
        return;
    }
  }
}
