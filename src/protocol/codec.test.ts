import { describe, expect, it } from 'vitest';
import { dbErrorOf } from '../../test/support/errors.js';
import { Encoder } from '../core/codec.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { decodeMessage, encodeMessage, WIRE_LIMITS } from './codec.js';
import type { Message, MessageOf } from './messages.js';
import { PROTOCOL_VERSION } from './version.js';

function refusal(frame: Uint8Array, limits?: { frameBytesMax?: number }): DbError {
  const e = dbErrorOf(() => decodeMessage(frame, limits));
  expect(e.code).toBe(ErrorCode.protocol);
  return e;
}

function hello(fields: { cluster?: string; replica?: string } = {}): MessageOf<'hello'> {
  return {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    cluster: fields.cluster ?? 'c',
    replica: fields.replica ?? 'r',
    context: new Uint8Array([1, 2]),
    challenge: new Uint8Array(0),
  };
}

/** A batch of one change of one document, written by hand so the decoder can be fed invalid values. */
function rawBatch(doc: { collection: string; id: string }): Uint8Array {
  const enc = new Encoder().byte(4).uint(1).uint(1).uint(2); // tag, id, fromSeq, toSeq
  enc
    .uint(1)
    .uint(1)
    .string(doc.collection)
    .string(doc.id)
    .bytes(new Uint8Array([9])); // one change, one doc
  return enc.byte(0).finish(); // no context
}

function rawHello(cluster: string, replica: string): Uint8Array {
  const enc = new Encoder().byte(1).uint(PROTOCOL_VERSION).string(cluster).string(replica);
  return enc.bytes(new Uint8Array(0)).bytes(new Uint8Array(0)).finish();
}

function rawError(code: string, message: string): Uint8Array {
  return new Encoder().byte(6).string(code).string(message).finish();
}

function presence(fields: Partial<MessageOf<'presence'>> = {}): MessageOf<'presence'> {
  return {
    type: 'presence',
    publisher: 'p~1',
    room: 'notes/n1',
    counter: 1,
    hops: 0,
    ttlMs: 30_000,
    state: '{}',
    ...fields,
  };
}

/** A presence frame written by hand, so the decoder can be fed values the encoder refuses. */
function rawPresence(fields: { room?: string; hops?: number; ttlMs?: number; state?: Uint8Array | null }): Uint8Array {
  const enc = new Encoder()
    .byte(9)
    .string('p~1')
    .string(fields.room ?? 'r')
    .uint(1)
    .uint(fields.hops ?? 0)
    .uint(fields.ttlMs ?? 1000);
  const state = fields.state === undefined ? new TextEncoder().encode('{}') : fields.state;
  if (state === null) return enc.byte(0).finish();
  return enc.byte(1).bytes(state).finish();
}

describe('encodeMessage', () => {
  it('writes each message type behind its documented tag byte', () => {
    const tags: [Message, number][] = [
      [hello(), 1],
      [{ type: 'auth', proof: new Uint8Array(0) }, 2],
      [{ type: 'pull', since: 0 }, 3],
      [{ type: 'batch', id: 0, fromSeq: 0, toSeq: 0, changes: [], context: null }, 4],
      [{ type: 'ack', id: 0, toSeq: 0 }, 5],
      [{ type: 'error', code: 'x', message: '' }, 6],
      [{ type: 'ping', nonce: 0 }, 7],
      [{ type: 'pong', nonce: 0 }, 8],
      [presence(), 9],
    ];
    for (const [m, tag] of tags) expect(encodeMessage(m)[0]).toBe(tag);
  });

  it('refuses a message the decoder would refuse, as invalid input', () => {
    const invalid: Message[] = [
      hello({ replica: '' }),
      hello({ cluster: 'c'.repeat(129) }),
      hello({ replica: 'a\ud800b' }),
      { type: 'pull', since: -1 },
      { type: 'ping', nonce: 1.5 },
      { type: 'ack', id: 0, toSeq: Number.MAX_SAFE_INTEGER + 1 },
      { type: 'batch', id: 0, fromSeq: 5, toSeq: 4, changes: [], context: null },
      {
        type: 'batch',
        id: 0,
        fromSeq: 0,
        toSeq: 1,
        changes: [{ docs: [{ collection: '', id: 'x', state: new Uint8Array(0) }] }],
        context: null,
      },
      { type: 'error', code: 'x', message: 'm'.repeat(1025) },
      presence({ room: 'r'.repeat(WIRE_LIMITS.presenceRoomCharsMax + 1) }),
      presence({ publisher: '' }),
      presence({ state: 'not json' }),
      presence({ state: 'null' }),
      presence({ state: JSON.stringify('x'.repeat(WIRE_LIMITS.presenceStateBytesMax)) }),
      presence({ ttlMs: 0 }),
      presence({ hops: WIRE_LIMITS.presenceHopsMax + 1 }),
    ];
    for (const m of invalid) expect(dbErrorOf(() => encodeMessage(m)).code).toBe(ErrorCode.invalidInput);
  });
});

