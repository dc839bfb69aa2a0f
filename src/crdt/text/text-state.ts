/**
 * The state of one sequence replica and the algorithm that changes it: local edits by index,
 * remote operations by id (FugueMax integration), and the op logs that encodeSince reads.
 * Internal to src/crdt (text and list); the public faces are TextDoc and ListDoc. Every operation
 * (one inserted or one deleted element) gets a local version (LV) in the order this replica
 * applied it, so every LV order is a causal order and ids are single numbers in memory. Never
 * touches ids of other replicas except through the agent tables.
 *
 * SeqState knows nothing of what an element holds: its subclasses keep the content by LV
 * (TextState: UTF-16 code units in a Uint16Array; ListState in src/crdt/list: JSON items), and
 * the content travels as a `C` (a string, an array of items) that it only slices and measures.
 */
import { assert } from '../../shared/assert.js';
import { Col } from './column.js';
import { Frag, FragTree, NO_LEAF, removeFrom, type Leaf } from './fragment-tree.js';
import { unitsToString } from './wtf8.js';

/** Most operations one text or list document may hold (its content is indexed by LV). */
export const LV_MAX = 1 << 27;

/** What a run of elements travels as: a string (text) or an array of items (list). */
export interface Sliceable<C> {
  readonly length: number;
  slice(start?: number, end?: number): C;
}

/** One visible change, as a patch: at `pos`, `deleted` elements were removed and `inserted` put in. */
export interface SeqChange<C> {
  pos: number;
  deleted: number;
  inserted: C;
}

/** One visible change of a text: at `pos`, `deleted` code units were removed and `inserted` put in. */
export type TextChange = SeqChange<string>;

/**
 * An operation in replica-independent form (ids are replica name and sequence number), as it
 * travels between replicas. `len` is the number of sequence numbers it takes: characters
 * inserted, or characters deleted.
 */
export type RemoteOp<C = string> = RemoteInsert<C> | RemoteDelete;

export interface RemoteInsert<C = string> {
  readonly kind: 'ins';
  readonly agent: string;
  readonly seq: number;
  readonly len: number;
  /** Id of the character left of the run when it was typed (null: the start). */
  readonly leftAgent: string | null;
  readonly leftSeq: number;
  /** Id of the character (maybe deleted) right of it (null: the end). */
  readonly rightAgent: string | null;
  readonly rightSeq: number;
  /** Deleted stretches: values (length << 1 | deleted) covering the run, or null when all visible. */
  readonly segs: readonly number[] | null;
  /** The visible elements of the run, in order (deleted ones carry no content). */
  readonly content: C;
}

export interface RemoteDelete {
  readonly kind: 'del';
  readonly agent: string;
  readonly seq: number;
  readonly len: number;
  /** Character k of the op deletes (targetAgent, targetSeq + dir * k). */
  readonly targetAgent: string;
  readonly targetSeq: number;
  readonly dir: 1 | -1;
}

/** Sequence-number runs of one agent, mapped to LVs. */
class AgentLog {
  readonly seq = new Col(4);
  readonly lv = new Col(4);
  readonly len = new Col(4);
}

export abstract class SeqState<C extends Sliceable<C>> {
  readonly agents: string[] = [];
  readonly agentIds = new Map<string, number>();
  /** Operations held per agent: the version. */
  readonly seqCount: number[] = [];
  readonly agentLogs: AgentLog[] = [];
  /** The agent index of this replica. */
  me: number;

  /** LV runs: from lvrLv[i], LVs belong to agent lvrAgent[i] from sequence number lvrSeq[i]. */
  readonly lvrLv = new Col();
  readonly lvrAgent = new Col();
  readonly lvrSeq = new Col();
  nextLv = 0;

  /** Insert runs in LV order: char k of run i has LV insLv+k; its left origin is insOL (k = 0) or LV-1; right origin insOR. -1: none. */
  readonly insLv = new Col();
  readonly insLen = new Col();
  readonly insOL = new Col();
  readonly insOR = new Col();
  /** The fragment holding each insert run's first character. */
  insFrag: Frag[] = [];

  /** Delete runs in LV order: char k of run i deletes LV delTarget + delDir * k. */
  readonly delLv = new Col();
  readonly delLen = new Col();
  readonly delTarget = new Col();
  readonly delDir = new Col();

  tree = new FragTree();
  pending: RemoteOp<C>[] = [];

  // Caches of the local editing path. The cursor: a leaf and the visible index of its start,
  // valid while no leaf before it changes. The typing run: the fragment last typed into, valid
  // while nextLv === typedLv (nothing happened since).
  private cursorLeaf: Leaf | null = null;
  private cursorStart = 0;
  private typedFrag: Frag | null = null;
  private typedLv = -1;
  private typedPos = -1;
  private hitOff = 0;
  private idRunEnd = 0;
  private idRunStart = 0;

