/**
 * Step-level tests of the replication session state machine: no driver, no storage, no
 * transport. Each test feeds events to step() and checks the effects it asks for.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../protocol/index.js';
import type { Message, MessageOf } from '../protocol/index.js';
import { initialSession, step } from './session.js';
import { secretAuth } from './peer-auth.js';
import type { BatchMessage, Effect, SessionConfig, SessionEvent, SessionState } from './session.js';

const SELF = 'eu';
const PEER = 'us';
const CLUSTER = 'prod';
const OUR_CONTEXT = Uint8Array.of(1, 2, 3);
const PEER_CONTEXT = Uint8Array.of(9, 8, 7);
const CHALLENGE = Uint8Array.of(42, 43);

function config(window = 2): SessionConfig {
  return { self: SELF, cluster: CLUSTER, window };
}

function helloFrom(overrides: Partial<MessageOf<'hello'>> = {}): MessageOf<'hello'> {
  return {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    cluster: CLUSTER,
    replica: PEER,
    context: PEER_CONTEXT,
    challenge: new Uint8Array(0),
    ...overrides,
  };
}

const received = (message: Message): SessionEvent => ({ type: 'received', message });

function batchFrom(id: number, fromSeq: number, toSeq: number): BatchMessage {
  return {
    type: 'batch',
    id,
    fromSeq,
    toSeq,
    changes: [{ docs: [{ collection: 'c', id: `d${toSeq}`, state: Uint8Array.of(toSeq & 0xff) }] }],
    context: null,
  };
}

function batchRead(toSeq: number): SessionEvent {
  return { type: 'batch-read', batch: { fromSeq: 0, toSeq, changes: [], context: null } };
}

/** Runs events in order; returns the final state and the effects of each step. */
function run(state: SessionState, events: readonly SessionEvent[]): { state: SessionState; effects: Effect[][] } {
  const effects: Effect[][] = [];
  let s = state;
  for (const ev of events) {
    const r = step(s, ev);
    s = r.state;
    effects.push(r.effects);
  }
  return { state: s, effects };
}

/** A session that said hello, heard the peer's hello, and holds `head` entries in its feed. */
function opened(options: { window?: number; head?: number } = {}): SessionState {
  const { state, effects } = run(initialSession(config(options.window)), [
    { type: 'start', head: options.head ?? 0, context: OUR_CONTEXT, challenge: CHALLENGE },
    received(helloFrom()),
    received({ type: 'auth', proof: new Uint8Array(0) }),
  ]);
  expect(state.phase).toBe('open');
  expect(effects[1]).toEqual([{ type: 'send', message: { type: 'auth', proof: new Uint8Array(0) } }]);
  expect(effects[2]).toEqual([{ type: 'peer-known', peer: PEER, context: PEER_CONTEXT }]);
  return state;
}

/** An open session that loaded `checkpoint` for the peer and pulled from it. */
function pulledFrom(checkpoint: number, options: { window?: number } = {}): SessionState {
  const r = step(opened(options), { type: 'checkpoint-loaded', checkpoint });
  return r.state;
}

/** An open session with `head` entries that the peer pulls from `since`; returns it after the first read request. */
function servingPull(options: { window: number; head: number; since?: number }): SessionState {
  const r = step(opened(options), received({ type: 'pull', since: options.since ?? 0 }));
  expect(r.effects).toEqual([{ type: 'read', afterSeq: options.since ?? 0 }]);
  return r.state;
}

function expectClosedWith(result: { state: SessionState; effects: Effect[] }, code: string, tellPeer = true): void {
  expect(result.state.phase).toBe('closed');
  expect(result.state.closeReason?.code).toBe(code);
  expect(result.state.closeReason?.message).toMatch(/\S/);
  const expected: Effect[] = [];
  if (tellPeer) {
    expected.push({ type: 'send', message: { type: 'error', code, message: expect.stringMatching(/\S/) as string } });
  }
  expected.push({ type: 'close', code, message: expect.stringMatching(/\S/) as string });
  expect(result.effects).toEqual(expected);
}

const sends = (effects: readonly Effect[]): Message[] => effects.flatMap((e) => (e.type === 'send' ? [e.message] : []));
const reads = (effects: readonly Effect[]): number[] => effects.flatMap((e) => (e.type === 'read' ? [e.afterSeq] : []));

