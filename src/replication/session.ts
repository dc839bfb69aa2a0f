/**
 * One replication session with one peer, as a pure state machine: step(state, event)
 * returns the next state and the effects to run (send a frame, read a batch from the feed,
 * apply a received batch, close). A thin driver (session-driver.ts) runs the effects, so a
 * test or the simulator can step a session without any I/O.
 *
 * Both sides play both roles over one connection:
 *   hello ->            each side says who it is and what it holds (its causal context)
 *   pull(since) ->      each side asks for the other's feed after its durable checkpoint
 *   <- batch ... ack -> the sender streams feed batches, at most `window` unacked, then
 *                       keeps streaming live changes as its feed grows
 * A received batch is applied with its checkpoint in one transaction, then acked.
 *
 * A client session (a server with client tokens, a connection that presented one) runs with
 * its token's grant: the batches it sends are applied without the documents it may not write,
 * which are named in a `refused` message before the batch's ack (the ack still covers them, so
 * they are never offered again), and the batches it receives hold only what it may read.
 */
import { PROTOCOL_VERSION, WIRE_LIMITS } from '../protocol/index.js';
import type { Message, RefusedDoc } from '../protocol/index.js';
import type { PeerAuth } from './peer-auth.js';
import { governingCollection, mayRead, readsEverything, writeRefusal, writesEverything } from './session-access.js';
import type { ClientCredential, TokenGrant } from './session-access.js';

export type BatchMessage = Extract<Message, { type: 'batch' }>;

export interface SessionConfig {
  self: string;
  cluster: string;
  /** Unacked batches the sender may have in flight. */
  window: number;
  /** With a cluster secret: the peer must prove it knows it before anything else. */
  auth?: PeerAuth;
  /**
   * Set on a server with client tokens: what the connection presented. A peer that proves the
   * cluster secret keeps full rights; any other session runs with the token's grant, or is
   * closed with `unauthorized` when it presented no valid token.
   */
  client?: ClientCredential;
}

export interface SessionState {
  readonly config: SessionConfig;
  readonly phase: 'new' | 'hello-sent' | 'authenticating' | 'open' | 'closed';
  readonly peer: string | null;
  /** The challenge we sent; the peer's auth must answer it. */
  readonly challenge: Uint8Array;
  /** The peer's causal context from its hello, held until it has authenticated. */
  readonly peerContext: Uint8Array | null;
  readonly closeReason: { code: string; message: string } | null;
  /** The client token's grant this session runs with; null for full rights (a peer, an open server). */
  readonly grant: TokenGrant | null;
  // Receiving side: what we pull from the peer.
  /** The peer feed seq we have durably applied through. */
  readonly checkpoint: number;
  /** The fromSeq the next batch must carry. */
  readonly expectFrom: number;
  /** True once we sent pull: a batch before that was not asked for. */
  readonly pulled: boolean;
  readonly applying: boolean;
  /** The documents of the batch being applied that were left out of it, told before its ack. */
  readonly refusing: readonly RefusedDoc[];
  readonly inbox: readonly BatchMessage[];
  // Sending side: what the peer pulls from us.
  readonly pulling: boolean;
  readonly cursor: number;
  readonly head: number;
  readonly reading: boolean;
  readonly inflight: number;
  /** Batches sent and not yet acked, oldest first: acks must come back in this order. */
  readonly unacked: readonly { readonly id: number; readonly toSeq: number }[];
  readonly nextBatchId: number;
  /** Our feed seq through which the peer has acked: what it holds of ours, as far as we know. */
  readonly acked: number;
  readonly sentBatches: number;
  readonly receivedBatches: number;
}

export type SessionEvent =
  | { type: 'start'; head: number; context: Uint8Array; challenge: Uint8Array }
  | { type: 'checkpoint-loaded'; checkpoint: number }
  | { type: 'received'; message: Message }
  | {
      type: 'batch-read';
      batch: { fromSeq: number; toSeq: number; changes: BatchMessage['changes']; context: Uint8Array | null };
    }
  | { type: 'batch-applied'; id: number; toSeq: number }
  | { type: 'failed'; code: string; message: string }
  | { type: 'local-change'; head: number }
  | { type: 'disconnected' };

