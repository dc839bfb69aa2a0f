/**
 * The snapshot format of the sequence CRDTs (TextDoc.encode, ListDoc.encode): the whole history needed to merge, laid
 * out so that loading builds the tree directly, with no replay and no integration.
 *
 *   tag (text 0x53) | agents: n, names
 *        | LV runs: n, each (agent, length); sequence numbers follow from the order
 *        | ops in LV order: n, each length * 2 + isDelete; a delete adds
 *          (lv - target - 1) * 2 + descending
 *        | fragments in document order: n, each token length * 4 + deleted * 2 + isRef;
 *          a ref adds zigzag(run - previous ref). A token without ref continues the innermost
 *          open insert run: runs nest like brackets, because a run is contiguous when it is
 *          integrated and anything inserted inside it later is newer.
 *        | visible content (content.ts: a text's as WTF-8, a list's as its items)
 *        | origin exceptions: n, each (run - previous - 1, left + 1, right + 1)
 *
 * Origins are not stored when they can be derived: a run's left origin is the nearest character
 * to its left with a smaller LV, its right origin the nearest to its right with a smaller LV,
 * which holds whenever no concurrent insert ended up between them. The rest are exceptions.
 * Deleted content is not stored.
 */
import { utf8 } from '../../core/codec.js';
import { assert } from '../../shared/assert.js';
import { DbError, ErrorCode } from '../../shared/errors.js';
import { SNAPSHOT_TAG, textContent, type ContentCodec } from './content.js';
import {
  readByte,
  readEnd,
  readPos,
  readStart,
  readStop,
  readString,
  readUint,
  setReadPos,
  writeByte,
  writeFinish,
  writeStart,
  writeText,
  writeUint,
} from './bytes.js';
import { SEQ_MAX } from './delta.js';
import { Frag, FragTree, NO_LEAF } from './fragment-tree.js';
import { LV_MAX, type SeqState, type Sliceable } from './text-state.js';

export { SNAPSHOT_TAG };
export { LV_MAX };

/** What the snapshot being read holds, for error messages. */
let kind = 'text';

function corrupt(what: string): never {
  throw new DbError(ErrorCode.corrupt, `corrupt ${kind} snapshot: ${what}`);
}

const zigzag = (v: number): number => (v >= 0 ? v * 2 : -v * 2 - 1);

/**
 * Derived origins of every insert run, from the fragments in document order (their LVs and
 * lengths) and the index of each run's first fragment: previous and next smaller LV, by
 * monotonic stacks, O(fragments).
 */
function deriveOrigins(docLv: Int32Array, docLen: Int32Array, n: number, firstOf: Int32Array, runs: number) {
  const left = new Int32Array(n);
  const right = new Int32Array(n);
  const stack = new Int32Array(n);
  let sp = 0;
  for (let i = 0; i < n; i++) {
    const v = docLv[i] as number;
    while (sp > 0 && (docLv[stack[sp - 1] as number] as number) > v) sp--;
    if (sp === 0) left[i] = -1;
    else {
      const j = stack[sp - 1] as number;
      left[i] = (docLv[j] as number) + (docLen[j] as number) - 1;
    }
    stack[sp++] = i;
  }
  sp = 0;
  for (let i = n - 1; i >= 0; i--) {
    const v = docLv[i] as number;
    while (sp > 0 && (docLv[stack[sp - 1] as number] as number) > v) sp--;
    right[i] = sp === 0 ? -1 : (docLv[stack[sp - 1] as number] as number);
    stack[sp++] = i;
  }
  const oL = new Int32Array(runs);
  const oR = new Int32Array(runs);
  for (let e = 0; e < runs; e++) {
    const i = firstOf[e] as number;
    oL[e] = left[i] as number;
    oR[e] = right[i] as number;
  }
  return { oL, oR };
}

