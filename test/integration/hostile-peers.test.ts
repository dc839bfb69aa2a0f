/**
 * Hostile and forged peers against real leaders (DESIGN.md G7, section 4): a leader with a
 * cluster secret refuses peers with a wrong secret or none, while a peer with the secret
 * replicates; raw WebSocket clients on /replicate that send garbage, text, another protocol
 * version, a forged proof or invalid batches are disconnected with a reason (close code 4000,
 * `<code>: <message>`), change nothing (digest and seq unchanged) and the leader keeps serving.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import WebSocket from 'ws';
import { CausalContext, encodeRecord } from '../../src/core/index.js';
import type { RecordState } from '../../src/core/index.js';
import { PROTOCOL_VERSION, decodeMessage, encodeMessage } from '../../src/protocol/index.js';
import type { Change, Message, MessageOf } from '../../src/protocol/index.js';
import { encodeContext } from '../../src/replication/index.js';
import { Cluster, converged, getOk, peersLive, putOk, until } from './harness.js';
import type { Leader, Status } from './harness.js';

const SECRET = 'correct horse battery staple';

const cluster = new Cluster('hostile');
let guarded: Leader;
let friend: Leader;
let wrongSecret: Leader;
let noSecret: Leader;
let open: Leader;

beforeAll(async () => {
  [guarded, friend, wrongSecret, noSecret, open] = (await cluster.start([
    { id: 'guarded', secret: SECRET },
    { id: 'friend', secret: SECRET, peers: ['guarded'] },
    { id: 'wrong', secret: 'not the cluster secret', peers: ['guarded'] },
    { id: 'nosecret', peers: ['guarded'] },
    { id: 'open' },
  ])) as [Leader, Leader, Leader, Leader, Leader];
});

afterAll(async () => {
  await cluster.teardown();
});

describe('a leader with a cluster secret', () => {
  it('replicates with a peer that knows the secret', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await peersLive(friend, ['guarded']);
    await putOk(guarded, 'notes', 'from-guarded', { ok: 1 });
    await putOk(friend, 'notes', 'from-friend', { ok: 2 });
    await converged([guarded, friend]);
    expect((await getOk(friend, 'notes', 'from-guarded')).value).toEqual({ ok: 1 });
    expect((await getOk(guarded, 'notes', 'from-friend')).value).toEqual({ ok: 2 });
  });

  it.each([
    ['a wrong secret', () => wrongSecret],
    ['no secret', () => noSecret],
  ])('refuses a peer with %s, which reports unauthorized and gets nothing', async (_what, peer) => {
    onTestFailed(() => console.error(cluster.logs()));
    const p = peer();
    await putOk(p, 'notes', `from-${p.options.id}`, { forged: true });
    // Its first dial may have failed otherwise (refused, before guarded listened); the
    // handshake itself must fail with unauthorized.
    const s = await until(`${p.options.id} to report the refusal`, async () => {
      const st = await p.status();
      const link = st.peers.find((l) => l.direction === 'outgoing');
      if (link !== undefined && /unauthorized/.test(link.lastError ?? '')) return st;
      throw new Error(`status: ${JSON.stringify(st.peers)}`);
    });
    const link = s.peers.find((l) => l.direction === 'outgoing');
    expect(link?.state).not.toBe('live');
    expect(s.peers.every((l) => l.state !== 'live')).toBe(true);
    expect(await p.get('notes', 'from-guarded')).toBeNull();
    expect(await guarded.get('notes', `from-${p.options.id}`)).toBeNull();
    expect(guarded.output).not.toContain('"level":50');
  });
});

// ---------------------------------------------------------------- raw hostile clients

interface Closed {
  code: number;
  reason: string;
}

/** A raw WebSocket on /replicate that records decoded frames and answers pings. */
class RawPeer {
  readonly ws: WebSocket;
  readonly frames: Message[] = [];
  readonly closed: Promise<Closed>;
  readonly opened: Promise<void>;

