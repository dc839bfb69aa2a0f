/**
 * The binary encoding of replication messages: one tag byte, then the fields in a fixed order,
 * with the canonical varints and length-prefixed runs of core/codec.ts.
 * Invariant: decodeMessage returns only messages that satisfy every rule below, or throws
 * DbError('protocol'); it never throws anything else and never returns views into its input.
 *
 *   frame = tag:byte body            (tag: hello=1 auth=2 pull=3 batch=4 ack=5 error=6 ping=7 pong=8
 *                                     presence=9 refused=10)
 *   hello = protocol:uint cluster:text replica:text context:bytes challenge:bytes
 *   auth  = proof:bytes
 *   pull  = since:uint
 *   batch = id:uint fromSeq:uint toSeq:uint count:uint change*count context:(0 | 1 bytes)
 *   change = count:uint doc*count          doc = collection:text id:text state:bytes
 *   ack   = id:uint toSeq:uint            error = code:text message:text
 *   ping  = nonce:uint                    pong  = nonce:uint
 *   presence = publisher:text room:text counter:uint hops:uint ttlMs:uint state:(0 | 1 bytes)
 *              (state: JSON text in UTF-8, not the literal null; 0 = the publisher left)
 *   refused = id:uint count:uint refusal*count omitted:uint
 *   refusal = collection:text id:text code:text message:text
 *
 * `protocol` comes first in hello so that a peer on another version is still identified.
 */
import { Decoder, Encoder, utf8 } from '../core/codec.js';
import { isJsonText } from '../core/json-check.js';
import { assert, unreachable } from '../shared/assert.js';
import { DbError, ErrorCode, isDbError } from '../shared/errors.js';
import type { Change, DocChange, Message, MessageType, RefusedDoc } from './messages.js';
import { PROTOCOL_VERSION } from './version.js';

/** Bounds checked on both sides of the wire. Changing one changes the schema (see version.ts). */
export const WIRE_LIMITS = {
  /** Largest frame decodeMessage accepts unless told otherwise. */
  frameBytesMax: 64 * 1024 * 1024,
  batchChangesMax: 100_000,
  changeDocsMax: 100_000,
  clusterCharsMax: 128,
  replicaCharsMax: 128,
  collectionCharsMax: 64,
  docIdCharsMax: 256,
  errorCodeCharsMax: 64,
  errorMessageCharsMax: 1024,
  presencePublisherCharsMax: 128,
  presenceRoomCharsMax: 256,
  /** UTF-8 bytes of one presence state's JSON text. */
  presenceStateBytesMax: 4096,
  presenceStateDepthMax: 16,
  /** Relays a presence update may pass: far more than any leader graph needs, a bound on a bug. */
  presenceHopsMax: 64,
  presenceTtlMsMax: 10 * 60 * 1000,
  /** Documents one refused message lists; the rest are only counted (`omitted`). */
  refusedDocsMax: 1000,
} as const;

export interface DecodeLimits {
  /** Frames longer than this are refused before any parsing. Default WIRE_LIMITS.frameBytesMax. */
  readonly frameBytesMax?: number;
}

const Tag = {
  hello: 1,
  auth: 2,
  pull: 3,
  batch: 4,
  ack: 5,
  error: 6,
  ping: 7,
  pong: 8,
  presence: 9,
  refused: 10,
} as const satisfies Record<MessageType, number>;

const typeOfTag: ReadonlyMap<number, MessageType> = new Map(
  Object.entries(Tag).map(([type, tag]) => [tag, type as MessageType]),
);

/**
 * Lengths are in UTF-16 code units (`string.length`), as core/names.ts counts them. One code
 * unit takes at most 3 bytes of UTF-8, which lets the decoder refuse an oversized run unread.
 */
interface TextRule {
  readonly what: string;
  readonly minChars: number;
  readonly maxChars: number;
}

const Text = {
  cluster: { what: 'cluster', minChars: 1, maxChars: WIRE_LIMITS.clusterCharsMax },
  replica: { what: 'replica', minChars: 1, maxChars: WIRE_LIMITS.replicaCharsMax },
  collection: { what: 'collection', minChars: 1, maxChars: WIRE_LIMITS.collectionCharsMax },
  docId: { what: 'doc id', minChars: 1, maxChars: WIRE_LIMITS.docIdCharsMax },
  errorCode: { what: 'code', minChars: 1, maxChars: WIRE_LIMITS.errorCodeCharsMax },
  errorMessage: { what: 'message', minChars: 0, maxChars: WIRE_LIMITS.errorMessageCharsMax },
  publisher: { what: 'publisher', minChars: 1, maxChars: WIRE_LIMITS.presencePublisherCharsMax },
  room: { what: 'room', minChars: 1, maxChars: WIRE_LIMITS.presenceRoomCharsMax },
} as const satisfies Record<string, TextRule>;