describe('hello', () => {
  it('start sends a hello with the protocol version, the cluster and our replica id', () => {
    const r = step(initialSession(config()), { type: 'start', head: 5, context: OUR_CONTEXT, challenge: CHALLENGE });
    expect(r.effects).toEqual([
      {
        type: 'send',
        message: {
          type: 'hello',
          protocol: PROTOCOL_VERSION,
          cluster: CLUSTER,
          replica: SELF,
          context: OUR_CONTEXT,
          challenge: CHALLENGE,
        },
      },
    ]);
    expect(r.state.phase).toBe('hello-sent');
    expect(r.state.head).toBe(5);
  });

  it('a session started twice closes without telling the peer', () => {
    const start: SessionEvent = { type: 'start', head: 0, context: OUR_CONTEXT, challenge: CHALLENGE };
    const once = step(initialSession(config()), start);
    expectClosedWith(step(once.state, start), 'internal', false);
  });

  it.each([
    ['another protocol version', { protocol: PROTOCOL_VERSION + 1 }, 'protocol_version'],
    ['an older protocol version', { protocol: 0 }, 'protocol_version'],
    ['another cluster', { cluster: 'staging' }, 'wrong_cluster'],
    ['our own replica id', { replica: SELF }, 'same_replica'],
  ] as const)('a hello with %s closes with an error sent to the peer and a reason', (_what, overrides, code) => {
    const started = step(initialSession(config()), {
      type: 'start',
      head: 0,
      context: OUR_CONTEXT,
      challenge: CHALLENGE,
    });
    const r = step(started.state, received(helloFrom(overrides)));
    expectClosedWith(r, code);
    expect(r.state.peer).toBeNull();
  });

  it('a second hello from the peer closes with a protocol error', () => {
    expectClosedWith(step(opened(), received(helloFrom())), 'protocol');
  });

  it('a hello before we said ours closes with a protocol error', () => {
    expectClosedWith(step(initialSession(config()), received(helloFrom())), 'protocol');
  });

  it('after hello it asks for the checkpoint of the peer, then pulls from that checkpoint', () => {
    const s = opened();
    expect(s.peer).toBe(PEER);
    const r = step(s, { type: 'checkpoint-loaded', checkpoint: 17 });
    expect(r.effects).toEqual([{ type: 'send', message: { type: 'pull', since: 17 } }]);
    expect(r.state.checkpoint).toBe(17);
    expect(r.state.expectFrom).toBe(17);
  });

  it('a checkpoint loaded before hello is an internal error', () => {
    const started = step(initialSession(config()), {
      type: 'start',
      head: 0,
      context: OUR_CONTEXT,
      challenge: CHALLENGE,
    });
    expectClosedWith(step(started.state, { type: 'checkpoint-loaded', checkpoint: 0 }), 'internal', false);
  });

  it('a pull or a batch before hello closes with a protocol error', () => {
    const started = step(initialSession(config()), {
      type: 'start',
      head: 0,
      context: OUR_CONTEXT,
      challenge: CHALLENGE,
    });
    expectClosedWith(step(started.state, received({ type: 'pull', since: 0 })), 'protocol');
    expectClosedWith(step(started.state, received(batchFrom(1, 0, 1))), 'protocol');
  });
});