export function encodeSnapshot<C extends Sliceable<C>>(s: SeqState<C>, codec: ContentCodec<C>): Uint8Array {
  writeStart(4096 + s.tree.vis + 4 * (s.insLv.n + s.delLv.n));
  // Agents in order of their first operation, those without any left out: the bytes depend on
  // the history only, not on which replica encodes it.
  const order = new Map<number, number>();
  for (let r = 0; r < s.lvrLv.n; r++) if (!order.has(s.lvrAgent.get(r))) order.set(s.lvrAgent.get(r), order.size);
  writeByte(codec.snapshotTag);
  writeUint(order.size);
  for (const a of order.keys()) writeText(s.agents[a] as string, utf8);
  writeUint(s.lvrLv.n);
  for (let r = 0; r < s.lvrLv.n; r++) {
    writeUint(order.get(s.lvrAgent.get(r)) as number);
    writeUint(s.lvRunEnd(r) - s.lvrLv.get(r));
  }

  const nIns = s.insLv.n;
  const nDel = s.delLv.n;
  writeUint(nIns + nDel);
  for (let i = 0, j = 0; i < nIns || j < nDel; ) {
    if (j >= nDel || (i < nIns && s.insLv.get(i) < s.delLv.get(j))) {
      writeUint(s.insLen.get(i) * 2);
      i++;
    } else {
      const lv = s.delLv.get(j);
      writeUint(s.delLen.get(j) * 2 + 1);
      writeUint((lv - s.delTarget.get(j) - 1) * 2 + (s.delDir.get(j) < 0 ? 1 : 0));
      j++;
    }
  }

  // Fragments in document order, as bracket-nested runs.
  let nFrags = 0;
  for (let leaf = s.tree.head as typeof s.tree.head | null; leaf !== null; leaf = leaf.next)
    nFrags += leaf.frags.length;
  const docLv = new Int32Array(nFrags);
  const docLen = new Int32Array(nFrags);
  const firstOf = new Int32Array(nIns);
  const next = new Int32Array(nIns);
  for (let e = 0; e < nIns; e++) next[e] = s.insLv.get(e);
  const stack: number[] = [];
  let prevRef = 0;
  writeUint(nFrags);
  let k = 0;
  for (let leaf = s.tree.head as typeof s.tree.head | null; leaf !== null; leaf = leaf.next) {
    for (const f of leaf.frags) {
      const del = f.deleted ? 2 : 0;
      const top = stack.length > 0 ? (stack[stack.length - 1] as number) : -1;
      let e: number;
      if (top >= 0 && next[top] === f.lv) {
        e = top;
        writeUint(f.len * 4 + del);
      } else {
        e = s.insLv.floor(f.lv);
        assert(next[e] === f.lv, 'a run’s fragments are in LV order');
        writeUint(f.len * 4 + del + 1);
        writeUint(zigzag(e - prevRef));
        prevRef = e;
        if (next[e] !== s.insLv.get(e)) stack.splice(stack.lastIndexOf(e), 1);
        else firstOf[e] = k;
        stack.push(e);
      }
      next[e] = (next[e] as number) + f.len;
      if (next[e] === s.insLv.get(e) + s.insLen.get(e)) stack.pop();
      docLv[k] = f.lv;
      docLen[k] = f.len;
      k++;
    }
  }
  codec.write(s.visible());

  const derived = deriveOrigins(docLv, docLen, nFrags, firstOf, nIns);
  const exc: number[] = [];
  let prevE = -1;
  for (let e = 0; e < nIns; e++) {
    const oL = s.insOL.get(e);
    const oR = s.insOR.get(e);
    if (derived.oL[e] === oL && derived.oR[e] === oR) continue;
    exc.push(e - prevE - 1, oL + 1, oR + 1);
    prevE = e;
  }
  writeUint(exc.length / 3);
  for (const v of exc) writeUint(v);
  return writeFinish();
}

/** What a snapshot holds, read without building the state: the content and the version. */
export interface SnapshotSummary<C> {
  /** The visible content (a text, the items of a list). */
  content: C;
  /** Agent names in the snapshot's order, and how many operations each holds (at least one). */
  agents: string[];
  counts: number[];
}