const UTF8_BYTES_PER_CHAR_MAX = 3;

// Not core's fromUtf8: its TextDecoder strips a leading U+FEFF, so "\uFEFFx" would not round-trip.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// TextEncoder silently replaces lone surrogates with U+FFFD; refuse them rather than alter text.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function describeLength(rule: TextRule): string {
  return rule.minChars === 0 ? `at most ${rule.maxChars} characters` : `${rule.minChars}-${rule.maxChars} characters`;
}

// ---------------------------------------------------------------------------------------------
// Encoding

/**
 * Encodes one message. Throws DbError('invalid_input') for a message the decoder would refuse
 * (a field out of bounds, a negative or fractional number, a string with a lone surrogate), so
 * an invalid message is caught at its sender.
 */
export function encodeMessage(m: Message): Uint8Array {
  const w = new FrameWriter(m.type);
  switch (m.type) {
    case 'hello':
      w.uint('protocol', m.protocol);
      w.text(Text.cluster, m.cluster);
      w.text(Text.replica, m.replica);
      w.bytes('context', m.context);
      w.bytes('challenge', m.challenge);
      break;
    case 'auth':
      w.bytes('proof', m.proof);
      break;
    case 'pull':
      w.uint('since', m.since);
      break;
    case 'batch':
      w.uint('id', m.id);
      w.uint('fromSeq', m.fromSeq);
      w.uint('toSeq', m.toSeq);
      if (m.fromSeq > m.toSeq) w.fail(`fromSeq ${m.fromSeq} is after toSeq ${m.toSeq}`);
      w.count('changes', m.changes.length, WIRE_LIMITS.batchChangesMax);
      for (const change of m.changes) {
        w.count('docs', change.docs.length, WIRE_LIMITS.changeDocsMax);
        for (const doc of change.docs) {
          w.text(Text.collection, doc.collection);
          w.text(Text.docId, doc.id);
          w.bytes('state', doc.state);
        }
      }
      if (m.context === null) {
        w.enc.byte(0);
      } else {
        w.enc.byte(1);
        w.bytes('context', m.context);
      }
      break;
    case 'ack':
      w.uint('id', m.id);
      w.uint('toSeq', m.toSeq);
      break;
    case 'error':
      w.text(Text.errorCode, m.code);
      w.text(Text.errorMessage, m.message);
      break;
    case 'ping':
    case 'pong':
      w.uint('nonce', m.nonce);
      break;
    case 'presence':
      w.text(Text.publisher, m.publisher);
      w.text(Text.room, m.room);
      w.uint('counter', m.counter);
      w.bounded('hops', m.hops, 0, WIRE_LIMITS.presenceHopsMax);
      w.bounded('ttlMs', m.ttlMs, 1, WIRE_LIMITS.presenceTtlMsMax);
      if (m.state === null) {
        w.enc.byte(0);
      } else {
        if (typeof m.state !== 'string' || LONE_SURROGATE.test(m.state)) w.fail('state must be well-formed text');
        const problem = presenceStateProblem(utf8(m.state));
        if (problem !== null) w.fail(problem);
        w.enc.byte(1);
        w.enc.string(m.state);
      }
      break;
    case 'refused':
      w.uint('id', m.id);
      w.count('docs', m.docs.length, WIRE_LIMITS.refusedDocsMax);
      for (const doc of m.docs) {
        w.text(Text.collection, doc.collection);
        w.text(Text.docId, doc.id);
        w.text(Text.errorCode, doc.code);
        w.text(Text.errorMessage, doc.message);
      }
      w.uint('omitted', m.omitted);
      break;
    default:
      unreachable(m, 'unknown message type');
  }
  return w.enc.finish();
}

class FrameWriter {
  readonly enc = new Encoder();

  constructor(private readonly type: MessageType) {
    this.enc.byte(Tag[type]);
  }

  fail(problem: string): never {
    throw new DbError(ErrorCode.invalidInput, `cannot encode ${this.type} message: ${problem}`);
  }