describe('sending our feed', () => {
  it('a pull makes it read our feed from the seq asked for', () => {
    const r = step(opened({ head: 10 }), received({ type: 'pull', since: 4 }));
    expect(r.effects).toEqual([{ type: 'read', afterSeq: 4 }]);
    expect(r.state.pulling).toBe(true);
  });

  it('a pull from our head reads nothing until the feed grows', () => {
    const r = step(opened({ head: 10 }), received({ type: 'pull', since: 10 }));
    expect(r.effects).toEqual([]);
    const grown = step(r.state, { type: 'local-change', head: 11 });
    expect(grown.effects).toEqual([{ type: 'read', afterSeq: 10 }]);
  });

  it('a second pull closes with a protocol error', () => {
    const r = step(opened({ head: 10 }), received({ type: 'pull', since: 0 }));
    expectClosedWith(step(r.state, received({ type: 'pull', since: 0 })), 'protocol');
  });

  it('sends each read as a batch that starts where the previous one ended, with increasing ids', () => {
    let s = servingPull({ window: 8, head: 30, since: 5 });
    const batches: Message[] = [];
    for (const toSeq of [12, 20, 30]) {
      const r = step(s, batchRead(toSeq));
      s = r.state;
      batches.push(...sends(r.effects));
    }
    expect(batches).toEqual([
      { type: 'batch', id: 1, fromSeq: 5, toSeq: 12, changes: [], context: null },
      { type: 'batch', id: 2, fromSeq: 12, toSeq: 20, changes: [], context: null },
      { type: 'batch', id: 3, fromSeq: 20, toSeq: 30, changes: [], context: null },
    ]);
    expect(s.inflight).toBe(3);
    expect(s.sentBatches).toBe(3);
  });

  it('never has more than `window` unacked batches, and an ack releases one', () => {
    const window = 3;
    let s = servingPull({ window, head: 100 });
    for (let i = 1; i <= window; i++) {
      const r = step(s, batchRead(i * 10));
      s = r.state;
      expect(sends(r.effects)).toHaveLength(1);
      // The last batch fills the window: no new read until an ack.
      expect(reads(r.effects)).toEqual(i < window ? [i * 10] : []);
    }
    expect(s.inflight).toBe(window);
    expect(s.reading).toBe(false);
    // The feed grows, more local changes: still nothing to read while the window is full.
    for (const head of [101, 150, 200]) {
      const r = step(s, { type: 'local-change', head });
      expect(r.effects).toEqual([]);
      s = r.state;
    }
    const acked = step(s, received({ type: 'ack', id: 1, toSeq: 10 }));
    expect(acked.effects).toEqual([{ type: 'read', afterSeq: window * 10 }]);
    expect(acked.state.inflight).toBe(window - 1);
    // Its batch fills the window again.
    const refill = step(acked.state, batchRead(window * 10 + 10));
    expect(reads(refill.effects)).toEqual([]);
    expect(refill.state.inflight).toBe(window);
  });

  it('keeps at most `window` unacked batches whatever the order of reads, acks and local changes', () => {
    const action = fc.oneof(
      fc.constant({ kind: 'read-done' as const }),
      fc.constant({ kind: 'ack' as const }),
      fc.record({ kind: fc.constant('local-change' as const), grow: fc.integer({ min: 0, max: 20 }) }),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 50 }),
        fc.array(fc.tuple(action, fc.integer({ min: 1, max: 10 })), { maxLength: 120 }),
        (window, head, actions) => {
          let s = step(opened({ window, head }), received({ type: 'pull', since: 0 })).state;
          let sent = 0;
          let acked = 0;
          for (const [a, size] of actions) {
            let r: { state: SessionState; effects: Effect[] };
            if (a.kind === 'read-done') {
              if (!s.reading) continue;
              r = step(s, batchRead(Math.min(s.cursor + size, s.head)));
            } else if (a.kind === 'ack') {
              if (s.inflight === 0) continue;
              const oldest = s.unacked[0] as { id: number; toSeq: number };
              r = step(s, received({ type: 'ack', id: oldest.id, toSeq: oldest.toSeq }));
              acked++;
            } else {
              r = step(s, { type: 'local-change', head: s.head + a.grow });
            }
            // A read is only ever asked for while the window has room, and only one at a time.
            expect(reads(r.effects).length).toBeLessThanOrEqual(1);
            if (reads(r.effects).length > 0) expect(r.state.inflight).toBeLessThan(window);
            sent += sends(r.effects).filter((m) => m.type === 'batch').length;
            s = r.state;
            expect(s.phase).toBe('open');
            expect(s.inflight).toBe(sent - acked);
            expect(s.inflight).toBeLessThanOrEqual(window);
            expect(s.cursor).toBeLessThanOrEqual(s.head);
          }
        },
      ),
    );
  });

  it('an ack that does not match the oldest batch in flight closes with a protocol error', () => {
    const served = step(opened({ head: 10 }), received({ type: 'pull', since: 0 })).state;
    const sent = step(served, batchRead(10)).state;
    expect(sent.inflight).toBe(1);
    expectClosedWith(step(sent, received({ type: 'ack', id: 2, toSeq: 10 })), 'protocol');
    expectClosedWith(step(sent, received({ type: 'ack', id: 1, toSeq: 9 })), 'protocol');
    expect(step(sent, received({ type: 'ack', id: 1, toSeq: 10 })).state.inflight).toBe(0);
  });

  it('a batch that arrives before we asked for one closes with a protocol error', () => {
    const helloed = opened();
    expectClosedWith(
      step(helloed, received({ type: 'batch', id: 1, fromSeq: 0, toSeq: 1, changes: [], context: null })),
      'protocol',
    );
  });

  it('an ack without a batch in flight closes with a protocol error', () => {
    const served = step(opened({ head: 10 }), received({ type: 'pull', since: 0 })).state;
    expectClosedWith(step(served, received({ type: 'ack', id: 1, toSeq: 10 })), 'protocol');

    const sent = step(served, batchRead(10)).state;
    const once = step(sent, received({ type: 'ack', id: 1, toSeq: 10 }));
    expect(once.state.phase).toBe('open');
    expectClosedWith(step(once.state, received({ type: 'ack', id: 1, toSeq: 10 })), 'protocol');
  });

  it('an ack before anything was pulled closes with a protocol error', () => {
    expectClosedWith(step(opened({ head: 10 }), received({ type: 'ack', id: 1, toSeq: 1 })), 'protocol');
  });

  it('a read that found nothing new sends no batch', () => {
    const s = servingPull({ window: 2, head: 10, since: 4 });
    const r = step(s, batchRead(4));
    expect(sends(r.effects)).toEqual([]);
    expect(r.state.inflight).toBe(0);
  });

  it('after catching up, local changes make it read again: live streaming', () => {
    let s = servingPull({ window: 2, head: 5 });
    let r = step(s, batchRead(5));
    expect(sends(r.effects)).toEqual([{ type: 'batch', id: 1, fromSeq: 0, toSeq: 5, changes: [], context: null }]);
    expect(reads(r.effects)).toEqual([]);
    s = step(r.state, received({ type: 'ack', id: 1, toSeq: 5 })).state;
    expect(s.reading).toBe(false);

    r = step(s, { type: 'local-change', head: 7 });
    expect(r.effects).toEqual([{ type: 'read', afterSeq: 5 }]);
    r = step(r.state, batchRead(7));
    expect(sends(r.effects)).toEqual([{ type: 'batch', id: 2, fromSeq: 5, toSeq: 7, changes: [], context: null }]);
    // A local change that does not move the head past the cursor reads nothing.
    expect(step(r.state, { type: 'local-change', head: 7 }).effects).toEqual([]);
  });

  it('a local change while a read is pending does not ask for a second read', () => {
    const s = servingPull({ window: 4, head: 5 });
    const r = step(s, { type: 'local-change', head: 9 });
    expect(r.effects).toEqual([]);
    const done = step(r.state, batchRead(5));
    expect(reads(done.effects)).toEqual([5]);
  });

  it('local changes before the peer pulls read nothing', () => {
    const r = step(opened({ head: 3 }), { type: 'local-change', head: 9 });
    expect(r.effects).toEqual([]);
    expect(r.state.head).toBe(9);
  });

  it('a batch read nobody asked for is an internal error', () => {
    expectClosedWith(step(opened({ head: 5 }), batchRead(5)), 'internal', false);
  });
});