  constructor(readonly replica: string) {
    this.me = this.agentIndex(replica);
  }

  get length(): number {
    return this.tree.vis;
  }

  agentIndex(name: string): number {
    let a = this.agentIds.get(name);
    if (a === undefined) {
      a = this.agents.length;
      this.agents.push(name);
      this.agentIds.set(name, a);
      this.seqCount.push(0);
      this.agentLogs.push(new AgentLog());
    }
    return a;
  }

  // ---- content: what the subclass keeps per LV ----

  /** No content: the `inserted` of a deletion patch. */
  protected abstract readonly empty: C;
  /** Makes room for the content of LVs below `end` (keeping what is held). */
  abstract reserve(end: number): void;
  /** Replaces the content store with an empty one with room for `capacity` LVs (a snapshot's load). */
  abstract allocate(capacity: number): void;
  /** Stores elements from .. from+n-1 of `content` as the content of LVs lv .. lv+n-1 (room reserved). */
  abstract put(lv: number, content: C, from: number, n: number): void;
  /** The content of LVs lo .. hi-1 (inserted elements whose content is held). */
  protected abstract read(lo: number, hi: number): C;
  /** The parts joined, in order. */
  protected abstract concat(parts: C[]): C;
  /** The visible content from index `pos`, `len` elements (len > 0, pos + len <= length). */
  protected abstract contentAt(pos: number, len: number): C;
  /** The whole visible content. */
  abstract visible(): C;

  /**
   * Calls visit(lv, n) for each stretch of visible elements from index `pos`, `len` of them in
   * all (pos + len <= length), in document order: a generic reader for subclasses.
   */
  protected forVisible(pos: number, len: number, visit: (lv: number, n: number) => void): void {
    if (len === 0) return;
    this.tree.findLeaf(pos);
    let skip = pos - this.tree.foundStart;
    let o = 0;
    for (let leaf: Leaf | null = this.tree.foundLeaf; leaf !== null && o < len; leaf = leaf.next) {
      for (const f of leaf.frags) {
        if (f.deleted) continue;
        let from = f.lv;
        let n = f.len;
        if (skip > 0) {
          if (skip >= n) {
            skip -= n;
            continue;
          }
          from += skip;
          n -= skip;
          skip = 0;
        }
        if (n > len - o) n = len - o;
        visit(from, n);
        o += n;
        if (o === len) break;
      }
    }
  }

  /** The LV of the visible element at index p (0 <= p < length). */
  lvAt(p: number): number {
    const f = this.findChar(p);
    return f.lv + this.hitOff;
  }

  // ---- ids and LVs ----

  /** Records that LVs nextLv.. are agent `a`'s sequence numbers seq... */
  assignLv(a: number, seq: number, n: number): void {
    const lv = this.nextLv;
    const r = this.lvrLv.n - 1;
    if (
      !(r >= 0 && this.lvrAgent.a[r] === a && (this.lvrSeq.a[r] as number) + lv - (this.lvrLv.a[r] as number) === seq)
    ) {
      this.lvrLv.push(lv);
      this.lvrAgent.push(a);
      this.lvrSeq.push(seq);
    }
    const log = this.agentLogs[a] as AgentLog;
    const k = log.seq.n - 1;
    if (k >= 0 && log.seq.get(k) + log.len.get(k) === seq && log.lv.get(k) + log.len.get(k) === lv) {
      (log.len.a[k] as number) += n;
    } else {
      log.seq.push(seq);
      log.lv.push(lv);
      log.len.push(n);
    }
    this.seqCount[a] = seq + n;
    this.nextLv = lv + n;
  }

  /** The LV of (agent a, seq), which must be held; sets idRunStart/idRunEnd (the seq run around it). */
  idToLv(a: number, seq: number): number {
    const log = this.agentLogs[a] as AgentLog;
    const i = log.seq.floor(seq);
    const s = log.seq.get(i);
    this.idRunStart = s;
    this.idRunEnd = s + log.len.get(i);
    return log.lv.get(i) + seq - s;
  }

  /** Index of the LV run holding `lv`. */
  lvRun(lv: number): number {
    return this.lvrLv.floor(lv);
  }

  lvRunEnd(r: number): number {
    return r + 1 < this.lvrLv.n ? this.lvrLv.get(r + 1) : this.nextLv;
  }

  /** The fragment holding the character with LV `lv` (an inserted character). */
  fragAt(lv: number): Frag {
    const e = this.insLv.floor(lv);
    assert(e >= 0 && lv < this.insLv.get(e) + this.insLen.get(e), 'LV of an inserted character');
    let f = this.insFrag[e] as Frag;
    while (lv >= f.lv + f.len) f = f.next as Frag;
    return f;
  }