  uint(what: string, n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) this.fail(`${what} must be a non-negative safe integer, got ${n}`);
    this.enc.uint(n);
  }

  count(what: string, n: number, max: number): void {
    if (n > max) this.fail(`${n} ${what} exceed the limit of ${max}`);
    this.enc.uint(n);
  }

  bounded(what: string, n: number, min: number, max: number): void {
    if (!Number.isSafeInteger(n) || n < min || n > max)
      this.fail(`${what} must be an integer in ${min}-${max}, got ${n}`);
    this.enc.uint(n);
  }

  text(rule: TextRule, s: string): void {
    if (s.length < rule.minChars || s.length > rule.maxChars) {
      this.fail(`${rule.what} must be ${describeLength(rule)}, got ${s.length}`);
    }
    if (LONE_SURROGATE.test(s)) this.fail(`${rule.what} contains a lone surrogate`);
    this.enc.string(s);
  }

  bytes(what: string, b: Uint8Array): void {
    if (!(b instanceof Uint8Array)) this.fail(`${what} must be a Uint8Array`);
    this.enc.bytes(b);
  }
}

// ---------------------------------------------------------------------------------------------
// Decoding

/**
 * Decodes and validates one frame. Throws DbError('protocol') on anything that is not exactly
 * one valid message: empty, oversized, unknown tag, truncated, trailing bytes, overlong varint,
 * invalid UTF-8, a string or count out of bounds, fromSeq after toSeq. Byte fields are copies,
 * so the message does not keep the frame alive.
 */
export function decodeMessage(bytes: Uint8Array, limits: DecodeLimits = {}): Message {
  const frameBytesMax = limits.frameBytesMax ?? WIRE_LIMITS.frameBytesMax;
  assert(Number.isSafeInteger(frameBytesMax) && frameBytesMax > 0, `frameBytesMax must be a positive integer`);
  if (bytes.length > frameBytesMax) {
    throw new DbError(ErrorCode.protocol, `frame of ${bytes.length} bytes exceeds the limit of ${frameBytesMax}`);
  }
  if (bytes.length === 0) throw new DbError(ErrorCode.protocol, 'empty frame');
  const tag = bytes[0] as number;
  const type = typeOfTag.get(tag);
  if (type === undefined) throw new DbError(ErrorCode.protocol, `unknown message tag ${tag}`);

  const r = new FrameReader(type, bytes);
  try {
    const m = readBody(r);
    r.end();
    return m;
  } catch (e) {
    // The Decoder reports malformed input as 'corrupt'; on the wire that is the peer's fault.
    if (isDbError(e, ErrorCode.corrupt)) {
      throw new DbError(ErrorCode.protocol, `invalid ${type} message (${r.field}): ${e.message}`, { cause: e });
    }
    throw e;
  }
}

function readBody(r: FrameReader): Message {
  const type = r.type;
  switch (type) {
    case 'hello':
      return readHello(r);
    case 'auth':
      return { type, proof: r.bytes('proof') };
    case 'pull':
      return { type, since: r.uint('since') };
    case 'batch': {
      const id = r.uint('id');
      const fromSeq = r.uint('fromSeq');
      const toSeq = r.uint('toSeq');
      if (fromSeq > toSeq) r.fail(`fromSeq ${fromSeq} is after toSeq ${toSeq}`);
      const changeCount = r.count('changes', WIRE_LIMITS.batchChangesMax);
      const changes: Change[] = [];
      for (let i = 0; i < changeCount; i++) {
        const docCount = r.count('docs', WIRE_LIMITS.changeDocsMax);
        const docs: DocChange[] = [];
        for (let j = 0; j < docCount; j++) {
          const collection = r.text(Text.collection);
          const docId = r.text(Text.docId);
          docs.push({ collection, id: docId, state: r.bytes('state') });
        }
        changes.push({ docs });
      }
      const context = r.optionalBytes('context');
      return { type, id, fromSeq, toSeq, changes, context };
    }
    case 'ack': {
      const id = r.uint('id');
      return { type, id, toSeq: r.uint('toSeq') };
    }
    case 'error': {
      const code = r.text(Text.errorCode);
      return { type, code, message: r.text(Text.errorMessage) };
    }
    case 'ping':
    case 'pong':
      return { type, nonce: r.uint('nonce') };
    case 'presence': {
      const publisher = r.text(Text.publisher);
      const room = r.text(Text.room);
      const counter = r.uint('counter');
      const hops = r.bounded('hops', 0, WIRE_LIMITS.presenceHopsMax);
      const ttlMs = r.bounded('ttlMs', 1, WIRE_LIMITS.presenceTtlMsMax);
      return { type, publisher, room, counter, hops, ttlMs, state: r.presenceState() };
    }
    case 'refused': {
      const id = r.uint('id');
      const count = r.count('docs', WIRE_LIMITS.refusedDocsMax);
      const docs: RefusedDoc[] = [];
      for (let i = 0; i < count; i++) {
        const collection = r.text(Text.collection);
        const docId = r.text(Text.docId);
        const code = r.text(Text.errorCode);
        docs.push({ collection, id: docId, code, message: r.text(Text.errorMessage) });
      }
      return { type, id, docs, omitted: r.uint('omitted') };
    }
    default:
      return unreachable(type, 'unknown message type');
  }
}