describe('receiving the peer feed', () => {
  it('applies batches one at a time, in order, and acks each with its toSeq once applied', () => {
    let s = pulledFrom(3, { window: 4 });
    const b1 = batchFrom(1, 3, 5);
    const b2 = batchFrom(2, 5, 9);
    const b3 = batchFrom(3, 9, 12);

    let r = step(s, received(b1));
    expect(r.effects).toEqual([{ type: 'apply', batch: b1 }]);
    r = step(r.state, received(b2));
    expect(r.effects).toEqual([]);
    r = step(r.state, received(b3));
    expect(r.effects).toEqual([]);
    s = r.state;
    expect(s.receivedBatches).toBe(3);

    r = step(s, { type: 'batch-applied', id: 1, toSeq: 5 });
    expect(r.effects).toEqual([
      { type: 'send', message: { type: 'ack', id: 1, toSeq: 5 } },
      { type: 'apply', batch: b2 },
    ]);
    expect(r.state.checkpoint).toBe(5);
    r = step(r.state, { type: 'batch-applied', id: 2, toSeq: 9 });
    expect(r.effects).toEqual([
      { type: 'send', message: { type: 'ack', id: 2, toSeq: 9 } },
      { type: 'apply', batch: b3 },
    ]);
    r = step(r.state, { type: 'batch-applied', id: 3, toSeq: 12 });
    expect(r.effects).toEqual([{ type: 'send', message: { type: 'ack', id: 3, toSeq: 12 } }]);
    expect(r.state.checkpoint).toBe(12);
    expect(r.state.applying).toBe(false);
    expect(r.state.inbox).toEqual([]);
  });

  it('a batch that arrives after the previous one was applied is applied at once', () => {
    const b1 = batchFrom(1, 0, 2);
    const b2 = batchFrom(2, 2, 4);
    const { effects } = run(pulledFrom(0), [received(b1), { type: 'batch-applied', id: 1, toSeq: 2 }, received(b2)]);
    expect(effects[2]).toEqual([{ type: 'apply', batch: b2 }]);
  });

  it('an empty batch still advances the checkpoint', () => {
    const b = { ...batchFrom(1, 4, 8), changes: [] };
    const { state, effects } = run(pulledFrom(4), [received(b), { type: 'batch-applied', id: 1, toSeq: 8 }]);
    expect(effects[0]).toEqual([{ type: 'apply', batch: b }]);
    expect(state.checkpoint).toBe(8);
  });

  it('a first batch that does not start at our checkpoint closes with a protocol error', () => {
    expectClosedWith(step(pulledFrom(10), received(batchFrom(1, 0, 12))), 'protocol');
    expectClosedWith(step(pulledFrom(10), received(batchFrom(1, 11, 12))), 'protocol');
  });

  it('a batch whose fromSeq does not follow the previous toSeq closes with a protocol error', () => {
    const first = step(pulledFrom(0), received(batchFrom(1, 0, 5)));
    // A gap: seq 6 skipped.
    const gap = step(first.state, received(batchFrom(2, 6, 8)));
    expectClosedWith(gap, 'protocol');
    // An overlap: seq 4-5 again.
    expectClosedWith(step(first.state, received(batchFrom(2, 4, 8))), 'protocol');
    // The gap is detected before anything of the bad batch is applied.
    expect(gap.effects.some((e) => e.type === 'apply')).toBe(false);
  });

  it('a batch with fromSeq greater than toSeq closes with a protocol error', () => {
    expectClosedWith(step(pulledFrom(5), received(batchFrom(1, 5, 3))), 'protocol');
  });

  it('a peer that ignores the window is disconnected', () => {
    const window = 2;
    let s = pulledFrom(0, { window });
    let from = 0;
    // One batch applying, then up to 2 * window waiting.
    for (let i = 0; i <= window * 2; i++) {
      const r = step(s, received(batchFrom(i + 1, from, from + 1)));
      expect(r.state.phase).toBe('open');
      s = r.state;
      from++;
    }
    expectClosedWith(step(s, received(batchFrom(99, from, from + 1))), 'protocol');
  });

  it('a batch applied without being asked for is an internal error', () => {
    expectClosedWith(step(pulledFrom(0), { type: 'batch-applied', id: 1, toSeq: 1 }), 'internal', false);
  });

  it('a failure while applying closes with its code and tells the peer', () => {
    const s = step(pulledFrom(0), received(batchFrom(1, 0, 2))).state;
    expectClosedWith(step(s, { type: 'failed', code: 'clock_skew', message: 'too far ahead' }), 'clock_skew');
  });
});