  // ---- local edits ----

  /** The fragment holding visible character p; sets hitOff to p's offset in it. */
  private findChar(p: number): Frag {
    let leaf = this.cursorLeaf;
    if (leaf === null || p < this.cursorStart || p >= this.cursorStart + leaf.vis) {
      this.tree.findLeaf(p);
      leaf = this.tree.foundLeaf;
      this.cursorLeaf = leaf;
      this.cursorStart = this.tree.foundStart;
    }
    let q = p - this.cursorStart;
    const frags = leaf.frags;
    for (let i = 0; ; i++) {
      const f = frags[i] as Frag;
      if (f.deleted) continue;
      if (q < f.len) {
        this.hitOff = q;
        return f;
      }
      q -= f.len;
    }
  }

  localInsert(pos: number, text: C): void {
    const n = text.length;
    const lv = this.nextLv;
    this.reserve(lv + n);
    this.put(lv, text, 0, n);
    const me = this.me;
    if (this.typedLv === lv && this.typedPos === pos) {
      // Typing on: the run grows in place, nothing else to find.
      const f = this.typedFrag as Frag;
      f.len += n;
      this.tree.addVis(f.leaf, n);
      (this.insLen.a[this.insLen.n - 1] as number) += n;
      this.assignLv(me, this.seqCount[me] as number, n);
      this.typedLv = lv + n;
      this.typedPos = pos + n;
      return;
    }
    // The left origin is the visible character before pos; the right origin is whatever comes
    // right after it, tombstone or not (Yjs's choice: a new run goes before tombstones).
    let leftLv = -1;
    let rightLv: number;
    let leaf: Leaf;
    let idx: number;
    let left: Frag | null = null;
    if (pos === 0) {
      leaf = this.tree.head;
      idx = 0;
      const first = leaf.frags[0];
      rightLv = first === undefined ? -1 : first.lv;
      this.cursorLeaf = null;
    } else {
      const f = this.findChar(pos - 1);
      const off = this.hitOff;
      leftLv = f.lv + off;
      if (off < f.len - 1) {
        rightLv = leftLv + 1;
        const g = this.tree.splitFrag(f, off + 1);
        leaf = g.leaf;
        idx = leaf.frags.indexOf(g);
      } else {
        left = f;
        const nx = this.tree.nextFrag(f);
        rightLv = nx === null ? -1 : nx.lv;
        leaf = f.leaf;
        idx = leaf.frags.indexOf(f) + 1;
      }
    }
    const last = this.insLv.n - 1;
    let typed: Frag;
    if (left !== null && leftLv === lv - 1 && this.insOR.get(last) === rightLv) {
      // Right after the last character inserted, with the same right neighbour: the run goes on.
      left.len += n;
      this.tree.addVis(left.leaf, n);
      (this.insLen.a[last] as number) += n;
      typed = left;
    } else {
      typed = new Frag(lv, n, false, NO_LEAF, null);
      this.tree.insertAt(leaf, idx, typed);
      this.insLv.push(lv);
      this.insLen.push(n);
      this.insOL.push(leftLv);
      this.insOR.push(rightLv);
      this.insFrag.push(typed);
    }
    this.assignLv(me, this.seqCount[me] as number, n);
    this.typedFrag = typed;
    this.typedLv = lv + n;
    this.typedPos = pos + n;
  }

  localDelete(pos: number, len: number): void {
    let f = this.findChar(pos);
    let off = this.hitOff;
    let lv = this.nextLv;
    let remaining = len;
    const tree = this.tree;
    for (;;) {
      if (off > 0) {
        f = tree.splitFrag(f, off);
        off = 0;
      }
      if (f.len > remaining) tree.splitFrag(f, remaining);
      const take = f.len;
      f.deleted = true;
      tree.addVis(f.leaf, -take);
      this.pushDelete(lv, take, f.lv, 1);
      lv += take;
      remaining -= take;
      if (remaining === 0) {
        this.mergeForward(this.mergeBack(f));
        break;
      }
      let nx = tree.nextFrag(f) as Frag;
      while (nx.deleted) nx = tree.nextFrag(nx) as Frag;
      this.mergeForward(this.mergeBack(f));
      f = nx;
    }
    this.assignLv(this.me, this.seqCount[this.me] as number, len);
  }

