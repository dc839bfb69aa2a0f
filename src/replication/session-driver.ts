/**
 * Runs one replication session (session.ts) between a Replica and a Connection: decodes
 * frames into events, runs the effects the state machine asks for, and feeds the results
 * back as events. Everything it decides comes from step(); it only does the I/O.
 */
import { CausalContext, everyDotIn } from '../core/index.js';
import type { Env } from '../env/env.js';
import { decodeMessage, encodeMessage } from '../protocol/index.js';
import type { Connection, CloseInfo } from '../transport/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import type { Replica } from './replica.js';
import { decodeContext, encodeContext } from './replica.js';
import { initialSession, step } from './session.js';
import type { Effect, SessionEvent, SessionState } from './session.js';
import type { PeerAuth } from './peer-auth.js';
import type { ClientCredential } from './session-access.js';
import type { MessageOf } from '../protocol/index.js';
import type { PresenceHub, PresenceMessage, PresencePort } from './presence.js';
import type { TimerHandle } from '../env/env.js';

export interface SessionOptions {
  cluster?: string;
  /** Unacked batches in flight (default 4). */
  window?: number;
  /** Documents per batch, roughly (default 500): a batch never splits an atomic change. */
  batchDocs?: number;
  /** Proof of the cluster secret, both ways; without it, any peer is accepted. */
  auth?: PeerAuth;
  /**
   * A server with client tokens sets what the connection presented (session-access.ts): a
   * session that does not prove the cluster secret then runs with that token's grant.
   */
  client?: ClientCredential;
  /**
   * Told when the peer refuses documents we sent (a server refusing writes this client's token
   * does not allow). They stay here; the peer has acked past them and will not ask again.
   */
  onRefused?: (refusal: MessageOf<'refused'>) => void;
  /**
   * A ping goes out every `heartbeatMs` (default 2,000); a session that hears nothing for
   * `deadAfterMs` (default 6,000) is closed with code `timeout`. A cut TCP link does not
   * error, it stalls: this is how a dead peer is noticed.
   */
  heartbeatMs?: number;
  deadAfterMs?: number;
  /** Told how many documents each batch sent and received carried (for metrics). */
  observer?: { sent?(docs: number): void; received?(docs: number): void; read?(rows: number): void };
  /**
   * The replica's presence hub: once the peer is authenticated, the session relays presence
   * updates both ways through it (the hub floods them to its other sessions).
   */
  presence?: PresenceHub;
  env: Env;
}

export interface SessionInfo {
  peer: string | null;
  /** The name of the client token the session runs with; null for a peer with full rights. */
  client: string | null;
  phase: SessionState['phase'];
  /** The peer's feed seq we have applied through. */
  checkpoint: number;
  /** Our feed seq the peer has acknowledged. */
  acked: number;
  /** Our changes the peer has not acknowledged yet, and how long the oldest has waited. */
  lag: { changes: number; ms: number };
  /** True once the peer pulled and everything we hold was acked at least once. */
  caughtUp: boolean;
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
  private heartbeat: TimerHandle | undefined;
  /** Our seqs that hold only states this peer sent us, ascending (see the 'read' effect). */
  private echo: number[] = [];
  private echoHead = 0;
  /** A checkpoint advanced by empty batches and not stored yet. */
  private pendingCheckpoint: number | undefined;
  private lastHeardMs = 0;
  private behindSinceMs: number | undefined;
  private wasCaughtUp = false;
  private presencePort: PresencePort | undefined;
  /** Documents received in batches and found new here: a measure of what replication re-sent. */
  docsReceived = 0;
  docsRecorded = 0;
  docsSent = 0;

  constructor(
    private readonly replica: Replica,
    private readonly conn: Connection,
    private readonly options: SessionOptions,
  ) {
    this.state = initialSession({
      self: replica.id,
      cluster: options.cluster ?? 'default',
      window: options.window ?? 4,
      ...(options.auth === undefined ? {} : { auth: options.auth }),
      ...(options.client === undefined ? {} : { client: options.client }),
    });
    this.batchDocs = options.batchDocs ?? 500;
  }

