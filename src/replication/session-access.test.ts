/**
 * Client sessions at the step level: which sessions a server with client tokens opens, what a
 * client's grant keeps out of the batches it sends (refused, named, still acked) and of the
 * batches it receives, and how the sending side takes a refusal.
 */
import { describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION, WIRE_LIMITS } from '../protocol/index.js';
import type { Change, Message, MessageOf } from '../protocol/index.js';
import { secretAuth } from './peer-auth.js';
import { initialSession, step } from './session.js';
import type { BatchMessage, Effect, SessionEvent, SessionState } from './session.js';
import { mayRead, mayWrite, rightOn, writeRefusal } from './session-access.js';
import type { ClientCredential, TokenGrant } from './session-access.js';

const CLUSTER = 'prod';
const CHALLENGE = new Uint8Array(16).fill(7);
const CALENDAR: TokenGrant = { name: 'calendar-app', collections: { events: 'read-write', holidays: 'read' } };

const received = (message: Message): SessionEvent => ({ type: 'received', message });
const sends = (effects: readonly Effect[]): Message[] => effects.flatMap((e) => (e.type === 'send' ? [e.message] : []));

function hello(replica: string): MessageOf<'hello'> {
  return {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    cluster: CLUSTER,
    replica,
    context: Uint8Array.of(0),
    challenge: new Uint8Array(16).fill(3),
  };
}

/** The server's side of a session with `client` presented, after the client's hello and auth. */
function serverSession(
  client: ClientCredential | undefined,
  options: { secret?: string; proof?: Uint8Array } = {},
): { state: SessionState; effects: Effect[] } {
  const auth = options.secret === undefined ? {} : { auth: secretAuth(options.secret, CLUSTER) };
  let s = initialSession({
    self: 'srv',
    cluster: CLUSTER,
    window: 4,
    ...auth,
    ...(client === undefined ? {} : { client }),
  });
  s = step(s, { type: 'start', head: 0, context: Uint8Array.of(0), challenge: CHALLENGE }).state;
  s = step(s, received(hello('laptop'))).state;
  return step(s, received({ type: 'auth', proof: options.proof ?? new Uint8Array(0) }));
}

/** An open server session for `grant` that pulled from the client (checkpoint 0). */
function pulling(grant: TokenGrant): SessionState {
  const opened = serverSession(grant);
  expect(opened.state.phase).toBe('open');
  return step(opened.state, { type: 'checkpoint-loaded', checkpoint: 0 }).state;
}

const doc = (collection: string, id: string): Change['docs'][number] => ({
  collection,
  id,
  state: Uint8Array.of(id.length),
});

function batch(
  id: number,
  toSeq: number,
  changes: Change[],
  context: Uint8Array | null = Uint8Array.of(5),
): BatchMessage {
  return { type: 'batch', id, fromSeq: id === 1 ? 0 : toSeq - 1, toSeq, changes, context };
}

describe('grants', () => {
  it('a named collection wins over *, and read-write includes read', () => {
    const grant: TokenGrant = { name: 't', collections: { '*': 'read', events: 'read-write' } };
    expect(rightOn(grant, 'events')).toBe('read-write');
    expect(rightOn(grant, 'notes')).toBe('read');
    expect([mayRead(grant, 'notes'), mayWrite(grant, 'notes'), mayWrite(grant, 'events')]).toEqual([true, false, true]);
    expect(rightOn(CALENDAR, 'notes')).toBeNull();
    expect(rightOn(CALENDAR, 'toString')).toBeNull();
  });

  it('a refusal names the token, the collection and the right missing', () => {
    expect(writeRefusal(CALENDAR, 'holidays')).toBe(
      'token "calendar-app" may only read collection holidays: writing needs read-write',
    );
    expect(writeRefusal(CALENDAR, 'notes')).toMatch(/"calendar-app" has no right on collection notes/);
    expect(writeRefusal(CALENDAR, 'events')).toBeNull();
  });
});

