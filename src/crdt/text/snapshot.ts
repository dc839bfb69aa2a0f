/**
 * The snapshot format of the text CRDT (TextDoc.encode): the whole history needed to merge, laid
 * out so that loading builds the tree directly, with no replay and no integration.
 *
 *   0x53 | agents: n, names
 *        | LV runs: n, each (agent, length); sequence numbers follow from the order
 *        | ops in LV order: n, each length * 2 + isDelete; a delete adds
 *          (lv - target - 1) * 2 + descending
 *        | fragments in document order: n, each token length * 4 + deleted * 2 + isRef;
 *          a ref adds zigzag(run - previous ref). A token without ref continues the innermost
 *          open insert run: runs nest like brackets, because a run is contiguous when it is
 *          integrated and anything inserted inside it later is newer.
 *        | visible text (WTF-8)
 *        | origin exceptions: n, each (run - previous - 1, left + 1, right + 1)
 *
 * Origins are not stored when they can be derived: a run's left origin is the nearest character
 * to its left with a smaller LV, its right origin the nearest to its right with a smaller LV,
 * which holds whenever no concurrent insert ended up between them. The rest are exceptions.
 * Deleted content is not stored.
 */
import { Decoder, Encoder } from '../../core/codec.js';
import { assert } from '../../shared/assert.js';
import { DbError, ErrorCode } from '../../shared/errors.js';
import { SEQ_MAX } from './delta.js';
import { Frag, FragTree, NO_LEAF } from './fragment-tree.js';
import { TextState } from './text-state.js';
import { decodeWtf8, encodeWtf8 } from './wtf8.js';

export const SNAPSHOT_TAG = 0x53;
/** Most operations one text document may hold (its content is indexed by LV). */
export const LV_MAX = 1 << 27;

function corrupt(what: string): never {
  throw new DbError(ErrorCode.corrupt, `corrupt text snapshot: ${what}`);
}

const zigzag = (v: number): number => (v >= 0 ? v * 2 : -v * 2 - 1);
const unzigzag = (v: number): number => (v % 2 === 0 ? v / 2 : -(v + 1) / 2);

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