describe('decodeMessage', () => {
  it('refuses an empty frame', () => {
    expect(refusal(new Uint8Array(0)).message).toMatch(/empty frame/);
  });

  it('refuses an unknown tag', () => {
    expect(refusal(new Uint8Array([0])).message).toMatch(/unknown message tag 0/);
    expect(refusal(new Uint8Array([11, 0])).message).toMatch(/unknown message tag 11/);
  });

  it('refuses a frame longer than frameBytesMax before reading it', () => {
    const frame = encodeMessage({ type: 'ping', nonce: 300 });
    expect(decodeMessage(frame, { frameBytesMax: frame.length })).toEqual({ type: 'ping', nonce: 300 });
    expect(refusal(frame, { frameBytesMax: frame.length - 1 }).message).toMatch(/exceeds the limit/);
  });

  it('refuses a frame longer than 64 MiB by default', () => {
    expect(WIRE_LIMITS.frameBytesMax).toBe(64 * 1024 * 1024);
    const frame = new Uint8Array(WIRE_LIMITS.frameBytesMax + 1);
    frame[0] = 7;
    expect(refusal(frame).message).toMatch(/exceeds the limit/);
  });

  it('refuses an overlong varint and keeps the decoder error as its cause', () => {
    const e = refusal(new Uint8Array([3, 0x80, 0x00]));
    expect(e.message).toMatch(/invalid pull message \(since\): .*overlong varint/);
    expect(e.cause).toBeInstanceOf(DbError);
    expect((e.cause as DbError).code).toBe(ErrorCode.corrupt);
  });

  it('refuses trailing bytes', () => {
    expect(refusal(new Uint8Array([7, 1, 0])).message).toMatch(/trailing bytes/);
  });

  it('refuses invalid UTF-8 in a string', () => {
    const frame = new Encoder()
      .byte(6)
      .bytes(new Uint8Array([0xc3, 0x28]))
      .string('m')
      .finish();
    expect(refusal(frame).message).toMatch(/code is not valid UTF-8/);
  });

  it('accepts strings at their length bounds and refuses one character more or an empty one', () => {
    const cases: [string, (s: string) => Uint8Array, number][] = [
      ['cluster', (s) => rawHello(s, 'r'), 128],
      ['replica', (s) => rawHello('c', s), 128],
      ['collection', (s) => rawBatch({ collection: s, id: 'd' }), 64],
      ['doc id', (s) => rawBatch({ collection: 'c', id: s }), 256],
      ['code', (s) => rawError(s, ''), 64],
    ];
    for (const [what, frame, max] of cases) {
      expect(() => decodeMessage(frame('x'.repeat(max)))).not.toThrow();
      expect(refusal(frame('x'.repeat(max + 1))).message).toContain(`${what} must be 1-${max} characters`);
      expect(refusal(frame('')).message).toContain(`${what} must be 1-${max} characters`);
    }
    expect(decodeMessage(rawError('c', ''))).toEqual({ type: 'error', code: 'c', message: '' });
    expect(() => decodeMessage(rawError('c', 'm'.repeat(1024)))).not.toThrow();
    expect(refusal(rawError('c', 'm'.repeat(1025))).message).toContain('message must be at most 1024 characters');
  });

  it('counts string length in UTF-16 code units, like the rest of the database', () => {
    // 32 astral characters are 64 code units, the most a collection name may have.
    expect(() => decodeMessage(rawBatch({ collection: '😀'.repeat(32), id: 'd' }))).not.toThrow();
    expect(refusal(rawBatch({ collection: '😀'.repeat(33), id: 'd' })).message).toMatch(/collection must be/);
  });

  it('keeps a leading byte order mark in a string', () => {
    const m: Message = { type: 'error', code: '\ufeffcode', message: '\ufeff' };
    expect(decodeMessage(encodeMessage(m))).toEqual(m);
  });

  it('refuses a batch whose fromSeq is after its toSeq', () => {
    const frame = new Encoder().byte(4).uint(0).uint(5).uint(4).uint(0).byte(0).finish();
    expect(refusal(frame).message).toMatch(/fromSeq 5 is after toSeq 4/);
  });

  it('refuses more changes per batch or documents per change than the limits allow', () => {
    const changes = new Encoder().byte(4).uint(0).uint(0).uint(0).uint(100_001).finish();
    expect(refusal(changes).message).toMatch(/100001 changes exceed the limit of 100000/);
    const docs = new Encoder().byte(4).uint(0).uint(0).uint(0).uint(1).uint(100_001).finish();
    expect(refusal(docs).message).toMatch(/100001 docs exceed the limit of 100000/);
  });

  it('refuses a count larger than the bytes left in the frame', () => {
    const frame = new Encoder().byte(4).uint(0).uint(0).uint(0).uint(5).uint(0).byte(0).finish();
    expect(refusal(frame).message).toMatch(/5 changes announced but only 2 bytes left/);
  });

  it('refuses a batch context presence byte other than 0 or 1', () => {
    const frame = new Encoder().byte(4).uint(0).uint(0).uint(0).uint(0).byte(2).finish();
    expect(refusal(frame).message).toMatch(/presence byte must be 0 or 1, got 2/);
  });

  it('names the version mismatch when a hello from another protocol version does not parse', () => {
    const frame = new Encoder()
      .byte(1)
      .uint(PROTOCOL_VERSION + 1)
      .uint(77)
      .finish();
    const e = refusal(frame);
    expect(e.message).toMatch(new RegExp(`peer speaks protocol version ${PROTOCOL_VERSION + 1}`));
    expect(e.details).toEqual({ peerProtocol: PROTOCOL_VERSION + 1, protocol: PROTOCOL_VERSION });
  });

  it('decodes a hello from another protocol version that parses, leaving the decision to the session', () => {
    const m: Message = { ...hello(), protocol: PROTOCOL_VERSION + 1 };
    expect(decodeMessage(encodeMessage(m))).toEqual(m);
  });

  it('decodes a presence update and a leave exactly as they were encoded', () => {
    const update = presence({ state: ' {"cursor": {"anchor": 3, "head": 9}, "name": "Ana \u00e9"} ' });
    const leave = presence({ counter: 9, hops: 3, state: null });
    expect(decodeMessage(encodeMessage(update))).toEqual(update);
    expect(decodeMessage(encodeMessage(leave))).toEqual(leave);
  });

  it('accepts a presence state of exactly 4 KiB and refuses one byte more', () => {
    const limit = WIRE_LIMITS.presenceStateBytesMax;
    const fits = new TextEncoder().encode(JSON.stringify('x'.repeat(limit - 2)));
    expect(fits.length).toBe(limit);
    expect(decodeMessage(rawPresence({ state: fits }))).toMatchObject({ type: 'presence' });
    const over = new TextEncoder().encode(JSON.stringify('x'.repeat(limit - 1)));
    expect(refusal(rawPresence({ state: over })).message).toMatch(/state of 4097 bytes exceeds the limit of 4096/);
  });

  it('refuses a presence state that is not JSON, is JSON null, or nests too deep', () => {
    const enc = (t: string): Uint8Array => new TextEncoder().encode(t);
    expect(refusal(rawPresence({ state: enc('{"a":') })).message).toMatch(/state is not JSON text/);
    expect(refusal(rawPresence({ state: enc(' null ') })).message).toMatch(/state is JSON null/);
    const deep = '['.repeat(WIRE_LIMITS.presenceStateDepthMax + 1) + ']'.repeat(WIRE_LIMITS.presenceStateDepthMax + 1);
    expect(refusal(rawPresence({ state: enc(deep) })).message).toMatch(/state is not JSON text/);
    expect(refusal(rawPresence({ state: new Uint8Array([0x22, 0xff, 0x22]) })).message).toMatch(/not JSON text/);
  });

  it('refuses a presence room longer than 256 characters, and hops or a ttl out of bounds', () => {
    expect(refusal(rawPresence({ room: 'r'.repeat(257) })).message).toMatch(/room must be 1-256 characters/);
    expect(refusal(rawPresence({ room: '' })).message).toMatch(/room must be 1-256 characters/);
    expect(refusal(rawPresence({ hops: WIRE_LIMITS.presenceHopsMax + 1 })).message).toMatch(/hops must be in 0-64/);
    expect(refusal(rawPresence({ ttlMs: 0 })).message).toMatch(/ttlMs must be in 1-600000/);
    expect(refusal(rawPresence({ ttlMs: WIRE_LIMITS.presenceTtlMsMax + 1 })).message).toMatch(/ttlMs must be in/);
  });

  it('refuses a presence state flag other than 0 or 1', () => {
    const frame = new Encoder().byte(9).string('p~1').string('r').uint(1).uint(0).uint(1000).byte(2).finish();
    expect(refusal(frame).message).toMatch(/state presence byte must be 0 or 1, got 2/);
  });

  it('returns byte fields that stay intact when the frame buffer is reused', () => {
    const m: Message = {
      type: 'batch',
      id: 1,
      fromSeq: 1,
      toSeq: 1,
      changes: [{ docs: [{ collection: 'c', id: 'd', state: new Uint8Array([1, 2, 3]) }] }],
      context: new Uint8Array([4, 5]),
    };
    const frame = encodeMessage(m);
    const decoded = decodeMessage(frame);
    frame.fill(0);
    expect(decoded).toEqual(m);
  });
});