  private pushDelete(lv: number, len: number, target: number, dir: number): void {
    const d = this.delLv.n - 1;
    if (d >= 0) {
      const dl = this.delLen.get(d);
      if (this.delLv.get(d) + dl === lv) {
        const t0 = this.delTarget.get(d);
        const D = dl === 1 ? target - t0 : this.delDir.get(d);
        if ((D === 1 || D === -1) && target === t0 + D * dl && (len === 1 || dir === D)) {
          this.delDir.a[d] = D;
          this.delLen.a[d] = dl + len;
          return;
        }
      }
    }
    this.delLv.push(lv);
    this.delLen.push(len);
    this.delTarget.push(target);
    this.delDir.push(dir);
  }

  /** Merges deleted `f` into its left neighbour when that continues it; returns the survivor. */
  private mergeBack(f: Frag): Frag {
    const frags = f.leaf.frags;
    const i = frags.indexOf(f);
    const p = frags[i - 1];
    if (p !== undefined && p.next === f && p.deleted === f.deleted) {
      p.len += f.len;
      p.next = f.next;
      removeFrom(frags, i);
      return p;
    }
    return f;
  }

  private mergeForward(f: Frag): void {
    const frags = f.leaf.frags;
    const n = frags[frags.indexOf(f) + 1];
    if (n !== undefined && f.next === n && n.deleted === f.deleted) {
      f.len += n.len;
      f.next = n.next;
      removeFrom(frags, frags.indexOf(n));
    }
  }

  // ---- remote operations ----

  /** Applies operations (in causal order, duplicates allowed); buffers those whose dependencies are missing. */
  applyOps(ops: readonly RemoteOp<C>[], changes: SeqChange<C>[]): void {
    this.cursorLeaf = null;
    this.typedLv = -1;
    this.out = changes;
    this.chPos = -1;
    const before = this.nextLv;
    for (const op of ops) if (!this.applyOp(op)) this.pending.push(op);
    if (this.pending.length > 0 && this.nextLv !== before) this.retry();
    this.flushInsert();
    this.out = [];
  }

  retryPending(changes: SeqChange<C>[]): void {
    this.cursorLeaf = null;
    this.typedLv = -1;
    this.out = changes;
    this.chPos = -1;
    this.retry();
    this.flushInsert();
    this.out = [];
  }

  private retry(): void {
    for (let progress = true; progress && this.pending.length > 0; ) {
      progress = false;
      const rest: RemoteOp<C>[] = [];
      for (const op of this.pending) {
        if (this.applyOp(op)) progress = true;
        else rest.push(op);
      }
      this.pending = rest;
    }
  }

  // ---- reporting changes ----
  // Remote inserts that land inside or beside the previous one are reported as one patch. Its
  // text is not built as they arrive (slicing a growing string per run is quadratic): while it
  // grows, the patch is only a place in the current text, chPos..chPos+chLen, read from the
  // document when the patch is done, that is, before anything else changes the text.

  /** The patches being reported. */
  private out: SeqChange<C>[] = [];
  /** The growing insert patch, or -1. */
  private chPos = -1;
  private chLen = 0;

  /** Reports `n` visible characters about to be inserted at `pos` (before they are). */
  private noteInsert(pos: number, n: number): void {
    if (this.chPos >= 0) {
      if (pos >= this.chPos && pos <= this.chPos + this.chLen) {
        this.chLen += n;
        return;
      }
      this.flushInsert();
    } else {
      // A patch reported before this batch (a loaded snapshot's text) grows the same way.
      const p = this.out[this.out.length - 1];
      if (p !== undefined && p.deleted === 0 && pos >= p.pos && pos <= p.pos + p.inserted.length) {
        this.out.pop();
        this.chPos = p.pos;
        this.chLen = p.inserted.length + n;
        return;
      }
    }
    this.chPos = pos;
    this.chLen = n;
  }

  /** Ends the growing insert patch, reading its text from the document. */
  private flushInsert(): void {
    if (this.chPos < 0) return;
    this.out.push({ pos: this.chPos, deleted: 0, inserted: this.contentAt(this.chPos, this.chLen) });
    this.chPos = -1;
  }

  /** Whether (name, seq) is held; -1 when not. */
  private knownLv(name: string, seq: number): number {
    const a = this.agentIds.get(name);
    if (a === undefined || seq >= (this.seqCount[a] as number)) return -1;
    return this.idToLv(a, seq);
  }

  private isInserted(lv: number): boolean {
    const e = this.insLv.floor(lv);
    return e >= 0 && lv < this.insLv.get(e) + this.insLen.get(e);
  }