  constructor(leader: Leader) {
    this.ws = new WebSocket(`${leader.url.replace('http:', 'ws:')}/replicate`, { perMessageDeflate: false });
    this.ws.on('error', () => {});
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', () => reject(new Error('upgrade refused')));
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) =>
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString('utf8') })),
    );
    this.ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary) return;
      try {
        const m = decodeMessage(new Uint8Array(data));
        this.frames.push(m);
        if (m.type === 'ping') this.send({ type: 'pong', nonce: m.nonce });
      } catch {
        // The server sends only valid frames; a failure shows up in the assertions.
      }
    });
  }

  send(m: Message): void {
    this.ws.send(encodeMessage(m), { binary: true });
  }

  async next<T extends Message['type']>(type: T): Promise<MessageOf<T>> {
    return until(
      `a ${type} from the server`,
      () => this.frames.find((m): m is MessageOf<T> => m.type === type),
      5000,
      10,
    );
  }

  /** hello and auth (no secret on the server: an empty proof), then waits for its pull. */
  async handshake(replica = 'mallory'): Promise<void> {
    await this.opened;
    this.send(hello(replica));
    await this.next('hello');
    this.send({ type: 'auth', proof: new Uint8Array(0) });
    await this.next('pull');
  }

  terminate(): void {
    this.ws.terminate();
  }
}

function hello(replica: string, protocol = PROTOCOL_VERSION): Message {
  return {
    type: 'hello',
    protocol,
    cluster: 'default',
    replica,
    context: encodeContext(new CausalContext()),
    challenge: new Uint8Array(randomBytes(16)),
  };
}

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A well-formed document state written by `replica`, with its clock `aheadMs` in the future. */
function state(replica: string, value: unknown, aheadMs = 0): Uint8Array {
  const s: RecordState = {
    siblings: [
      { dot: { replica, counter: 1 }, hlc: { ms: Date.now() + aheadMs, c: 0 }, value: utf8(JSON.stringify(value)) },
    ],
    context: new Map([[replica, 1]]),
  };
  return encodeRecord(s).slice();
}

function batch(changes: Change[], fromSeq = 0): Message {
  return { type: 'batch', id: 1, fromSeq, toSeq: fromSeq + changes.length, changes, context: null };
}

const good: Change = { docs: [{ collection: 'notes', id: 'smuggled', state: state('mallory', { evil: false }) }] };

const snapshot = async (l: Leader): Promise<Pick<Status, 'seq' | 'digest' | 'docs'>> => {
  const s = await l.status();
  return { seq: s.seq, digest: s.digest, docs: s.docs };
};