describe('closing and keep-alive', () => {
  it('an error message from the peer closes without sending an error back', () => {
    const r = step(opened(), received({ type: 'error', code: 'unauthorized', message: 'who are you' }));
    expect(r.effects).toEqual([
      { type: 'close', code: 'unauthorized', message: expect.stringContaining('who are you') },
    ]);
    expect(r.state.phase).toBe('closed');
    expect(r.state.closeReason?.code).toBe('unauthorized');
  });

  it('a disconnect closes the session with no effects', () => {
    const r = step(opened(), { type: 'disconnected' });
    expect(r.effects).toEqual([]);
    expect(r.state.phase).toBe('closed');
    expect(r.state.closeReason?.code).toBe('disconnected');
  });

  it('after close, no event produces an effect or changes the state', () => {
    const b = batchFrom(1, 0, 2);
    const closed = run(pulledFrom(0, { window: 2 }), [
      received({ type: 'pull', since: 0 }),
      received(b),
      received({ type: 'error', code: 'protocol', message: 'bye' }),
    ]).state;
    expect(closed.phase).toBe('closed');
    const events: SessionEvent[] = [
      { type: 'start', head: 0, context: OUR_CONTEXT, challenge: CHALLENGE },
      { type: 'checkpoint-loaded', checkpoint: 0 },
      received(helloFrom()),
      received({ type: 'pull', since: 0 }),
      received(batchFrom(2, 2, 4)),
      received({ type: 'ack', id: 1, toSeq: 2 }),
      received({ type: 'error', code: 'protocol', message: 'again' }),
      received({ type: 'ping', nonce: 1 }),
      received({ type: 'pong', nonce: 1 }),
      received({ type: 'auth', proof: Uint8Array.of(1) }),
      batchRead(3),
      { type: 'batch-applied', id: 1, toSeq: 2 },
      { type: 'failed', code: 'internal', message: 'late failure' },
      { type: 'local-change', head: 50 },
      { type: 'disconnected' },
    ];
    for (const ev of events) {
      const r = step(closed, ev);
      expect(r.effects, ev.type).toEqual([]);
      expect(r.state, ev.type).toBe(closed);
    }
  });

  it('a ping gets a pong with the same nonce and changes nothing else', () => {
    const s = opened();
    const r = step(s, received({ type: 'ping', nonce: 123456 }));
    expect(r.effects).toEqual([{ type: 'send', message: { type: 'pong', nonce: 123456 } }]);
    expect(r.state).toEqual(s);
  });

  it('a pong is ignored', () => {
    const s = opened();
    const r = step(s, received({ type: 'pong', nonce: 1 }));
    expect(r.effects).toEqual([]);
    expect(r.state).toEqual(s);
  });

  it('an auth message on a session without authentication closes with a protocol error', () => {
    expectClosedWith(step(opened(), received({ type: 'auth', proof: Uint8Array.of(1) })), 'protocol');
  });
});