  /**
   * Whether agent ta's seqs lo..lo+n-1 (all held) are inserted characters. An op that deletes or
   * anchors to something else can only come from a broken or hostile peer: it is dropped (not
   * applied, not held), which stalls that peer's later ops here but never corrupts the state.
   */
  private allInserted(ta: number, lo: number, n: number): boolean {
    for (let k = 0; k < n; ) {
      const lv = this.idToLv(ta, lo + k);
      const m = Math.min(n - k, this.idRunEnd - (lo + k));
      const e = this.insLv.floor(lv);
      if (e < 0) return false;
      const end = this.insLv.get(e) + this.insLen.get(e);
      if (lv >= end) return false;
      // The LV range may run on into the next insert runs.
      for (let x = end, i = e + 1; x < lv + m; i++) {
        if (i >= this.insLv.n || this.insLv.get(i) !== x) return false;
        x = this.insLv.get(i) + this.insLen.get(i);
      }
      k += m;
    }
    return true;
  }

  /** Applies one op; false when its dependencies are missing (nothing changed then). */
  private applyOp(op: RemoteOp<C>): boolean {
    const a = this.agentIndex(op.agent);
    const have = this.seqCount[a] as number;
    if (op.seq + op.len <= have) return true;
    if (op.seq > have) return false;
    const skip = have - op.seq;
    const n = op.len - skip;
    // Past the most a doc may hold (a few bytes of delta can claim 2^31 deleted elements): dropped
    // like a hostile op (see allInserted), so that LVs stay small integers and content stays small.
    if (this.nextLv + n > LV_MAX) return true;
    if (op.kind === 'del') {
      const tSeq = op.targetSeq + op.dir * skip;
      const ta = this.agentIds.get(op.targetAgent);
      if (ta === undefined) return false;
      const lo = op.dir > 0 ? tSeq : tSeq - n + 1;
      if (lo + n - 1 >= (this.seqCount[ta] as number)) return false;
      if (!this.allInserted(ta, lo, n)) return true; // hostile: dropped, see allInserted
      this.remoteDelete(a, have, n, ta, tSeq, op.dir);
      return true;
    }
    let oL = -1;
    let oR = -1;
    if (skip > 0) oL = this.idToLv(a, have - 1);
    else if (op.leftAgent !== null) {
      oL = this.knownLv(op.leftAgent, op.leftSeq);
      if (oL < 0) return false;
      if (!this.isInserted(oL)) return true;
    }
    if (op.rightAgent !== null) {
      oR = this.knownLv(op.rightAgent, op.rightSeq);
      if (oR < 0) return false;
      if (!this.isInserted(oR)) return true;
    }
    let segs = op.segs;
    let text = op.content;
    if (skip > 0 && segs !== null) {
      // Drop the first `skip` characters from the stretches and the visible text.
      const out: number[] = [];
      let drop = skip;
      let dropVisible = 0;
      for (const s of segs) {
        let l = s >>> 1;
        const del = s & 1;
        if (drop > 0) {
          const d = Math.min(drop, l);
          drop -= d;
          if (del === 0) dropVisible += d;
          l -= d;
        }
        if (l > 0) out.push(l * 2 + del);
      }
      segs = out;
      text = text.slice(dropVisible);
    } else if (skip > 0) text = text.slice(skip);
    this.remoteInsert(a, have, n, oL, oR, segs, text);
    return true;
  }

  private remoteDelete(a: number, seq: number, n: number, ta: number, tSeq: number, dir: 1 | -1): void {
    const lv = this.nextLv;
    this.assignLv(a, seq, n);
    for (let k = 0; k < n; ) {
      const ts = tSeq + dir * k;
      const tLv = this.idToLv(ta, ts);
      const m = dir > 0 ? Math.min(n - k, this.idRunEnd - ts) : Math.min(n - k, ts - this.idRunStart + 1);
      this.pushDelete(lv + k, m, tLv, dir);
      if (dir > 0) this.markDeleted(tLv, tLv + m);
      else this.markDeleted(tLv - m + 1, tLv + 1);
      k += m;
    }
  }

  /** Marks LVs lo..hi-1 (inserted characters) deleted. */
  private markDeleted(lo: number, hi: number): void {
    const tree = this.tree;
    let f = this.fragAt(lo);
    let x = lo;
    let last: Frag | null = null;
    while (x < hi) {
      if (f.deleted) {
        x = f.lv + f.len;
        if (x < hi) f = f.next ?? this.fragAt(x);
        continue;
      }
      if (f.lv < x) f = tree.splitFrag(f, x - f.lv);
      if (f.lv + f.len > hi) tree.splitFrag(f, hi - f.lv);
      const end = f.lv + f.len;
      const nx = f.next;
      const pos = tree.visIndex(f);
      this.flushInsert();
      f.deleted = true;
      tree.addVis(f.leaf, -f.len);
      pushChange(this.out, pos, f.len, this.empty);
      last = this.mergeBack(f);
      x = end;
      if (x < hi) f = nx ?? this.fragAt(x);
    }
    if (last !== null) this.mergeForward(last);
  }