describe('raw clients on /replicate', () => {
  const cases: [string, (p: RawPeer) => Promise<void>, RegExp][] = [
    [
      'garbage bytes',
      async (p) => p.ws.send(Buffer.from([0xff, 0x13, 0x37, 0x00, 0x42]), { binary: true }),
      /^protocol: /,
    ],
    ['a text frame', async (p) => p.ws.send('{"type":"hello"}'), /^protocol: .*text/],
    ['an empty binary frame', async (p) => p.ws.send(Buffer.alloc(0), { binary: true }), /^protocol: /],
    [
      'a hello of another protocol version',
      async (p) => p.send(hello('mallory', PROTOCOL_VERSION + 1)),
      /^protocol_version: /,
    ],
    [
      'a hello of another cluster',
      async (p) => p.send({ ...(hello('mallory') as MessageOf<'hello'>), cluster: 'elsewhere' }),
      /^wrong_cluster: /,
    ],
    ['a hello with the leader’s own replica id', async (p) => p.send(hello('open')), /^same_replica: /],
    ['a batch before any hello', async (p) => p.send(batch([good])), /^protocol: /],
    [
      'a valid hello, then a batch with a state that does not decode',
      async (p) => {
        await p.handshake();
        p.send(batch([{ docs: [{ collection: 'notes', id: 'evil', state: new Uint8Array([1, 2, 3, 4, 5]) }] }]));
      },
      /^protocol: invalid state/,
    ],
    [
      'a valid hello, then a batch whose second change names an invalid document',
      async (p) => {
        await p.handshake();
        p.send(batch([good, { docs: [{ collection: '9-not-a-collection', id: 'x', state: state('mallory', 1) }] }]));
      },
      /^protocol: change names an invalid document/,
    ],
    [
      'a valid hello, then a batch with a value that is not JSON',
      async (p) => {
        await p.handshake();
        const s: RecordState = {
          siblings: [{ dot: { replica: 'mallory', counter: 2 }, hlc: { ms: Date.now(), c: 0 }, value: utf8('{nope') }],
          context: new Map([['mallory', 2]]),
        };
        p.send(batch([good, { docs: [{ collection: 'notes', id: 'bad-json', state: encodeRecord(s).slice() }] }]));
      },
      /^protocol: invalid state for notes\/bad-json/,
    ],
    [
      'a valid hello, then a batch with a clock an hour ahead',
      async (p) => {
        await p.handshake();
        p.send(batch([good, { docs: [{ collection: 'notes', id: 'future', state: state('mallory', 1, 3_600_000) }] }]));
      },
      /^clock_skew: /,
    ],
    [
      'a valid hello, then a batch that does not start at the checkpoint',
      async (p) => {
        await p.handshake();
        p.send(batch([good], 7));
      },
      /^protocol: batch starts at 7/,
    ],
    [
      'a valid hello, then an ack for a batch never sent',
      async (p) => {
        await p.handshake();
        p.send({ type: 'ack', id: 9, toSeq: 99 });
      },
      /^protocol: ack without a batch in flight/,
    ],
    [
      'a valid hello, then a second pull',
      async (p) => {
        await p.handshake();
        p.send({ type: 'pull', since: 0 });
        p.send({ type: 'pull', since: 0 });
      },
      /^protocol: pulled twice/,
    ],
  ];

  it.each(cases)('closes a session that sends %s, with a reason, and changes nothing', async (_what, act, reason) => {
    onTestFailed(() => console.error(cluster.logs()));
    const before = await snapshot(open);
    const peer = new RawPeer(open);
    try {
      await peer.opened;
      await act(peer);
      const closed = await Promise.race([
        peer.closed,
        new Promise<Closed>((_, reject) => setTimeout(() => reject(new Error('the server did not close')), 5000)),
      ]);
      expect(closed.code).toBe(4000);
      expect(closed.reason).toMatch(reason);
      // The server says why in an error message first, when the frame could still be sent.
      const told = peer.frames.find((m) => m.type === 'error');
      if (told !== undefined) expect(closed.reason.startsWith(`${told.code}: `)).toBe(true);
    } finally {
      peer.terminate();
    }
    expect(await snapshot(open)).toEqual(before);
    expect(await open.get('notes', 'smuggled')).toBeNull();
    // And it keeps serving.
    const key = `after-${Math.random().toString(36).slice(2)}`;
    await putOk(open, 'notes', key, { still: 'serving' });
    expect((await getOk(open, 'notes', key)).value).toEqual({ still: 'serving' });
  });

  it('closes a session that stays silent, on the heartbeat deadline', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    const peer = new RawPeer(open);
    peer.ws.removeAllListeners('message'); // hears pings but never answers
    try {
      await peer.opened;
      const closed = await Promise.race([
        peer.closed,
        new Promise<Closed>((_, reject) => setTimeout(() => reject(new Error('the server did not close')), 10_000)),
      ]);
      expect(closed.code).toBe(4000);
      expect(closed.reason).toMatch(/^timeout: /);
    } finally {
      peer.terminate();
    }
  });

  it('refuses a forged proof for a leader with a secret', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    const before = await snapshot(guarded);
    const peer = new RawPeer(guarded);
    try {
      await peer.opened;
      // Claims to be the friend, but cannot answer the challenge.
      peer.send(hello('friend'));
      await peer.next('hello');
      peer.send({ type: 'auth', proof: new Uint8Array(randomBytes(32)) });
      // Pushes a batch anyway, right behind the forged proof.
      peer.send({ type: 'pull', since: 0 });
      peer.send(batch([good]));
      const closed = await peer.closed;
      expect(closed.code).toBe(4000);
      expect(closed.reason).toMatch(/^unauthorized: /);
      expect(peer.frames.some((m) => m.type === 'batch')).toBe(false);
    } finally {
      peer.terminate();
    }
    expect(await snapshot(guarded)).toEqual(before);
    expect(await guarded.get('notes', 'smuggled')).toBeNull();
  });

  it('accepts a well-behaved raw peer after all that, and applies its valid batch', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    const peer = new RawPeer(open);
    try {
      await peer.handshake('honest');
      const change: Change = { docs: [{ collection: 'notes', id: 'from-raw', state: state('honest', { hi: 1 }) }] };
      peer.send(batch([change]));
      const ack = await peer.next('ack');
      expect(ack).toEqual({ type: 'ack', id: 1, toSeq: 1 });
      expect((await getOk(open, 'notes', 'from-raw')).value).toEqual({ hi: 1 });
    } finally {
      peer.terminate();
    }
  });
});