describe('opening a session on a server with client tokens', () => {
  it('a session with no token, or an unknown one, is closed with unauthorized and the reason', () => {
    for (const [client, why] of [
      ['none', /none was presented/],
      ['invalid', /the token presented is not valid/],
    ] as const) {
      const r = serverSession(client);
      expect(r.state.phase).toBe('closed');
      expect(r.state.closeReason?.code).toBe('unauthorized');
      const [error] = sends(r.effects);
      expect(error).toEqual({ type: 'error', code: 'unauthorized', message: expect.stringMatching(why) as string });
    }
  });

  it('a session with a valid token opens with its grant', () => {
    const r = serverSession(CALENDAR);
    expect(r.state.phase).toBe('open');
    expect(r.state.grant).toEqual(CALENDAR);
  });

  it('a peer that proves the cluster secret keeps full rights, whatever it presented', () => {
    const proof = secretAuth('s3cret-s3cret', CLUSTER).prove(CHALLENGE, 'laptop');
    for (const client of ['none', 'invalid', CALENDAR] as const) {
      const r = serverSession(client, { secret: 's3cret-s3cret', proof });
      expect(r.state.phase).toBe('open');
      expect(r.state.grant).toBeNull();
    }
  });

  it('with a secret, a wrong proof falls back to the token: a client runs with its grant, others are refused', () => {
    expect(serverSession(CALENDAR, { secret: 's3cret-s3cret' }).state.grant).toEqual(CALENDAR);
    expect(serverSession('none', { secret: 's3cret-s3cret' }).state.closeReason?.code).toBe('unauthorized');
  });
});

describe('what a client may write', () => {
  it('the documents it may not write are left out of the apply, named in a refused message, and acked all the same', () => {
    let s = pulling(CALENDAR);
    const changes: Change[] = [
      { docs: [doc('events', 'e1')] },
      { docs: [doc('notes', 'n1')] },
      // An atomic change across both: its writable part is applied.
      { docs: [doc('events', 'e2'), doc('holidays', 'h1')] },
      // Settings count as their collection's.
      { docs: [doc('_config', 'notes'), doc('_config', 'events')] },
    ];
    const r = step(s, received(batch(1, 9, changes)));
    expect(r.effects).toEqual([
      {
        type: 'apply',
        batch: {
          ...batch(1, 9, [
            { docs: [doc('events', 'e1')] },
            { docs: [doc('events', 'e2')] },
            { docs: [doc('_config', 'events')] },
          ]),
          // The client's context counts the refused writes: it is not joined.
          context: null,
        },
      },
    ]);
    s = r.state;
    const applied = step(s, { type: 'batch-applied', id: 1, toSeq: 9 });
    const [refused, ack] = sends(applied.effects);
    expect(refused).toEqual({
      type: 'refused',
      id: 1,
      docs: [
        { collection: 'notes', id: 'n1', code: 'forbidden', message: writeRefusal(CALENDAR, 'notes') },
        { collection: 'holidays', id: 'h1', code: 'forbidden', message: writeRefusal(CALENDAR, 'holidays') },
        { collection: '_config', id: 'notes', code: 'forbidden', message: writeRefusal(CALENDAR, 'notes') },
      ],
      omitted: 0,
    });
    // The checkpoint moves past the refused documents: they are never asked for again.
    expect(ack).toEqual({ type: 'ack', id: 1, toSeq: 9 });
    expect(applied.state.checkpoint).toBe(9);
    expect(applied.state.phase).toBe('open');
  });

  it('the session goes on after a refusal: the next batch is applied and acked without one', () => {
    let s = pulling(CALENDAR);
    s = step(s, received(batch(1, 1, [{ docs: [doc('notes', 'n1')] }]))).state;
    s = step(s, { type: 'batch-applied', id: 1, toSeq: 1 }).state;
    const r = step(s, received(batch(2, 2, [{ docs: [doc('events', 'e3')] }])));
    expect(r.effects).toEqual([
      { type: 'apply', batch: { ...batch(2, 2, [{ docs: [doc('events', 'e3')] }]), context: null } },
    ]);
    const applied = step(r.state, { type: 'batch-applied', id: 2, toSeq: 2 });
    expect(sends(applied.effects)).toEqual([{ type: 'ack', id: 2, toSeq: 2 }]);
  });

  it('a refusal lists at most refusedDocsMax documents and counts the rest', () => {
    const many = Array.from({ length: WIRE_LIMITS.refusedDocsMax + 5 }, (_, i) => ({ docs: [doc('notes', `n${i}`)] }));
    let s = pulling(CALENDAR);
    s = step(s, received(batch(1, 3, many))).state;
    const [refused] = sends(step(s, { type: 'batch-applied', id: 1, toSeq: 3 }).effects) as [MessageOf<'refused'>];
    expect(refused.docs).toHaveLength(WIRE_LIMITS.refusedDocsMax);
    expect(refused.omitted).toBe(5);
  });

  it('a grant that writes every collection applies the batch as it came, context included', () => {
    const s = pulling({ name: 'admin', collections: { '*': 'read-write' } });
    const b = batch(1, 2, [{ docs: [doc('notes', 'n1')] }]);
    expect(step(s, received(b)).effects).toEqual([{ type: 'apply', batch: b }]);
  });
});