describe('authentication with a cluster secret', () => {
  const withSecret = (secret: string, self = SELF): SessionState =>
    run(initialSession({ self, cluster: CLUSTER, window: 2, auth: secretAuth(secret, CLUSTER) }), [
      { type: 'start', head: 0, context: OUR_CONTEXT, challenge: new Uint8Array(16).fill(7) },
    ]).state;
  const peerChallenge = new Uint8Array(16).fill(3);

  it('answers the peer challenge with a proof and opens once the peer proves the same secret', () => {
    const s = withSecret('s3cret');
    const r = step(s, received(helloFrom({ challenge: peerChallenge })));
    const [auth] = sends(r.effects);
    expect(auth?.type).toBe('auth');
    expect(secretAuth('s3cret', CLUSTER).verify(peerChallenge, SELF, (auth as MessageOf<'auth'>).proof)).toBe(true);
    const peerProof = secretAuth('s3cret', CLUSTER).prove(new Uint8Array(16).fill(7), PEER);
    const opened = step(r.state, received({ type: 'auth', proof: peerProof }));
    expect(opened.state.phase).toBe('open');
    expect(opened.effects).toEqual([{ type: 'peer-known', peer: PEER, context: PEER_CONTEXT }]);
  });

  it('refuses a peer with the wrong secret, or none, with code unauthorized', () => {
    for (const proof of [secretAuth('wrong', CLUSTER).prove(new Uint8Array(16).fill(7), PEER), new Uint8Array(0)]) {
      const s = step(withSecret('s3cret'), received(helloFrom({ challenge: peerChallenge }))).state;
      expectClosedWith(step(s, received({ type: 'auth', proof })), 'unauthorized');
    }
  });

  it('refuses a proof made for another replica id (no replay under another name)', () => {
    const s = step(withSecret('s3cret'), received(helloFrom({ challenge: peerChallenge }))).state;
    const proofForOther = secretAuth('s3cret', CLUSTER).prove(new Uint8Array(16).fill(7), 'ap');
    expectClosedWith(step(s, received({ type: 'auth', proof: proofForOther })), 'unauthorized');
  });

  it('an auth before hello closes with a protocol error', () => {
    expectClosedWith(step(withSecret('x'), received({ type: 'auth', proof: new Uint8Array(0) })), 'protocol');
  });
});