export type Effect =
  | { type: 'send'; message: Message }
  | { type: 'read'; afterSeq: number }
  /** Applies `batch`, from which the documents the session may not write were already removed. */
  | { type: 'apply'; batch: BatchMessage }
  /** The peer refused documents of a batch we sent (a server refusing this client's writes). */
  | { type: 'refused'; message: Extract<Message, { type: 'refused' }> }
  | { type: 'peer-known'; peer: string; context: Uint8Array }
  /** A presence update from the peer, for the presence hub (presence.ts); never stored. */
  | { type: 'presence'; message: Extract<Message, { type: 'presence' }> }
  | { type: 'close'; code: string; message: string };

export function initialSession(config: SessionConfig): SessionState {
  return {
    config,
    phase: 'new',
    peer: null,
    challenge: new Uint8Array(0),
    peerContext: null,
    closeReason: null,
    grant: null,
    checkpoint: 0,
    expectFrom: 0,
    pulled: false,
    applying: false,
    refusing: [],
    inbox: [],
    pulling: false,
    cursor: 0,
    head: 0,
    reading: false,
    inflight: 0,
    unacked: [],
    nextBatchId: 1,
    acked: 0,
    sentBatches: 0,
    receivedBatches: 0,
  };
}

type Step = { state: SessionState; effects: Effect[] };

function fail(s: SessionState, code: string, message: string, tellPeer = true): Step {
  if (s.phase === 'closed') return { state: s, effects: [] };
  const effects: Effect[] = [];
  if (tellPeer) effects.push({ type: 'send', message: { type: 'error', code, message } });
  effects.push({ type: 'close', code, message });
  return { state: { ...s, phase: 'closed', closeReason: { code, message } }, effects };
}

/** Asks for the next batch of our feed when the peer pulls, nothing is being read, and the window has room. */
function maybeRead(s: SessionState, effects: Effect[]): SessionState {
  if (s.phase !== 'open' || !s.pulling || s.reading) return s;
  if (s.inflight >= s.config.window || s.cursor >= s.head) return s;
  effects.push({ type: 'read', afterSeq: s.cursor });
  return { ...s, reading: true };
}

function maybeApply(s: SessionState, effects: Effect[]): SessionState {
  if (s.applying || s.inbox.length === 0 || s.phase !== 'open') return s;
  const [received, ...rest] = s.inbox as [BatchMessage, ...BatchMessage[]];
  const { batch, refused } = s.grant === null ? { batch: received, refused: [] } : writable(received, s.grant);
  effects.push({ type: 'apply', batch });
  return { ...s, applying: true, refusing: refused, inbox: rest };
}

/**
 * The part of a client's batch its grant may write, document by document: the rest can never
 * be applied, whichever way it is grouped, and holding back the writable documents with it
 * would only delay them. The client's causal context is dropped: it counts the refused writes,
 * and joined here it would tell every replica downstream that they are held.
 */
function writable(batch: BatchMessage, grant: TokenGrant): { batch: BatchMessage; refused: RefusedDoc[] } {
  if (writesEverything(grant)) return { batch, refused: [] };
  const refused: RefusedDoc[] = [];
  const changes: BatchMessage['changes'][number][] = [];
  for (const change of batch.changes) {
    const docs = change.docs.filter((d) => {
      const why = writeRefusal(grant, governingCollection(d.collection, d.id));
      if (why !== null) refused.push({ collection: d.collection, id: d.id, code: 'forbidden', message: why });
      return why === null;
    });
    if (docs.length > 0) changes.push(docs.length === change.docs.length ? change : { docs });
  }
  return { batch: { ...batch, changes, context: null }, refused };
}

/**
 * The part of our batch a client's grant may read. Our causal context stays home too: joined
 * at the client it would claim documents the client never received, and the client would
 * then tell any other replica it syncs with that it holds them.
 */
function readable(
  batch: Extract<SessionEvent, { type: 'batch-read' }>['batch'],
  grant: TokenGrant,
): Extract<SessionEvent, { type: 'batch-read' }>['batch'] {
  if (readsEverything(grant)) return batch;
  const changes: BatchMessage['changes'][number][] = [];
  for (const change of batch.changes) {
    const docs = change.docs.filter((d) => mayRead(grant, governingCollection(d.collection, d.id)));
    if (docs.length > 0) changes.push(docs.length === change.docs.length ? change : { docs });
  }
  return { ...batch, changes, context: null };
}