describe('what a client may read', () => {
  function serving(grant: TokenGrant): SessionState {
    const opened = serverSession(grant).state;
    return step(opened, received({ type: 'pull', since: 0 })).state;
  }

  it('our batches to it hold only the collections it may read, and not our context', () => {
    const s = step(serving(CALENDAR), { type: 'local-change', head: 5 }).state;
    const r = step(s, {
      type: 'batch-read',
      batch: {
        fromSeq: 0,
        toSeq: 5,
        changes: [
          { docs: [doc('events', 'e1'), doc('notes', 'n1')] },
          { docs: [doc('notes', 'n2')] },
          { docs: [doc('holidays', 'h1')] },
          { docs: [doc('_config', 'holidays'), doc('_config', 'notes')] },
        ],
        context: Uint8Array.of(1, 2),
      },
    });
    const [sent] = sends(r.effects);
    expect(sent).toEqual({
      type: 'batch',
      id: 1,
      fromSeq: 0,
      toSeq: 5,
      changes: [
        { docs: [doc('events', 'e1')] },
        { docs: [doc('holidays', 'h1')] },
        { docs: [doc('_config', 'holidays')] },
      ],
      context: null,
    });
    expect(r.state.cursor).toBe(5);
  });

  it('a grant that reads every collection gets our batches as read, context included', () => {
    const s = step(serving({ name: 'reader', collections: { '*': 'read' } }), { type: 'local-change', head: 1 }).state;
    const changes = [{ docs: [doc('notes', 'n1')] }];
    const [sent] = sends(
      step(s, { type: 'batch-read', batch: { fromSeq: 0, toSeq: 1, changes, context: Uint8Array.of(1) } }).effects,
    );
    expect(sent).toMatchObject({ changes, context: Uint8Array.of(1) });
  });
});

describe('the sending side of a refusal', () => {
  /** A client session with batch 1 (through seq 3) in flight. */
  function inFlight(): SessionState {
    let s = initialSession({ self: 'laptop', cluster: CLUSTER, window: 4 });
    s = step(s, { type: 'start', head: 3, context: Uint8Array.of(0), challenge: CHALLENGE }).state;
    s = step(s, received(hello('srv'))).state;
    s = step(s, received({ type: 'auth', proof: new Uint8Array(0) })).state;
    s = step(s, received({ type: 'pull', since: 0 })).state;
    return step(s, {
      type: 'batch-read',
      batch: { fromSeq: 0, toSeq: 3, changes: [{ docs: [doc('notes', 'n1')] }], context: null },
    }).state;
  }
  const refusal: MessageOf<'refused'> = {
    type: 'refused',
    id: 1,
    docs: [{ collection: 'notes', id: 'n1', code: 'forbidden', message: 'no right on notes' }],
    omitted: 0,
  };

  it('is reported, and the ack that follows settles the batch', () => {
    const r = step(inFlight(), received(refusal));
    expect(r.effects).toEqual([{ type: 'refused', message: refusal }]);
    const acked = step(r.state, received({ type: 'ack', id: 1, toSeq: 3 }));
    expect(acked.state.acked).toBe(3);
    expect(acked.state.phase).toBe('open');
  });

  it('a refusal for a batch that is not the oldest in flight closes with a protocol error', () => {
    const r = step(inFlight(), received({ ...refusal, id: 2 }));
    expect(r.state.closeReason?.code).toBe('protocol');
  });
});