  start(): void {
    this.conn.onFrame((frame) => this.onFrame(frame));
    this.conn.onClose((info) => this.onClosed(info));
    this.unsubscribe = this.replica.subscribe(() => this.onLocalChange());
    this.lastHeardMs = this.options.env.clock.nowMs();
    this.scheduleHeartbeat();
    this.dispatch({
      type: 'start',
      head: this.replica.seq,
      context: encodeContext(this.replica.context()),
      challenge: this.options.env.random.bytes(16),
    });
  }

  info(): SessionInfo {
    const s = this.state;
    const behind = Math.max(0, this.replica.seq - s.acked);
    return {
      peer: s.peer,
      client: s.grant?.name ?? null,
      phase: s.phase,
      checkpoint: s.checkpoint,
      acked: s.acked,
      lag: {
        changes: s.pulling ? behind : 0,
        ms: this.behindSinceMs === undefined ? 0 : Math.max(0, this.options.env.clock.nowMs() - this.behindSinceMs),
      },
      caughtUp: this.wasCaughtUp,
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

  /** Stores a checkpoint that only empty batches advanced; best effort, as losing it costs only a re-read. */
  private flushCheckpoint(): void {
    const seq = this.pendingCheckpoint;
    const peer = this.state.peer;
    this.pendingCheckpoint = undefined;
    if (seq === undefined || peer === null || this.replica.isClosed) return;
    this.replica.applyRemote([], { peer, toSeq: seq }).catch(() => {});
  }

  private scheduleHeartbeat(): void {
    const every = this.options.heartbeatMs ?? 2000;
    const deadAfter = this.options.deadAfterMs ?? 6000;
    this.heartbeat = this.options.env.timers.setTimeout(() => {
      if (this.state.phase === 'closed') return;
      const silent = this.options.env.clock.nowMs() - this.lastHeardMs;
      if (silent > deadAfter) {
        this.dispatch({ type: 'failed', code: 'timeout', message: `heard nothing from the peer for ${silent} ms` });
        return;
      }
      this.conn.send(encodeMessage({ type: 'ping', nonce: this.state.nextBatchId }));
      this.scheduleHeartbeat();
    }, every);
  }

  /** Tracks how long our oldest unacknowledged change has waited, for status and metrics. */
  private trackLag(): void {
    const s = this.state;
    if (!s.pulling) return;
    if (this.replica.seq > s.acked) {
      this.behindSinceMs ??= this.options.env.clock.nowMs();
    } else {
      this.behindSinceMs = undefined;
      this.wasCaughtUp = true;
    }
  }

  private onFrame(frame: Uint8Array): void {
    this.lastHeardMs = this.options.env.clock.nowMs();
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
    this.detachPresence();
    this.heartbeat?.cancel();
    this.flushCheckpoint();
    this.dispatch({ type: 'disconnected' });
    this.unsubscribe?.();
    for (const l of this.closeListeners.splice(0)) l(this.state.closeReason ?? info);
  }

  /** Ephemeral and best effort: a frame refused by a full buffer is replaced by the next refresh. */
  private sendPresence(m: PresenceMessage): void {
    if (this.state.phase !== 'open') return;
    try {
      this.conn.send(encodeMessage(m));
    } catch (e) {
      this.options.env.logger.log('error', 'cannot send a presence update', { error: (e as Error).message });
    }
  }

  private detachPresence(): void {
    const port = this.presencePort;
    this.presencePort = undefined;
    port?.detach();
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
    this.trackLag();
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
        if (e.message.type === 'refused') {
          this.options.env.logger.log('info', 'refused client writes its token does not allow', {
            peer: this.state.peer,
            token: this.state.grant?.name,
            docs: e.message.docs.length + e.message.omitted,
            collections: [...new Set(e.message.docs.map((d) => d.collection))],
          });
        }
        if (e.message.type === 'batch') {
          let docs = 0;
          for (const c of e.message.changes) docs += c.docs.length;
          this.docsSent += docs;
          this.options.observer?.sent?.(docs);
        }
        return;
      case 'peer-known': {
        // Authenticated: from here on the peer hears and speaks presence.
        if (this.options.presence !== undefined && this.presencePort === undefined) {
          this.presencePort = this.options.presence.attach((m) => this.sendPresence(m));
        }
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
      case 'read': {
        // Our feed entries that hold only what this peer sent us need no reading back: they
        // are skipped as a range (catch-up from one peer would otherwise read it all twice).
        let to = e.afterSeq;
        while (this.echoHead < this.echo.length && (this.echo[this.echoHead] as number) <= to) this.echoHead++;
        while (this.echoHead < this.echo.length && this.echo[this.echoHead] === to + 1) {
          this.echoHead++;
          to++;
        }
        if (this.echoHead > 1024 && this.echoHead * 2 > this.echo.length) {
          this.echo = this.echo.slice(this.echoHead);
          this.echoHead = 0;
        }
        if (to > e.afterSeq) {
          const head = this.replica.seq;
          const context = to >= head ? encodeContext(this.replica.context()) : null;
          queueMicrotask(() =>
            this.dispatch({ type: 'batch-read', batch: { fromSeq: e.afterSeq, toSeq: to, changes: [], context } }),
          );
          return;
        }
        this.replica.readBatch(e.afterSeq, this.batchDocs, this.peerContext).then(
          (batch) => {
            this.options.observer?.read?.(batch.rowsRead);
            // The peer holds what we send once it applies it (or the session ends, and the
            // next one starts from its hello): later batches skip it. Without this, a text
            // document edited live would ship every change made since the session began.
            for (const c of batch.changes) for (const d of c.docs) notePeerHolds(this.peerContext, d.state);
            this.dispatch({ type: 'batch-read', batch });
          },
          (err: unknown) => this.fail(err),
        );
        return;
      }
      case 'apply': {
        const { batch } = e;
        const peer = this.state.peer as string;
        let docs = 0;
        for (const c of batch.changes) docs += c.docs.length;
        this.docsReceived += docs;
        this.options.observer?.received?.(docs);
        if (batch.changes.length === 0) {
          // Nothing to apply: ack at once and let the next real batch (or the end of the
          // session) store the checkpoint, instead of a transaction per empty batch, which
          // live streaming sends for every change the peer took from us.
          try {
            if (batch.context !== null) this.replica.noteSenderContext(batch.context);
          } catch (err) {
            this.fail(err);
            return;
          }
          this.pendingCheckpoint = batch.toSeq;
          queueMicrotask(() => this.dispatch({ type: 'batch-applied', id: batch.id, toSeq: batch.toSeq }));
          return;
        }
        this.pendingCheckpoint = undefined;
        const echo = (seq: number): void => {
          this.echo.push(seq);
        };
        this.replica.applyRemote(batch.changes, { peer, toSeq: batch.toSeq, context: batch.context, echo }).then(
          (result) => {
            this.docsRecorded += result.recorded;
            this.peerContext.join(result.learned);
            this.dispatch({ type: 'batch-applied', id: batch.id, toSeq: batch.toSeq });
          },
          (err: unknown) => this.fail(err),
        );
        return;
      }
      case 'presence':
        this.presencePort?.receive(e.message);
        return;
      case 'refused':
        try {
          this.options.onRefused?.(e.message);
        } catch (err) {
          // A listener's bug must not end the session.
          this.options.env.logger.log('error', 'a refusal listener threw', { error: (err as Error).message });
        }
        return;
      case 'close':
        this.detachPresence();
        this.unsubscribe?.();
        this.heartbeat?.cancel();
        this.flushCheckpoint();
        this.conn.close(e.code, e.message);
        return;
    }
  }
}

/** Adds to `peer` the dots a receiver of `state` records: its entries' and its context's latest. */
function notePeerHolds(peer: CausalContext, state: Uint8Array): void {
  everyDotIn(state, (replica, counter) => {
    peer.add({ replica, counter });
    return true;
  });
}