export function step(s: SessionState, ev: SessionEvent): Step {
  if (s.phase === 'closed') return { state: s, effects: [] };
  const effects: Effect[] = [];
  switch (ev.type) {
    case 'start': {
      if (s.phase !== 'new') return fail(s, 'internal', 'session started twice', false);
      effects.push({
        type: 'send',
        message: {
          type: 'hello',
          protocol: PROTOCOL_VERSION,
          cluster: s.config.cluster,
          replica: s.config.self,
          context: ev.context,
          challenge: ev.challenge,
        },
      });
      return { state: { ...s, phase: 'hello-sent', head: ev.head, challenge: ev.challenge }, effects };
    }
    case 'checkpoint-loaded': {
      if (s.phase !== 'open' || s.peer === null) return fail(s, 'internal', 'checkpoint before hello', false);
      effects.push({ type: 'send', message: { type: 'pull', since: ev.checkpoint } });
      return { state: { ...s, checkpoint: ev.checkpoint, expectFrom: ev.checkpoint, pulled: true }, effects };
    }
    case 'received':
      return receive(s, ev.message);
    case 'batch-read': {
      if (!s.reading) return fail(s, 'internal', 'batch read without a request', false);
      let next: SessionState = { ...s, reading: false };
      const b = s.grant === null ? ev.batch : readable(ev.batch, s.grant);
      if (b.toSeq > s.cursor) {
        effects.push({
          type: 'send',
          message: {
            type: 'batch',
            id: s.nextBatchId,
            fromSeq: s.cursor,
            toSeq: b.toSeq,
            changes: b.changes,
            context: b.context,
          },
        });
        next = {
          ...next,
          cursor: b.toSeq,
          head: Math.max(next.head, b.toSeq),
          inflight: next.inflight + 1,
          unacked: [...next.unacked, { id: s.nextBatchId, toSeq: b.toSeq }],
          nextBatchId: next.nextBatchId + 1,
          sentBatches: next.sentBatches + 1,
        };
      }
      return { state: maybeRead(next, effects), effects };
    }
    case 'batch-applied': {
      if (!s.applying) return fail(s, 'internal', 'batch applied without a request', false);
      if (s.refusing.length > 0) {
        const docs = s.refusing.slice(0, WIRE_LIMITS.refusedDocsMax);
        const omitted = s.refusing.length - docs.length;
        effects.push({ type: 'send', message: { type: 'refused', id: ev.id, docs, omitted } });
      }
      effects.push({ type: 'send', message: { type: 'ack', id: ev.id, toSeq: ev.toSeq } });
      const next = { ...s, applying: false, refusing: [], checkpoint: ev.toSeq };
      return { state: maybeApply(next, effects), effects };
    }
    case 'failed':
      return fail(s, ev.code, ev.message);
    case 'local-change': {
      const next = { ...s, head: Math.max(s.head, ev.head) };
      return { state: maybeRead(next, effects), effects };
    }
    case 'disconnected':
      return {
        state: {
          ...s,
          phase: 'closed',
          closeReason: s.closeReason ?? { code: 'disconnected', message: 'connection closed' },
        },
        effects,
      };
  }
}