/** Index of the last entry <= v in a[0..n), or -1. */
function floorIn(a: Int32Array, n: number, v: number): number {
  let lo = 0;
  let hi = n - 1;
  if (hi < 0 || (a[0] as number) > v) return -1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((a[mid] as number) <= v) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** A placeholder for the fragments of runs not met yet. */
const NO_FRAG = new Frag(-1, 0, true, NO_LEAF, null);

/**
 * Checks a snapshot whole, exactly as decodeSnapshot does, without building the state (no
 * fragments, no tree, no content array): what a lazily loaded doc needs to show its text and
 * version. Throws DbError('corrupt') wherever decodeSnapshot would.
 */
export function scanSnapshot(bytes: Uint8Array): SnapshotSummary<string>;
export function scanSnapshot<C extends Sliceable<C>>(bytes: Uint8Array, codec: ContentCodec<C>): SnapshotSummary<C>;
export function scanSnapshot<C extends Sliceable<C>>(
  bytes: Uint8Array,
  codec: ContentCodec<C> = textContent as unknown as ContentCodec<C>,
): SnapshotSummary<C> {
  return parse(bytes, null, codec) as SnapshotSummary<C>;
}

/** Loads a snapshot as the state of `replica`; `content` is the visible content, decoded on the way. */
export function decodeSnapshot<C extends Sliceable<C>, S extends SeqState<C>>(
  bytes: Uint8Array,
  replica: string,
  codec: ContentCodec<C, S>,
): { state: S; content: C } {
  return parse(bytes, replica, codec) as { state: S; content: C };
}

/** Reads and checks a snapshot; builds the state of `replica` unless it is null. */
function parse<C extends Sliceable<C>, S extends SeqState<C>>(
  bytes: Uint8Array,
  replica: string | null,
  codec: ContentCodec<C, S>,
): SnapshotSummary<C> | { state: S; content: C } {
  kind = codec.kind;
  readStart(bytes);
  try {
    return parseBody(bytes, replica, codec);
  } finally {
    readStop();
  }
}

function parseBody<C extends Sliceable<C>, S extends SeqState<C>>(
  bytes: Uint8Array,
  replica: string | null,
  codec: ContentCodec<C, S>,
): SnapshotSummary<C> | { state: S; content: C } {
  if (readByte() !== codec.snapshotTag) corrupt('not a snapshot');
  const s = replica === null ? null : codec.newState(replica);
  const nAgents = readUint();
  if (nAgents > bytes.length) corrupt('agent count');
  const names: string[] = [];
  const local: number[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < nAgents; i++) {
    const name = readString();
    if (seen.has(name)) corrupt('duplicate agent');
    seen.add(name);
    names.push(name);
    if (s !== null) local.push(s.agentIndex(name));
  }
  const counts = new Array<number>(nAgents).fill(0);
  const nRuns = readUint();
  if (nRuns > bytes.length) corrupt('run count');
  let total = 0;
  for (let r = 0; r < nRuns; r++) {
    const ai = readUint();
    if (ai >= nAgents) corrupt('agent index');
    const len = readUint();
    if (len < 1 || total + len > LV_MAX) corrupt('run length');
    if (s !== null) s.assignLv(local[ai] as number, counts[ai] as number, len);
    counts[ai] = (counts[ai] as number) + len;
    total += len;
  }

  const nOps = readUint();
  if (nOps > bytes.length) corrupt('op count');
  const insLv = new Int32Array(nOps);
  const insLen = new Int32Array(nOps);
  const nIns = readOps(bytes, nOps, total, insLv, insLen, s);
  // Delete targets are only checked to precede the delete: whether they are inserted characters
  // matters to receivers of the ops, and they check (a delete of anything else is dropped).

  const nFrags = readUint();
  if (nFrags > bytes.length) corrupt('fragment count');
  const out: Built | null =
    s === null
      ? null
      : {
          frags: new Array<Frag>(nFrags),
          docLv: new Int32Array(nFrags),
          docLen: new Int32Array(nFrags),
          firstOf: new Int32Array(nIns),
          firstFrag: new Array<Frag>(nIns).fill(NO_FRAG),
        };
  const visible = readFrags(bytes, nFrags, nIns, insLv, insLen, out);

  const content = codec.read(visible);
  if (content.length !== visible) corrupt('content length');

  const nExc = readUint();
  if (nExc > nIns) corrupt('exception count');
  const excAt = new Int32Array(nExc * 3);
  let e = -1;
  for (let k = 0; k < nExc; k++) {
    e += readUint() + 1;
    if (e >= nIns) corrupt('exception index');
    const oL = readUint() - 1;
    const oR = readUint() - 1;
    const start = insLv[e] as number;
    for (let o = oL, j = 0; j < 2; o = oR, j++) {
      if (o >= start) corrupt('origin after its run');
      if (o >= 0) {
        const i = floorIn(insLv, nIns, o);
        if (i < 0 || o >= (insLv[i] as number) + (insLen[i] as number)) corrupt('origin is no inserted character');
      }
    }
    excAt[k * 3] = e;
    excAt[k * 3 + 1] = oL;
    excAt[k * 3 + 2] = oR;
  }
  readEnd();
  if (s === null) {
    const agents: string[] = [];
    const held: number[] = [];
    for (let i = 0; i < nAgents; i++) {
      if ((counts[i] as number) === 0) continue;
      agents.push(names[i] as string);
      held.push(counts[i] as number);
    }
    return { content, agents, counts: held };
  }

  // The state: op columns, content by LV, origins, tree.
  s.insLv.assign(insLv.slice(0, nIns));
  s.insLen.assign(insLen.slice(0, nIns));
  const { frags, docLv, docLen, firstOf, firstFrag } = out as Built;
  s.insFrag = firstFrag;
  s.allocate(total + 64);
  for (let k = 0, t = 0; k < nFrags; k++) {
    if ((frags[k] as Frag).deleted) continue;
    const n = docLen[k] as number;
    s.put(docLv[k] as number, content, t, n);
    t += n;
  }
  const derived = deriveOrigins(docLv, docLen, nFrags, firstOf, nIns);
  for (let k = 0; k < nExc; k++) {
    const x = excAt[k * 3] as number;
    derived.oL[x] = excAt[k * 3 + 1] as number;
    derived.oR[x] = excAt[k * 3 + 2] as number;
  }
  s.insOL.assign(derived.oL);
  s.insOR.assign(derived.oR);
  s.tree = FragTree.fromFrags(frags);
  return { state: s, content };
}

/**
 * The ops section: insert runs into insLv/insLen (returns their number), deletes checked, and
 * kept in `s` when building. Its own function, like readFrags, so that it is optimized on its own
 * and soon (one-byte varints are read inline; most are).
 */
function readOps<C extends Sliceable<C>>(
  bytes: Uint8Array,
  nOps: number,
  total: number,
  insLv: Int32Array,
  insLen: Int32Array,
  s: SeqState<C> | null,
): number {
  let nIns = 0;
  let lv = 0;
  // The hot loops read one-byte varints inline (most are), the rest through the reader.
  let pos = readPos();
  for (let k = 0; k < nOps; k++) {
    let h = bytes[pos] as number; // undefined past the end: the reader then fails
    if (h < 0x80) pos++;
    else {
      setReadPos(pos);
      h = readUint();
      pos = readPos();
    }
    const odd = h % 2;
    const len = (h - odd) / 2;
    if (len < 1 || lv + len > total) corrupt('op length');
    if (odd === 0) {
      insLv[nIns] = lv;
      insLen[nIns++] = len;
    } else {
      let t = bytes[pos] as number;
      if (t < 0x80) pos++;
      else {
        setReadPos(pos);
        t = readUint();
        pos = readPos();
      }
      const tOdd = t % 2;
      const back = (t - tOdd) / 2;
      const dir = tOdd === 1 ? -1 : 1;
      const target = lv - back - 1;
      const lo = dir > 0 ? target : target - len + 1;
      const hi = dir > 0 ? target + len - 1 : target;
      if (lo < 0 || hi >= lv) corrupt('delete target');
      if (s !== null) {
        s.delLv.push(lv);
        s.delLen.push(len);
        s.delTarget.push(target);
        s.delDir.push(dir);
      }
    }
    lv += len;
  }
  setReadPos(pos);
  if (lv !== total) corrupt('ops do not cover the runs');
  return nIns;
}

/** What readFrags builds besides checking: the fragments and the arrays that derive the origins. */
interface Built {
  frags: Frag[];
  docLv: Int32Array;
  docLen: Int32Array;
  /** Per insert run, the index of its first fragment. */
  firstOf: Int32Array;
  firstFrag: Frag[];
}

/**
 * The fragments section, in document order: `next[e]` is the next LV of run e to place, and the
 * open runs form a stack (see the format above). Returns the visible length; builds into `out`.
 */
function readFrags(
  bytes: Uint8Array,
  nFrags: number,
  nIns: number,
  insLv: Int32Array,
  insLen: Int32Array,
  out: Built | null,
): number {
  const lastFrag: Frag[] = out === null ? [] : new Array<Frag>(nIns).fill(NO_FRAG);
  const next = insLv.slice(0, nIns);
  const stack = new Int32Array(nIns + 1);
  let sp = 0;
  let prevRef = 0;
  let visible = 0;
  let pos = readPos();
  for (let k = 0; k < nFrags; k++) {
    let v = bytes[pos] as number;
    if (v < 0x80) pos++;
    else {
      setReadPos(pos);
      v = readUint();
      pos = readPos();
    }
    const low = v & 3; // the low bits survive ToInt32
    const len = (v - low) / 4;
    const deleted = low >= 2;
    let e: number;
    if (low % 2 === 0) {
      if (sp === 0) corrupt('continuation outside a run');
      e = stack[sp - 1] as number;
    } else {
      let z = bytes[pos] as number;
      if (z < 0x80) pos++;
      else {
        setReadPos(pos);
        z = readUint();
        pos = readPos();
      }
      e = prevRef + (z % 2 === 0 ? z / 2 : -(z + 1) / 2);
      if (e < 0 || e >= nIns) corrupt('run index');
      prevRef = e;
      const start = insLv[e] as number;
      if (next[e] === start + (insLen[e] as number)) corrupt('run already complete');
      if (next[e] !== start) {
        // Reopened: it was open already, so it is on the stack; move it to the top.
        let i = sp - 1;
        while (i >= 0 && stack[i] !== e) i--;
        if (i < 0) corrupt('run not open');
        for (; i < sp - 1; i++) stack[i] = stack[i + 1] as number;
        sp--;
      } else if (out !== null) out.firstOf[e] = k;
      stack[sp++] = e;
    }
    const at = next[e] as number;
    const end = (insLv[e] as number) + (insLen[e] as number);
    if (len < 1 || at + len > end) corrupt('fragment length');
    next[e] = at + len;
    if (at + len === end) sp--;
    if (!deleted) visible += len;
    if (out !== null) {
      const f = new Frag(at, len, deleted, NO_LEAF, null);
      if (at === insLv[e]) out.firstFrag[e] = f;
      else (lastFrag[e] as Frag).next = f;
      lastFrag[e] = f;
      out.frags[k] = f;
      out.docLv[k] = at;
      out.docLen[k] = len;
    }
  }
  setReadPos(pos);
  if (sp > 0) corrupt('runs not complete');
  for (let e = 0; e < nIns; e++)
    if (next[e] !== (insLv[e] as number) + (insLen[e] as number)) corrupt('runs not complete');
  return visible;
}

/** Whether bytes hold a snapshot (else they should be a delta). */
export function isSnapshot(bytes: Uint8Array): boolean {
  return bytes[0] === SNAPSHOT_TAG;
}

export { SEQ_MAX };
