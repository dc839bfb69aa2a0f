import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDbError, ErrorCode } from '../shared/errors.js';
import { decodeMessage, encodeMessage, WIRE_LIMITS } from './codec.js';
import type { Message, MessageOf, MessageType } from './messages.js';

/** Any well-formed string of minChars..maxChars UTF-16 code units, astral characters included. */
function text(minChars: number, maxChars: number): fc.Arbitrary<string> {
  return fc
    .string({ unit: 'binary', minLength: minChars, maxLength: maxChars })
    .filter((s) => s.length >= minChars && s.length <= maxChars);
}

const uint = fc.oneof(fc.integer({ min: 0, max: 300 }), fc.maxSafeNat());
const bytes = fc.uint8Array({ maxLength: 40 });

const docChange = fc.record({
  collection: text(1, WIRE_LIMITS.collectionCharsMax),
  id: text(1, WIRE_LIMITS.docIdCharsMax),
  state: bytes,
});

// A mapped type, so a new message type does not compile until it has an arbitrary here.
const messageOfType: { [T in MessageType]: fc.Arbitrary<MessageOf<T>> } = {
  hello: fc.record({
    type: fc.constant('hello'),
    protocol: uint,
    cluster: text(1, WIRE_LIMITS.clusterCharsMax),
    replica: text(1, WIRE_LIMITS.replicaCharsMax),
    context: bytes,
    challenge: bytes,
  }),
  auth: fc.record({ type: fc.constant('auth'), proof: bytes }),
  pull: fc.record({ type: fc.constant('pull'), since: uint }),
  batch: fc
    .record({
      id: uint,
      seqs: fc.tuple(uint, uint),
      changes: fc.array(fc.record({ docs: fc.array(docChange, { maxLength: 4 }) }), { maxLength: 4 }),
      context: fc.option(bytes, { nil: null }),
    })
    .map(({ id, seqs: [a, b], changes, context }) => ({
      type: 'batch' as const,
      id,
      fromSeq: Math.min(a, b),
      toSeq: Math.max(a, b),
      changes,
      context,
    })),
  ack: fc.record({ type: fc.constant('ack'), id: uint, toSeq: uint }),
  error: fc.record({
    type: fc.constant('error'),
    code: text(1, WIRE_LIMITS.errorCodeCharsMax),
    message: text(0, WIRE_LIMITS.errorMessageCharsMax),
  }),
  ping: fc.record({ type: fc.constant('ping'), nonce: uint }),
  pong: fc.record({ type: fc.constant('pong'), nonce: uint }),
  presence: fc.record({
    type: fc.constant('presence'),
    publisher: text(1, WIRE_LIMITS.presencePublisherCharsMax),
    room: text(1, WIRE_LIMITS.presenceRoomCharsMax),
    counter: uint,
    hops: fc.integer({ min: 0, max: WIRE_LIMITS.presenceHopsMax }),
    ttlMs: fc.integer({ min: 1, max: WIRE_LIMITS.presenceTtlMsMax }),
    // JSON text as it comes, whitespace and escapes included: the codec carries it verbatim.
    state: fc.option(
      fc.json({ maxDepth: 4 }).filter((t) => t !== 'null'),
      { nil: null },
    ),
  }),
  refused: fc.record({
    type: fc.constant('refused'),
    id: uint,
    docs: fc.array(
      fc.record({
        collection: text(1, WIRE_LIMITS.collectionCharsMax),
        id: text(1, WIRE_LIMITS.docIdCharsMax),
        code: text(1, WIRE_LIMITS.errorCodeCharsMax),
        message: text(0, WIRE_LIMITS.errorMessageCharsMax),
      }),
      { maxLength: 3 },
    ),
    omitted: uint,
  }),
};

const message: fc.Arbitrary<Message> = fc.oneof(...Object.values(messageOfType));

/** Decodes, letting through only DbError('protocol'): anything else fails the property. */
function tryDecode(frame: Uint8Array): Message | undefined {
  try {
    return decodeMessage(frame);
  } catch (e) {
    if (isDbError(e, ErrorCode.protocol)) return undefined;
    throw e;
  }
}

function byteFields(value: unknown, out: Uint8Array[] = []): Uint8Array[] {
  if (value instanceof Uint8Array) out.push(value);
  else if (typeof value === 'object' && value !== null) for (const v of Object.values(value)) byteFields(v, out);
  return out;
}

describe('protocol codec laws', () => {
  for (const [type, arbitrary] of Object.entries(messageOfType) as [MessageType, fc.Arbitrary<Message>][]) {
    it(`a ${type} message decodes to a message equal to the one encoded`, () => {
      fc.assert(
        fc.property(arbitrary, (m) => {
          expect(decodeMessage(encodeMessage(m))).toEqual(m);
        }),
      );
    });
  }

  it('decoded byte fields are copies that share no memory with the frame', () => {
    fc.assert(
      fc.property(message, (m) => {
        const frame = encodeMessage(m);
        for (const b of byteFields(decodeMessage(frame))) expect(b.buffer).not.toBe(frame.buffer);
      }),
    );
  });

  it('every strict prefix of a valid frame is refused as a protocol error', () => {
    fc.assert(
      fc.property(message, (m) => {
        const frame = encodeMessage(m);
        for (let n = 0; n < frame.length; n++) expect(tryDecode(frame.subarray(0, n))).toBeUndefined();
      }),
    );
  });

  it('a valid frame with any byte appended is refused as a protocol error', () => {
    fc.assert(
      fc.property(message, fc.integer({ min: 0, max: 255 }), (m, extra) => {
        const frame = encodeMessage(m);
        const longer = new Uint8Array(frame.length + 1);
        longer.set(frame);
        longer[frame.length] = extra;
        expect(tryDecode(longer)).toBeUndefined();
      }),
    );
  });

  it('random bytes either decode or fail with a protocol error, never another exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (frame) => void tryDecode(frame)),
      { numRuns: 2000 },
    );
  });

  it('random bytes after a known tag either decode or fail with a protocol error', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9 }), fc.uint8Array({ maxLength: 300 }), (tag, body) => {
        const frame = new Uint8Array(body.length + 1);
        frame[0] = tag;
        frame.set(body, 1);
        void tryDecode(frame);
      }),
      { numRuns: 2000 },
    );
  });

  it('a mutated valid frame either fails with a protocol error or decodes to a message that re-encodes to it', () => {
    fc.assert(
      fc.property(
        message,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
        (m, edits) => {
          const frame = encodeMessage(m);
          for (const [at, b] of edits) frame[at % frame.length] = b;
          const decoded = tryDecode(frame);
          // The encoding is canonical: a frame that decodes is the only encoding of its message.
          if (decoded !== undefined) expect(encodeMessage(decoded)).toEqual(frame);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