export function encodeSnapshot(s: TextState): Uint8Array {
  const w = new Encoder(4096 + s.tree.vis);
  // Agents in order of their first operation, those without any left out: the bytes depend on
  // the history only, not on which replica encodes it.
  const order = new Map<number, number>();
  for (let r = 0; r < s.lvrLv.n; r++) if (!order.has(s.lvrAgent.get(r))) order.set(s.lvrAgent.get(r), order.size);
  w.byte(SNAPSHOT_TAG).uint(order.size);
  for (const a of order.keys()) w.string(s.agents[a] as string);
  w.uint(s.lvrLv.n);
  for (let r = 0; r < s.lvrLv.n; r++)
    w.uint(order.get(s.lvrAgent.get(r)) as number).uint(s.lvRunEnd(r) - s.lvrLv.get(r));

  const nIns = s.insLv.n;
  const nDel = s.delLv.n;
  w.uint(nIns + nDel);
  for (let i = 0, j = 0; i < nIns || j < nDel; ) {
    if (j >= nDel || (i < nIns && s.insLv.get(i) < s.delLv.get(j))) {
      w.uint(s.insLen.get(i) * 2);
      i++;
    } else {
      const lv = s.delLv.get(j);
      w.uint(s.delLen.get(j) * 2 + 1).uint((lv - s.delTarget.get(j) - 1) * 2 + (s.delDir.get(j) < 0 ? 1 : 0));
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
  const tokens = new Encoder(nFrags * 2 + 16);
  let k = 0;
  for (const f of s.tree.frags()) {
    const del = f.deleted ? 2 : 0;
    const top = stack.length > 0 ? (stack[stack.length - 1] as number) : -1;
    let e: number;
    if (top >= 0 && next[top] === f.lv) {
      e = top;
      tokens.uint(f.len * 4 + del);
    } else {
      e = s.insLv.floor(f.lv);
      assert(next[e] === f.lv, 'a run’s fragments are in LV order');
      tokens.uint(f.len * 4 + del + 1).uint(zigzag(e - prevRef));
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
  w.uint(nFrags).raw(tokens.view());
  w.bytes(encodeWtf8(s.toString()));

  const derived = deriveOrigins(docLv, docLen, nFrags, firstOf, nIns);
  const exc = new Encoder(64);
  let nExc = 0;
  let prevE = -1;
  for (let e = 0; e < nIns; e++) {
    const oL = s.insOL.get(e);
    const oR = s.insOR.get(e);
    if (derived.oL[e] === oL && derived.oR[e] === oR) continue;
    exc
      .uint(e - prevE - 1)
      .uint(oL + 1)
      .uint(oR + 1);
    prevE = e;
    nExc++;
  }
  w.uint(nExc).raw(exc.view());
  return w.finish();
}

/** Loads a snapshot as the state of `replica`; `text` is the visible text, decoded on the way. */
export function decodeSnapshot(bytes: Uint8Array, replica: string): { state: TextState; text: string } {
  const d = new Decoder(bytes);
  if (d.byte() !== SNAPSHOT_TAG) corrupt('not a snapshot');
  const s = new TextState(replica);
  const nAgents = d.uint();
  if (nAgents > bytes.length) corrupt('agent count');
  const local: number[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < nAgents; i++) {
    const name = d.string();
    if (seen.has(name)) corrupt('duplicate agent');
    seen.add(name);
    local.push(s.agentIndex(name));
  }
  const nRuns = d.uint();
  if (nRuns > bytes.length) corrupt('run count');
  for (let r = 0; r < nRuns; r++) {
    const ai = d.uint();
    if (ai >= nAgents) corrupt('agent index');
    const a = local[ai] as number;
    const len = d.uint();
    if (len < 1 || s.nextLv + len > LV_MAX) corrupt('run length');
    s.assignLv(a, s.seqCount[a] as number, len);
  }
  const total = s.nextLv;

  const nOps = d.uint();
  if (nOps > bytes.length) corrupt('op count');
  let lv = 0;
  for (let k = 0; k < nOps; k++) {
    const h = d.uint();
    const len = Math.floor(h / 2);
    if (len < 1 || lv + len > total) corrupt('op length');
    if (h % 2 === 0) {
      s.insLv.push(lv);
      s.insLen.push(len);
      s.insOL.push(-1);
      s.insOR.push(-1);
    } else {
      const t = d.uint();
      const back = Math.floor(t / 2);
      const dir = t % 2 === 1 ? -1 : 1;
      const target = lv - back - 1;
      const lo = dir > 0 ? target : target - len + 1;
      const hi = dir > 0 ? target + len - 1 : target;
      if (lo < 0 || hi >= lv) corrupt('delete target');
      s.delLv.push(lv);
      s.delLen.push(len);
      s.delTarget.push(target);
      s.delDir.push(dir);
    }
    lv += len;
  }
  if (lv !== total) corrupt('ops do not cover the runs');
  const nIns = s.insLv.n;
  // Delete targets are only checked to precede the delete: whether they are inserted characters
  // matters to receivers of the ops, and they check (a delete of anything else is dropped).
  const nFrags = d.uint();
  if (nFrags > bytes.length) corrupt('fragment count');
  const frags: Frag[] = new Array<Frag>(nFrags);
  const docLv = new Int32Array(nFrags);
  const docLen = new Int32Array(nFrags);
  const firstOf = new Int32Array(nIns);
  const next = new Int32Array(nIns);
  const lastFrag: Frag[] = new Array<Frag>(nIns);
  for (let e = 0; e < nIns; e++) next[e] = s.insLv.get(e);
  const stack: number[] = [];
  let prevRef = 0;
  let visible = 0;
  for (let k = 0; k < nFrags; k++) {
    const v = d.uint();
    const len = Math.floor(v / 4);
    const deleted = (v & 2) !== 0;
    let e: number;
    if ((v & 1) === 0) {
      if (stack.length === 0) corrupt('continuation outside a run');
      e = stack[stack.length - 1] as number;
    } else {
      e = prevRef + unzigzag(d.uint());
      if (e < 0 || e >= nIns) corrupt('run index');
      prevRef = e;
      const start = s.insLv.get(e);
      if (next[e] === start + s.insLen.get(e)) corrupt('run already complete');
      if (next[e] !== start) {
        if (stack[stack.length - 1] !== e) stack.splice(stack.lastIndexOf(e), 1);
        else stack.pop();
      } else firstOf[e] = k;
      stack.push(e);
    }
    const at = next[e] as number;
    const end = s.insLv.get(e) + s.insLen.get(e);
    if (len < 1 || at + len > end) corrupt('fragment length');
    const f = new Frag(at, len, deleted, NO_LEAF, null);
    if (at === s.insLv.get(e)) s.insFrag[e] = f;
    else (lastFrag[e] as Frag).next = f;
    lastFrag[e] = f;
    next[e] = at + len;
    if (at + len === end) stack.pop();
    frags[k] = f;
    docLv[k] = at;
    docLen[k] = len;
    if (!deleted) visible += len;
  }
  if (stack.length > 0 || s.insFrag.length !== nIns) corrupt('runs not complete');
  for (let e = 0; e < nIns; e++) if (next[e] !== s.insLv.get(e) + s.insLen.get(e)) corrupt('runs not complete');

  const text = decodeWtf8(d.bytes());
  if (text.length !== visible) corrupt('content length');
  const c = new Uint16Array(total + 64);
  let t = 0;
  for (const f of frags) {
    if (f.deleted) continue;
    for (let i = f.lv, end = f.lv + f.len; i < end; i++) c[i] = text.charCodeAt(t++);
  }
  s.content = c;

  const derived = deriveOrigins(docLv, docLen, nFrags, firstOf, nIns);
  const nExc = d.uint();
  if (nExc > nIns) corrupt('exception count');
  let e = -1;
  for (let k = 0; k < nExc; k++) {
    e += d.uint() + 1;
    if (e >= nIns) corrupt('exception index');
    const oL = d.uint() - 1;
    const oR = d.uint() - 1;
    const start = s.insLv.get(e);
    for (const o of [oL, oR]) {
      if (o >= start) corrupt('origin after its run');
      if (o >= 0) {
        const i = s.insLv.floor(o);
        if (i < 0 || o >= s.insLv.get(i) + s.insLen.get(i)) corrupt('origin is no inserted character');
      }
    }
    derived.oL[e] = oL;
    derived.oR[e] = oR;
  }
  d.end();
  s.insOL.a.set(derived.oL);
  s.insOR.a.set(derived.oR);
  s.tree = FragTree.fromFrags(frags);
  return { state: s, text };
}

/** Whether bytes hold a snapshot (else they should be a delta). */
export function isSnapshot(bytes: Uint8Array): boolean {
  return bytes[0] === SNAPSHOT_TAG;
}

export { SEQ_MAX };