  private remoteInsert(
    a: number,
    seq: number,
    n: number,
    oL: number,
    oR: number,
    segs: readonly number[] | null,
    text: C,
  ): void {
    const lv = this.nextLv;
    this.reserve(lv + n);
    const tree = this.tree;
    // Where the run goes.
    const dest = this.integrate(oL, oR, this.agents[a] as string, seq);
    const destOff = this.destOff;
    const before = dest !== null && destOff > 0 ? tree.splitFrag(dest, destOff) : dest;
    if (text.length > 0) this.noteInsert(before === null ? tree.vis : tree.visIndex(before), text.length);
    this.assignLv(a, seq, n);
    // Its fragments: one per stretch of visible or deleted characters.
    let first: Frag;
    if (segs === null) {
      this.put(lv, text, 0, n);
      first = new Frag(lv, n, false, NO_LEAF, null);
      tree.insertBefore(before, first);
    } else {
      let x = lv;
      let t = 0;
      let prev: Frag | null = null;
      first = prev as unknown as Frag;
      for (const s of segs) {
        const l = s >>> 1;
        const del = (s & 1) === 1;
        if (!del) {
          this.put(x, text, t, l);
          t += l;
        }
        const f = new Frag(x, l, del, NO_LEAF, null);
        if (prev === null) {
          tree.insertBefore(before, f);
          first = f;
        } else {
          prev.next = f;
          tree.insertAfter(prev, f);
        }
        prev = f;
        x += l;
      }
    }
    // The op log: continue the last insert run when this one carries on from it.
    const last = this.insLv.n - 1;
    if (
      last >= 0 &&
      oL === lv - 1 &&
      this.insLv.get(last) + this.insLen.get(last) === lv &&
      this.insOR.get(last) === oR
    ) {
      const tail = this.fragAt(lv - 1);
      (this.insLen.a[last] as number) += n;
      tail.next = first;
      const frags = tail.leaf.frags;
      if (first.leaf === tail.leaf && frags[frags.indexOf(tail) + 1] === first && first.deleted === tail.deleted) {
        tail.len += first.len;
        tail.next = first.next;
        removeFrom(frags, frags.indexOf(first));
      }
    } else {
      this.insLv.push(lv);
      this.insLen.push(n);
      this.insOL.push(oL);
      this.insOR.push(oR);
      this.insFrag.push(first);
    }
  }

  private destOff = 0;

  /**
   * FugueMax integration (Weidner & Kleppmann 2023; Gentle's YjsMod), for a run whose first
   * character has left origin oL and right origin oR (LVs, -1 for the start/end). Returns the
   * fragment to insert before (null: the end), splitting at destOff when that is not 0.
   *
   * Scan right from just after oL. For each run `o` met (only a fragment's first character
   * matters: the others have their predecessor as left origin, which lies inside the scanned
   * range, so they never stop the scan):
   *
   *   o.left before oL           -> o belongs to an outer subtree: stop, insert here
   *   o.left after oL            -> o is inside a sibling's subtree: skip it
   *   o.left == oL, o.right == oR -> true siblings: the smaller replica name goes first
   *   o.left == oL, o.right before oR -> o sorts before us but its subtree may not end yet:
   *                                  remember this spot (scanning) and look further
   *   o.left == oL, o.right after oR  -> o sorts after our subtree: skip, forget the spot
   *
   *   ... oL [ o1 o1' ] [ o2 ... ] | new | oR ...
   */
  private integrate(oL: number, oR: number, name: string, seq: number): Frag | null {
    const tree = this.tree;
    let cur: Frag | null;
    if (oL < 0) cur = tree.firstFrag();
    else {
      const f = this.fragAt(oL);
      const off = oL - f.lv;
      cur = off < f.len - 1 ? tree.splitFrag(f, off + 1) : tree.nextFrag(f);
    }
    this.destOff = 0;
    if (cur === null || cur.lv === oR) return cur;
    let scanning = false;
    let dest: Frag | null = cur;
    let destOff = 0;
    for (;;) {
      if (!scanning) {
        dest = cur;
        destOff = 0;
      }
      if (cur === null || cur.lv === oR) break;
      const e = this.insLv.floor(cur.lv);
      const oleft = cur.lv === this.insLv.get(e) ? this.insOL.get(e) : cur.lv - 1;
      const oright = this.insOR.get(e);
      if (oleft !== oL) {
        if (oL !== -1 && (oleft === -1 || this.lvBefore(oleft, oL))) break;
      } else if (oright === oR) {
        const r = this.lvRun(cur.lv);
        const other = this.agents[this.lvrAgent.get(r)] as string;
        const otherSeq = this.lvrSeq.get(r) + cur.lv - this.lvrLv.get(r);
        if (name < other || (name === other && seq < otherSeq)) break;
        scanning = false;
      } else if (oR === -1 || (oright !== -1 && this.lvBefore(oright, oR))) {
        scanning = true;
      } else {
        scanning = false;
      }
      if (oR > cur.lv && oR < cur.lv + cur.len) {
        if (!scanning) {
          dest = cur;
          destOff = oR - cur.lv;
        }
        break;
      }
      cur = tree.nextFrag(cur);
    }
    this.destOff = destOff;
    return dest;
  }

