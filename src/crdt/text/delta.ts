/**
 * The delta format of the text CRDT: operations in replica-independent form (replica name and
 * sequence number), in a causal order, as encodeSince ships them. Validation happens here, at
 * decode: a delta that decodes holds no op that refers to itself or its future.
 *
 *   0x44 | agents: n, names | ops: n, each:
 *     agent, seq, len * 2 + isDelete,
 *     insert: left id, right id (0 = none, else agent + 1 then seq), segments: n (0 = all visible)
 *             then (length * 2 + deleted) each, then the visible text (WTF-8, length-prefixed)
 *     delete: target agent, target seq, direction (0: ascending, 1: descending)
 */
import { Decoder, Encoder } from '../../core/codec.js';
import { DbError, ErrorCode } from '../../shared/errors.js';
import type { RemoteDelete, RemoteInsert, RemoteOp } from './text-state.js';
import { decodeWtf8, encodeWtf8 } from './wtf8.js';

export const DELTA_TAG = 0x44;
/** Sequence numbers and lengths stay below this (they live in Int32Arrays). */
export const SEQ_MAX = 0x7fffffff;

function corrupt(what: string): never {
  throw new DbError(ErrorCode.corrupt, `corrupt text delta: ${what}`);
}

export function writeDelta(ops: readonly RemoteOp[]): Uint8Array {
  const names = new Map<string, number>();
  const idx = (name: string): number => {
    let i = names.get(name);
    if (i === undefined) {
      i = names.size;
      names.set(name, i);
    }
    return i;
  };
  const body = new Encoder(256);
  for (const op of ops) {
    body
      .uint(idx(op.agent))
      .uint(op.seq)
      .uint(op.len * 2 + (op.kind === 'del' ? 1 : 0));
    if (op.kind === 'del') {
      body
        .uint(idx(op.targetAgent))
        .uint(op.targetSeq)
        .byte(op.dir < 0 ? 1 : 0);
      continue;
    }
    if (op.leftAgent === null) body.uint(0);
    else body.uint(idx(op.leftAgent) + 1).uint(op.leftSeq);
    if (op.rightAgent === null) body.uint(0);
    else body.uint(idx(op.rightAgent) + 1).uint(op.rightSeq);
    const segs = op.segs;
    if (segs === null) body.uint(0);
    else {
      body.uint(segs.length);
      for (const s of segs) body.uint(s);
    }
    body.bytes(encodeWtf8(op.text));
  }
  const w = new Encoder(body.length + 16 * names.size + 8);
  w.byte(DELTA_TAG).uint(names.size);
  for (const name of names.keys()) w.string(name);
  w.uint(ops.length).raw(body.view());
  return w.finish();
}

export function readDelta(bytes: Uint8Array): RemoteOp[] {
  const d = new Decoder(bytes);
  if (d.byte() !== DELTA_TAG) corrupt('not a delta');
  const nAgents = d.uint();
  if (nAgents > bytes.length) corrupt('agent count');
  const names: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < nAgents; i++) {
    const name = d.string();
    if (seen.has(name)) corrupt('duplicate agent');
    seen.add(name);
    names.push(name);
  }
  const agent = (): string => {
    const i = d.uint();
    if (i >= nAgents) corrupt('agent index');
    return names[i] as string;
  };
  const nOps = d.uint();
  if (nOps > bytes.length) corrupt('op count');
  const ops: RemoteOp[] = [];
  for (let k = 0; k < nOps; k++) {
    const a = agent();
    const seq = d.uint();
    const h = d.uint();
    const len = Math.floor(h / 2);
    if (len < 1 || seq + len > SEQ_MAX) corrupt('op length');
    if (h % 2 === 1) {
      const targetAgent = agent();
      const targetSeq = d.uint();
      const dirByte = d.byte();
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
    const l = d.uint();
    if (l > 0) {
      if (l > nAgents) corrupt('agent index');
      leftAgent = names[l - 1] as string;
      leftSeq = d.uint();
      if (leftSeq >= SEQ_MAX || (leftAgent === a && leftSeq >= seq)) corrupt('left origin');
    }
    const r = d.uint();
    if (r > 0) {
      if (r > nAgents) corrupt('agent index');
      rightAgent = names[r - 1] as string;
      rightSeq = d.uint();
      if (rightSeq >= SEQ_MAX || (rightAgent === a && rightSeq >= seq)) corrupt('right origin');
    }
    const nSegs = d.uint();
    let segs: number[] | null = null;
    let visible = len;
    if (nSegs > 0) {
      if (nSegs > len) corrupt('segments');
      segs = [];
      let total = 0;
      visible = 0;
      for (let i = 0; i < nSegs; i++) {
        const s = d.uint();
        const sl = Math.floor(s / 2);
        if (sl < 1) corrupt('segment');
        total += sl;
        if (total > len) corrupt('segments');
        if (s % 2 === 0) visible += sl;
        segs.push(sl * 2 + (s % 2));
      }
      if (total !== len) corrupt('segments');
    }
    const text = decodeWtf8(d.bytes());
    if (text.length !== visible) corrupt('content length');
    const op: RemoteInsert = { kind: 'ins', agent: a, seq, len, leftAgent, leftSeq, rightAgent, rightSeq, segs, text };
    ops.push(op);
  }
  d.end();
  return ops;
}
