/**
 * Guards the wire schema: a change to any message, tag, field order or encoding changes the
 * digest below, and the test fails until PROTOCOL_VERSION is bumped and the change recorded.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { toHex } from '../core/codec.js';
import { sha256 } from '../core/hash.js';
import { encodeRecord } from '../core/record.js';
import type { RecordState } from '../core/record.js';
import { encodeMessage, WIRE_LIMITS } from './codec.js';
import type { MessageOf, MessageType } from './messages.js';
import { PROTOCOL_VERSION } from './version.js';

/**
 * The digest of the samples' encodings at each protocol version, oldest first. Append a line
 * when the schema changes; never edit an old one.
 */
const RECORDED: readonly { readonly version: number; readonly digest: string }[] = [
  { version: 1, digest: '622c5f010ee5d790c4309dcc72e635e367ff6a3da4bf311da3164708ab620605' },
  { version: 2, digest: '3fbe89d7e0130082a8793e907a2588f87772203790527d248671ab7a91902e83' },
  { version: 3, digest: 'bf51670b72bfc7147ebee5aa77505bec6e7f232422090586f1d8e25306f986dc' },
  { version: 4, digest: '56b4f1c959753edebf798b6ac57bbd115fb144e73a9d9238cf3c0e67f148ccec' },
  { version: 5, digest: '06befb5314fae0545c3c9241c666d26f0e10b9274267e4ed2d960474cc5eadf3' },
];

const hlc = { ms: 1_795_000_000_000, c: 2 };
const EVERY_ENTRY: RecordState = {
  siblings: [
    { dot: { replica: 'a', counter: 1 }, hlc, value: null },
    { dot: { replica: 'a', counter: 2 }, hlc, value: new TextEncoder().encode('{"x":1}') },
    { dot: { replica: 'b', counter: 1 }, hlc, value: new TextEncoder().encode('"Standup"'), path: '/title' },
    {
      dot: { replica: 'b', counter: 2 },
      hlc,
      value: new TextEncoder().encode('[3,1]'),
      path: '/visits',
      type: 'count',
    },
    {
      dot: { replica: 'c', counter: 1 },
      hlc,
      value: new TextEncoder().encode('"red"'),
      path: '/tags',
      type: 'element',
    },
  ],
  context: new Map([
    ['a', 2],
    ['b', 2],
    ['c', 1],
  ]),
};

// A mapped type, so a new message type does not compile until it has a sample here.
const SAMPLES: { readonly [T in MessageType]: readonly MessageOf<T>[] } = {
  hello: [
    {
      type: 'hello',
      protocol: 1,
      cluster: 'prod-eu',
      replica: 'paris-1',
      context: new Uint8Array([1, 7, 0x61, 3, 0]),
      challenge: new Uint8Array([0xde, 0xad, 0xbe, 0xef]),
    },
  ],
  auth: [{ type: 'auth', proof: new Uint8Array([0, 1, 2, 3, 0xff]) }],
  pull: [{ type: 'pull', since: 300 }],
  batch: [
    {
      type: 'batch',
      id: 17,
      fromSeq: 128,
      toSeq: 130,
      changes: [
        { docs: [{ collection: 'users', id: 'ana', state: new Uint8Array([1, 2]) }] },
        {
          docs: [
            { collection: 'orders', id: 'o-1', state: new Uint8Array([3]) },
            { collection: 'orders', id: 'é😀', state: new Uint8Array(0) },
          ],
        },
      ],
      context: new Uint8Array([9, 9]),
    },
    { type: 'batch', id: 18, fromSeq: 131, toSeq: 131, changes: [], context: null },
    // Document states are part of the wire format: one entry of every kind.
    {
      type: 'batch',
      id: 19,
      fromSeq: 131,
      toSeq: 132,
      changes: [{ docs: [{ collection: 'events', id: 'e1', state: encodeRecord(EVERY_ENTRY) }] }],
      context: null,
    },
    // The system collections a peer must accept: settings, and (version 5) sequences.
    {
      type: 'batch',
      id: 20,
      fromSeq: 132,
      toSeq: 133,
      changes: [
        {
          docs: [
            { collection: '_config', id: 'events', state: new Uint8Array([4]) },
            { collection: '_sequences', id: 'invoice/grants/eu-1', state: new Uint8Array([5]) },
          ],
        },
      ],
      context: null,
    },
  ],
  ack: [{ type: 'ack', id: 17, toSeq: 2 ** 40 }],
  error: [{ type: 'error', code: 'protocol', message: 'bad frame' }],
  ping: [{ type: 'ping', nonce: 42 }],
  pong: [{ type: 'pong', nonce: 42 }],
  presence: [
    {
      type: 'presence',
      publisher: 'paris-1~k3j9x',
      room: 'notes/n1',
      counter: 7,
      hops: 0,
      ttlMs: 30_000,
      state: '{"name":"Ana","color":"#e33","cursor":{"anchor":3,"head":9}}',
    },
    { type: 'presence', publisher: 'paris-1~k3j9x', room: 'notes/n1', counter: 8, hops: 2, ttlMs: 30_000, state: null },
  ],
  refused: [
    {
      type: 'refused',
      id: 17,
      docs: [
        {
          collection: 'notes',
          id: 'n1',
          code: 'forbidden',
          message: 'token "calendar-app" has no right on collection notes: writing needs read-write',
        },
      ],
      omitted: 3,
    },
    { type: 'refused', id: 18, docs: [], omitted: 0 },
  ],
};