  /** Whether the character with LV a comes before the one with LV b in the document. */
  private lvBefore(a: number, b: number): boolean {
    const fa = this.fragAt(a);
    const fb = this.fragAt(b);
    if (fa === fb) return a < b;
    return this.tree.compare(fa, fb) < 0;
  }

  // ---- reading the logs (for encodeSince) ----

  /** (agent name, seq) of an LV, written into out[0], out[1]. */
  lvToId(lv: number): { agent: string; seq: number } {
    const r = this.lvRun(lv);
    return { agent: this.agents[this.lvrAgent.get(r)] as string, seq: this.lvrSeq.get(r) + lv - this.lvrLv.get(r) };
  }

  /** Everything held that a replica at `since` lacks, as ops in LV order (a causal order). */
  collectOps(since: ReadonlyMap<string, number> | undefined): RemoteOp<C>[] {
    const ranges: number[][] = [];
    for (let a = 0; a < this.agents.length; a++) {
      const s = since?.get(this.agents[a] as string) ?? 0;
      if ((this.seqCount[a] as number) <= s) continue;
      const log = this.agentLogs[a] as AgentLog;
      for (let i = Math.max(0, log.seq.floor(s)); i < log.seq.n; i++) {
        const rs = log.seq.get(i);
        const from = Math.max(s, rs);
        const rlv = log.lv.get(i);
        ranges.push([rlv + from - rs, rlv + log.len.get(i), a, from]);
      }
    }
    ranges.sort((x, y) => (x[0] as number) - (y[0] as number));
    const ops: RemoteOp<C>[] = [];
    for (const [lo, hi, a, seq] of ranges)
      this.collectRange(lo as number, hi as number, a as number, seq as number, ops);
    return ops;
  }

  private collectRange(lo: number, hi: number, a: number, seq: number, ops: RemoteOp<C>[]): void {
    const agent = this.agents[a] as string;
    let i = Math.max(0, this.insLv.floor(lo));
    let j = Math.max(0, this.delLv.floor(lo));
    for (let x = lo; x < hi; ) {
      if (i < this.insLv.n && this.insLv.get(i) <= x && x < this.insLv.get(i) + this.insLen.get(i)) {
        const end = Math.min(hi, this.insLv.get(i) + this.insLen.get(i));
        ops.push(this.insertOp(i, x, end, agent, seq + x - lo));
        x = end;
        i++;
      } else if (j < this.delLv.n && this.delLv.get(j) <= x && x < this.delLv.get(j) + this.delLen.get(j)) {
        const end = Math.min(hi, this.delLv.get(j) + this.delLen.get(j));
        this.deleteOps(j, x, end, agent, seq + x - lo, ops);
        x = end;
        j++;
      } else if (i < this.insLv.n && this.insLv.get(i) + this.insLen.get(i) <= x) i++;
      else if (j < this.delLv.n && this.delLv.get(j) + this.delLen.get(j) <= x) j++;
      else assert(false, `LV ${x} is in no op run`);
    }
  }

  private insertOp(e: number, x: number, end: number, agent: string, seq: number): RemoteInsert<C> {
    const oL = x === this.insLv.get(e) ? this.insOL.get(e) : x - 1;
    const oR = this.insOR.get(e);
    const l = oL < 0 ? null : this.lvToId(oL);
    const r = oR < 0 ? null : this.lvToId(oR);
    let segs: number[] | null = null;
    const parts: C[] = [];
    let f = this.fragAt(x);
    for (let y = x; y < end; ) {
      const segEnd = Math.min(end, f.lv + f.len);
      const del = f.deleted ? 1 : 0;
      if (segs === null && del === 1) {
        segs = [];
        if (y > x) segs.push((y - x) * 2);
      }
      if (segs !== null) {
        const k = segs.length - 1;
        if (k >= 0 && ((segs[k] as number) & 1) === del) segs[k] = (segs[k] as number) + (segEnd - y) * 2;
        else segs.push((segEnd - y) * 2 + del);
      }
      if (del === 0) parts.push(this.read(y, segEnd));
      y = segEnd;
      if (y < end) f = f.next as Frag;
    }
    const content = parts.length === 1 ? (parts[0] as C) : this.concat(parts);
    return {
      kind: 'ins',
      agent,
      seq,
      len: end - x,
      leftAgent: l === null ? null : l.agent,
      leftSeq: l === null ? 0 : l.seq,
      rightAgent: r === null ? null : r.agent,
      rightSeq: r === null ? 0 : r.seq,
      segs,
      content,
    };
  }