/** Why a presence state's JSON text is refused, or null. Shared by both sides of the wire. */
function presenceStateProblem(bytes: Uint8Array): string | null {
  if (bytes.length > WIRE_LIMITS.presenceStateBytesMax) {
    return `state of ${bytes.length} bytes exceeds the limit of ${WIRE_LIMITS.presenceStateBytesMax}`;
  }
  if (!isJsonText(bytes, WIRE_LIMITS.presenceStateDepthMax)) {
    return `state is not JSON text nested at most ${WIRE_LIMITS.presenceStateDepthMax} deep`;
  }
  // A null state would read as "left": one meaning, one encoding.
  if (utf8Decoder.decode(bytes).trim() === 'null') return 'state is JSON null: send no state to leave';
  return null;
}

function readHello(r: FrameReader): Message {
  const protocol = r.uint('protocol');
  try {
    const cluster = r.text(Text.cluster);
    const replica = r.text(Text.replica);
    const context = r.bytes('context');
    const challenge = r.bytes('challenge');
    r.end();
    return { type: 'hello', protocol, cluster, replica, context, challenge };
  } catch (e) {
    // Another version may lay out its hello differently: say so rather than "truncated".
    if (protocol !== PROTOCOL_VERSION && isDbError(e)) {
      throw new DbError(
        ErrorCode.protocol,
        `peer speaks protocol version ${protocol}, this replica speaks ${PROTOCOL_VERSION}: ${e.message}`,
        { cause: e, details: { peerProtocol: protocol, protocol: PROTOCOL_VERSION } },
      );
    }
    throw e;
  }
}

class FrameReader {
  private readonly dec: Decoder;
  /** The field being read, for error messages. */
  field = 'tag';

  constructor(
    readonly type: MessageType,
    private readonly buf: Uint8Array,
  ) {
    this.dec = new Decoder(buf);
    this.dec.byte(); // the tag, already looked at
  }

  fail(problem: string): never {
    throw new DbError(ErrorCode.protocol, `invalid ${this.type} message: ${problem}`);
  }

  uint(what: string): number {
    this.field = what;
    return this.dec.uint();
  }

  bounded(what: string, min: number, max: number): number {
    const n = this.uint(what);
    if (n < min || n > max) this.fail(`${what} must be in ${min}-${max}, got ${n}`);
    return n;
  }

  /** A presence state: absent (the publisher left) or JSON text within the limits. */
  presenceState(): string | null {
    this.field = 'state';
    const present = this.dec.byte();
    if (present === 0) return null;
    if (present !== 1) this.fail(`state presence byte must be 0 or 1, got ${present}`);
    const raw = this.dec.bytes();
    const problem = presenceStateProblem(raw);
    if (problem !== null) this.fail(problem);
    // isJsonText checked the UTF-8, so the fatal decoder cannot throw here.
    return utf8Decoder.decode(raw);
  }

  /** A count of items that take at least one byte each, so it cannot exceed the bytes left. */
  count(what: string, max: number): number {
    const n = this.uint(what);
    if (n > max) this.fail(`${n} ${what} exceed the limit of ${max}`);
    const left = this.buf.length - this.dec.offset;
    if (n > left) this.fail(`${n} ${what} announced but only ${left} bytes left`);
    return n;
  }

  text(rule: TextRule): string {
    this.field = rule.what;
    const raw = this.dec.bytes();
    if (raw.length > rule.maxChars * UTF8_BYTES_PER_CHAR_MAX) {
      this.fail(`${rule.what} must be ${describeLength(rule)}, got ${raw.length} bytes`);
    }
    let s: string;
    try {
      s = utf8Decoder.decode(raw);
    } catch (cause) {
      throw new DbError(ErrorCode.protocol, `invalid ${this.type} message: ${rule.what} is not valid UTF-8`, { cause });
    }
    if (s.length < rule.minChars || s.length > rule.maxChars) {
      this.fail(`${rule.what} must be ${describeLength(rule)}, got ${s.length}`);
    }
    return s;
  }

  /** A copy, so the message does not pin the frame. */
  bytes(what: string): Uint8Array {
    this.field = what;
    return this.dec.bytes().slice();
  }

  optionalBytes(what: string): Uint8Array | null {
    this.field = what;
    const present = this.dec.byte();
    if (present === 0) return null;
    if (present !== 1) this.fail(`${what} presence byte must be 0 or 1, got ${present}`);
    return this.bytes(what);
  }

  end(): void {
    this.field = 'end of frame';
    this.dec.end();
  }
}