function schemaDigest(): string {
  const frames = Object.values(SAMPLES).flatMap((samples) => samples.map((m) => encodeMessage(m)));
  const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of frames) {
    all.set(f, at);
    at += f.length;
  }
  // The limits are part of the schema too, though no sample reaches them.
  const limits = new TextEncoder().encode(JSON.stringify(WIRE_LIMITS));
  const input = new Uint8Array(all.length + limits.length);
  input.set(all);
  input.set(limits, all.length);
  return toHex(sha256(input));
}

describe('protocol schema', () => {
  it('the encoding of the sample messages matches the digest recorded for the current PROTOCOL_VERSION', () => {
    const digest = schemaDigest();
    const latest = RECORDED[RECORDED.length - 1];
    const fix =
      `The wire schema (messages, tags, field order, encoding or WIRE_LIMITS) no longer matches the ` +
      `digest recorded for protocol version ${latest?.version}. If the schema changed on purpose: ` +
      `bump PROTOCOL_VERSION in src/protocol/version.ts, add a history line there, and append ` +
      `{ version: ${latest === undefined ? PROTOCOL_VERSION : latest.version + 1}, digest: '${digest}' } to RECORDED ` +
      `in src/protocol/schema.test.ts. Peers on the old version cannot read the new frames.`;
    expect(latest?.digest, fix).toBe(digest);
    expect(
      latest?.version,
      `PROTOCOL_VERSION is ${PROTOCOL_VERSION} but the latest recorded digest is for version ${latest?.version}: ` +
        `record the digest of version ${PROTOCOL_VERSION} in RECORDED in src/protocol/schema.test.ts.`,
    ).toBe(PROTOCOL_VERSION);
  });

  it('each recorded protocol version follows the previous one and has its own digest', () => {
    RECORDED.forEach((r, i) => expect(r.version, 'RECORDED versions must count up by one').toBe(i + 1));
    const digests = new Set(RECORDED.map((r) => r.digest));
    const hint = 'two protocol versions recorded the same digest: the schema did not change';
    expect(digests.size, hint).toBe(RECORDED.length);
  });

  it('version.ts has a history line for the current PROTOCOL_VERSION', () => {
    const source = readFileSync(new URL('./version.ts', import.meta.url), 'utf8');
    expect(
      source,
      `add a line "// ${PROTOCOL_VERSION} (YYYY-MM-DD): what changed." to the history in src/protocol/version.ts`,
    ).toMatch(new RegExp(`^// ${PROTOCOL_VERSION} \\(\\d{4}-\\d{2}-\\d{2}\\): \\S`, 'm'));
  });
});