  private deleteOps(d: number, x: number, end: number, agent: string, seq: number, ops: RemoteOp<C>[]): void {
    const dir = this.delDir.get(d) < 0 ? -1 : 1;
    const t = this.delTarget.get(d) + dir * (x - this.delLv.get(d));
    const n = end - x;
    for (let k = 0; k < n; ) {
      const tl = t + dir * k;
      const r = this.lvRun(tl);
      const rs = this.lvrLv.get(r);
      const m = dir > 0 ? Math.min(n - k, this.lvRunEnd(r) - tl) : Math.min(n - k, tl - rs + 1);
      ops.push({
        kind: 'del',
        agent,
        seq: seq + k,
        len: m,
        targetAgent: this.agents[this.lvrAgent.get(r)] as string,
        targetSeq: this.lvrSeq.get(r) + tl - rs,
        dir,
      });
      k += m;
    }
  }
}

/** Appends a deletion patch, merging it into the previous one when that is a deletion it touches. */
function pushChange<C extends Sliceable<C>>(changes: SeqChange<C>[], pos: number, deleted: number, inserted: C): void {
  const p = changes[changes.length - 1];
  if (p !== undefined && p.inserted.length === 0) {
    if (pos === p.pos) {
      p.deleted += deleted;
      return;
    }
    if (pos + deleted === p.pos) {
      p.pos = pos;
      p.deleted += deleted;
      return;
    }
  }
  changes.push({ pos, deleted, inserted });
}

/** A text: the content of each element is one UTF-16 code unit. */
export class TextState extends SeqState<string> {
  /** UTF-16 code unit of every inserted character by LV (0 where unknown: deleted before we saw it). */
  content = new Uint16Array(256);
  protected readonly empty = '';

  /** The visible text. */
  override toString(): string {
    const out = new Uint16Array(this.tree.vis);
    let o = 0;
    const c = this.content;
    for (let leaf: Leaf | null = this.tree.head; leaf !== null; leaf = leaf.next) {
      for (const f of leaf.frags) {
        if (f.deleted) continue;
        if (f.len === 1) out[o++] = c[f.lv] as number;
        else {
          out.set(c.subarray(f.lv, f.lv + f.len), o);
          o += f.len;
        }
      }
    }
    return unitsToString(out, 0, o);
  }

  visible(): string {
    return this.toString();
  }

  reserve(end: number): void {
    if (end <= this.content.length) return;
    let size = this.content.length + (this.content.length >> 1);
    while (size < end) size *= 2;
    const c = new Uint16Array(size);
    c.set(this.content.subarray(0, this.nextLv));
    this.content = c;
  }

  /** Trims spare capacity (after loading or a large merge). */
  compact(): void {
    if (this.content.length > this.nextLv + 64) this.content = this.content.slice(0, this.nextLv + 64);
  }

  allocate(capacity: number): void {
    this.content = new Uint16Array(capacity);
  }

  put(lv: number, text: string, from: number, n: number): void {
    const c = this.content;
    for (let i = 0; i < n; i++) c[lv + i] = text.charCodeAt(from + i);
  }

  protected read(lo: number, hi: number): string {
    return unitsToString(this.content, lo, hi);
  }

  protected concat(parts: string[]): string {
    return parts.join('');
  }

  /** The visible text from `pos`, `len` code units (len > 0, pos + len <= length). */
  protected contentAt(pos: number, len: number): string {
    const out = new Uint16Array(len);
    const c = this.content;
    this.tree.findLeaf(pos);
    let skip = pos - this.tree.foundStart;
    let o = 0;
    for (let leaf: Leaf | null = this.tree.foundLeaf; leaf !== null && o < len; leaf = leaf.next) {
      for (const f of leaf.frags) {
        if (f.deleted) continue;
        let from = f.lv;
        let n = f.len;
        if (skip > 0) {
          if (skip >= n) {
            skip -= n;
            continue;
          }
          from += skip;
          n -= skip;
          skip = 0;
        }
        if (n > len - o) n = len - o;
        if (n === 1) out[o] = c[from] as number;
        else out.set(c.subarray(from, from + n), o);
        o += n;
        if (o === len) break;
      }
    }
    return unitsToString(out, 0, len);
  }
}