function receive(s: SessionState, m: Message): Step {
  const effects: Effect[] = [];
  switch (m.type) {
    case 'hello': {
      if (s.phase !== 'hello-sent') return fail(s, 'protocol', 'unexpected hello');
      if (m.protocol !== PROTOCOL_VERSION) {
        return fail(
          s,
          'protocol_version',
          `peer speaks protocol ${m.protocol}; this replica speaks ${PROTOCOL_VERSION}`,
        );
      }
      if (m.cluster !== s.config.cluster) {
        return fail(s, 'wrong_cluster', `peer is in cluster ${m.cluster}; this replica is in ${s.config.cluster}`);
      }
      if (m.replica === s.config.self) return fail(s, 'same_replica', `peer has our own replica id ${m.replica}`);
      // Both sides always answer the other's challenge; a side without a secret sends an empty proof.
      const proof = s.config.auth?.prove(m.challenge, s.config.self) ?? new Uint8Array(0);
      effects.push({ type: 'send', message: { type: 'auth', proof } });
      return { state: { ...s, phase: 'authenticating', peer: m.replica, peerContext: m.context }, effects };
    }
    case 'auth': {
      if (s.phase !== 'authenticating' || s.peer === null) return fail(s, 'protocol', 'unexpected auth');
      const { auth, client } = s.config;
      const proved = auth !== undefined && auth.verify(s.challenge, s.peer, m.proof);
      let grant: TokenGrant | null = null;
      if (!proved && client !== undefined) {
        // Tokens are configured: without the cluster secret, a session is a client's.
        if (client === 'none' || client === 'invalid') {
          const presented = client === 'none' ? 'none was presented' : 'the token presented is not valid';
          return fail(
            s,
            'unauthorized',
            `${s.peer} is refused: this server needs a client token (the token query parameter of the upgrade request) or the cluster secret, and ${presented}`,
          );
        }
        grant = client;
      } else if (!proved && auth !== undefined) {
        return fail(s, 'unauthorized', `peer ${s.peer} did not prove it knows the cluster secret`);
      }
      // The driver loads our checkpoint for this peer and answers with checkpoint-loaded.
      effects.push({ type: 'peer-known', peer: s.peer, context: s.peerContext ?? new Uint8Array([0]) });
      return { state: { ...s, phase: 'open', peerContext: null, grant }, effects };
    }
    case 'pull': {
      if (s.phase !== 'open') return fail(s, 'protocol', 'pull before hello');
      if (s.pulling) return fail(s, 'protocol', 'pulled twice');
      const next = { ...s, pulling: true, cursor: m.since, acked: m.since };
      return { state: maybeRead(next, effects), effects };
    }
    case 'batch': {
      if (s.phase !== 'open') return fail(s, 'protocol', 'batch before hello');
      if (!s.pulled) return fail(s, 'protocol', 'batch before we asked for one');
      if (m.fromSeq > m.toSeq) return fail(s, 'protocol', 'batch range is reversed');
      if (m.fromSeq !== s.expectFrom) {
        return fail(s, 'protocol', `batch starts at ${m.fromSeq}; expected ${s.expectFrom}`);
      }
      if (s.inbox.length >= s.config.window * 2) return fail(s, 'protocol', 'peer ignores the flow-control window');
      const next = { ...s, inbox: [...s.inbox, m], expectFrom: m.toSeq, receivedBatches: s.receivedBatches + 1 };
      return { state: maybeApply(next, effects), effects };
    }
    case 'ack': {
      if (s.phase !== 'open' || s.inflight === 0) return fail(s, 'protocol', 'ack without a batch in flight');
      const [oldest, ...rest] = s.unacked;
      if (oldest === undefined || oldest.id !== m.id || oldest.toSeq !== m.toSeq) {
        return fail(
          s,
          'protocol',
          `ack for batch ${m.id} through ${m.toSeq} does not match the oldest batch in flight`,
        );
      }
      const next = { ...s, inflight: s.inflight - 1, unacked: rest, acked: oldest.toSeq };
      return { state: maybeRead(next, effects), effects };
    }
    case 'refused': {
      // Always just before the ack of the oldest batch in flight.
      if (s.phase !== 'open' || s.unacked[0]?.id !== m.id) {
        return fail(s, 'protocol', `refusal for batch ${m.id}, which is not the oldest batch in flight`);
      }
      effects.push({ type: 'refused', message: m });
      return { state: s, effects };
    }
    case 'error':
      return fail(s, m.code, `peer closed the session: ${m.message}`, false);
    case 'ping':
      effects.push({ type: 'send', message: { type: 'pong', nonce: m.nonce } });
      return { state: s, effects };
    case 'pong':
      return { state: s, effects };
    case 'presence':
      // Only an authenticated peer may speak for publishers.
      if (s.phase !== 'open') return fail(s, 'protocol', 'presence before hello');
      effects.push({ type: 'presence', message: m });
      return { state: s, effects };
  }
}
