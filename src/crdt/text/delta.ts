/**
 * The delta format of the sequence CRDTs (text, list): operations in replica-independent form (replica name and
 * sequence number), in a causal order, as encodeSince ships them. Validation happens here, at
 * decode: a delta that decodes holds no op that refers to itself or its future.
 *
 *   tag (text 0x44) | agents: n, names | ops: n, each:
 *     agent, seq, len * 2 + isDelete,
 *     insert: left id, right id (0 = none, else agent + 1 then seq), segments: n (0 = all visible)
 *             then (length * 2 + deleted) each, then the visible content (content.ts: a text's
             as length-prefixed WTF-8, a list's as its items)
 *     delete: target agent, target seq, direction (0: ascending, 1: descending)
 */
import { utf8 } from '../../core/codec.js';
import { DbError, ErrorCode } from '../../shared/errors.js';
import { DELTA_TAG, textContent, type ContentCodec } from './content.js';
import type { RemoteDelete, RemoteInsert, RemoteOp, Sliceable } from './text-state.js';
import {
  readByte,
  readEnd,
  readStart,
  readStop,
  readString,
  readUint,
  writeByte,
  writeFinish,
  writeStart,
  writeText,
  writeUint,
} from './bytes.js';

export { DELTA_TAG };
/** Sequence numbers and lengths stay below this (they live in Int32Arrays). */
export const SEQ_MAX = 0x7fffffff;

/** What the delta being read holds, for error messages. */
let kind = 'text';

function corrupt(what: string): never {
  throw new DbError(ErrorCode.corrupt, `corrupt ${kind} delta: ${what}`);
}

export function writeDelta<C extends Sliceable<C>>(ops: readonly RemoteOp<C>[], codec: ContentCodec<C>): Uint8Array {
  // Agent names in order of first mention (the same walk as the body's), then the body.
  const names = new Map<string, number>();
  const note = (name: string): void => {
    if (!names.has(name)) names.set(name, names.size);
  };
  let textBytes = 0;
  for (const op of ops) {
    note(op.agent);
    if (op.kind === 'del') note(op.targetAgent);
    else {
      if (op.leftAgent !== null) note(op.leftAgent);
      if (op.rightAgent !== null) note(op.rightAgent);
      textBytes += codec.size(op.content);
    }
  }
  writeStart(64 + 16 * names.size + 12 * ops.length + textBytes);
  writeByte(codec.deltaTag);
  writeUint(names.size);
  for (const name of names.keys()) writeText(name, utf8);
  writeUint(ops.length);
  for (const op of ops) {
    writeUint(names.get(op.agent) as number);
    writeUint(op.seq);
    writeUint(op.len * 2 + (op.kind === 'del' ? 1 : 0));
    if (op.kind === 'del') {
      writeUint(names.get(op.targetAgent) as number);
      writeUint(op.targetSeq);
      writeByte(op.dir < 0 ? 1 : 0);
      continue;
    }
    if (op.leftAgent === null) writeUint(0);
    else {
      writeUint((names.get(op.leftAgent) as number) + 1);
      writeUint(op.leftSeq);
    }
    if (op.rightAgent === null) writeUint(0);
    else {
      writeUint((names.get(op.rightAgent) as number) + 1);
      writeUint(op.rightSeq);
    }
    const segs = op.segs;
    if (segs === null) writeUint(0);
    else {
      writeUint(segs.length);
      for (const s of segs) writeUint(s);
    }
    codec.write(op.content);
  }
  return writeFinish();
}

/** Reads and checks a delta; a text's unless `codec` says otherwise. Throws DbError('corrupt'). */
export function readDelta(bytes: Uint8Array): RemoteOp<string>[];
export function readDelta<C extends Sliceable<C>>(bytes: Uint8Array, codec: ContentCodec<C>): RemoteOp<C>[];
export function readDelta<C extends Sliceable<C>>(
  bytes: Uint8Array,
  codec: ContentCodec<C> = textContent as unknown as ContentCodec<C>,
): RemoteOp<C>[] {
  kind = codec.kind;
  readStart(bytes);
  try {
    return readOps(bytes, codec);
  } finally {
    readStop();
  }
}

function readOps<C extends Sliceable<C>>(bytes: Uint8Array, codec: ContentCodec<C>): RemoteOp<C>[] {
  if (readByte() !== codec.deltaTag) corrupt('not a delta');
  const nAgents = readUint();
  if (nAgents > bytes.length) corrupt('agent count');
  const names: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < nAgents; i++) {
    const name = readString();
    if (seen.has(name)) corrupt('duplicate agent');
    seen.add(name);
    names.push(name);
  }
  const nOps = readUint();
  if (nOps > bytes.length) corrupt('op count');
  const ops: RemoteOp<C>[] = [];
  for (let k = 0; k < nOps; k++) {
    const ai = readUint();
    if (ai >= nAgents) corrupt('agent index');
    const a = names[ai] as string;
    const seq = readUint();
    const h = readUint();
    const len = Math.floor(h / 2);
    if (len < 1 || seq + len > SEQ_MAX) corrupt('op length');
    if (h % 2 === 1) {
      const ti = readUint();
      if (ti >= nAgents) corrupt('agent index');
      const targetAgent = names[ti] as string;
      const targetSeq = readUint();
      const dirByte = readByte();
      if (dirByte > 1) corrupt('direction');
      const dir = dirByte === 1 ? -1 : 1;
      const lo = dir > 0 ? targetSeq : targetSeq - len + 1;
      const hi = dir > 0 ? targetSeq + len - 1 : targetSeq;
      if (lo < 0 || hi >= SEQ_MAX) corrupt('delete target');
      if (targetAgent === a && hi >= seq) corrupt('delete of a later op');
      const op: RemoteDelete = { kind: 'del', agent: a, seq, len, targetAgent, targetSeq, dir };
      ops.push(op);
      continue;
    }
    let leftAgent: string | null = null;
    let leftSeq = 0;
    let rightAgent: string | null = null;
    let rightSeq = 0;
    const l = readUint();
    if (l > 0) {
      if (l > nAgents) corrupt('agent index');
      leftAgent = names[l - 1] as string;
      leftSeq = readUint();
      if (leftSeq >= SEQ_MAX || (leftAgent === a && leftSeq >= seq)) corrupt('left origin');
    }
    const r = readUint();
    if (r > 0) {
      if (r > nAgents) corrupt('agent index');
      rightAgent = names[r - 1] as string;
      rightSeq = readUint();
      if (rightSeq >= SEQ_MAX || (rightAgent === a && rightSeq >= seq)) corrupt('right origin');
    }
    const nSegs = readUint();
    let segs: number[] | null = null;
    let visible = len;
    if (nSegs > 0) {
      if (nSegs > len) corrupt('segments');
      segs = [];
      let total = 0;
      visible = 0;
      for (let i = 0; i < nSegs; i++) {
        const s = readUint();
        const sl = Math.floor(s / 2);
        if (sl < 1) corrupt('segment');
        total += sl;
        if (total > len) corrupt('segments');
        if (s % 2 === 0) visible += sl;
        segs.push(sl * 2 + (s % 2));
      }
      if (total !== len) corrupt('segments');
    }
    const content = codec.read(visible);
    if (content.length !== visible) corrupt('content length');
    const op: RemoteInsert<C> = {
      kind: 'ins',
      agent: a,
      seq,
      len,
      leftAgent,
      leftSeq,
      rightAgent,
      rightSeq,
      segs,
      content,
    };
    ops.push(op);
  }
  readEnd();
  return ops;
}
