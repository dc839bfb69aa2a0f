/**
 * The document-order B-tree of the text CRDT. Leaves hold fragments: runs of characters with
 * consecutive local versions (LVs) from one insert operation, all visible or all deleted.
 * Every node keeps the visible length of its subtree, so a visible index maps to a fragment in
 * O(log n), and a fragment's visible index is a walk to the root. Leaves are linked left to right.
 * Invariant: fragments appear in document order, with tombstones; the tree never holds content.
 */
import { assert } from '../../shared/assert.js';

/** Fragments per leaf before it splits. */
export const LEAF_MAX = 32;
/** Children per inner node before it splits. */
export const INNER_MAX = 32;

/**
 * A run of characters with LVs `lv .. lv+len-1`, all from one insert operation run, all
 * visible or all deleted. `next` is the fragment holding LV `lv+len` when that LV belongs to the
 * same insert run (the run's fragments in LV order), else null.
 */
export class Frag {
  constructor(
    public lv: number,
    public len: number,
    public deleted: boolean,
    public leaf: Leaf,
    public next: Frag | null,
  ) {}
}

export class Leaf {
  vis = 0;
  parent: Inner | null = null;
  next: Leaf | null = null;
  prev: Leaf | null = null;
  constructor(public frags: Frag[]) {}
}

export class Inner {
  vis = 0;
  parent: Inner | null = null;
  constructor(public children: Array<Inner | Leaf>) {}
}

/** A placeholder leaf for fragments not yet placed in the tree. */
export const NO_LEAF = new Leaf([]);

/** arr.splice(i, 0, v) without allocating the (empty) result array: this runs per keystroke. */
export function insertInto<T>(arr: T[], i: number, v: T): void {
  let j = arr.length;
  arr.push(v);
  for (; j > i; j--) arr[j] = arr[j - 1] as T;
  arr[i] = v;
}

/** arr.splice(i, 1) without allocating the result array. */
export function removeFrom<T>(arr: T[], i: number): void {
  const n = arr.length - 1;
  for (let j = i; j < n; j++) arr[j] = arr[j + 1] as T;
  arr.pop();
}

function sumVis(frags: readonly Frag[]): number {
  let v = 0;
  for (const f of frags) if (!f.deleted) v += f.len;
  return v;
}

export class FragTree {
  root: Inner | Leaf;
  head: Leaf;
  /** Set by findLeaf: the leaf found and the visible index of its first character. */
  foundLeaf: Leaf;
  foundStart = 0;

  constructor() {
    const leaf = new Leaf([]);
    this.root = leaf;
    this.head = leaf;
    this.foundLeaf = leaf;
  }

  /** Builds a tree from fragments already in document order (loading a snapshot). */
  static fromFrags(frags: readonly Frag[]): FragTree {
    const tree = new FragTree();
    if (frags.length === 0) return tree;
    const per = (LEAF_MAX * 3) >> 2;
    let level: Array<Inner | Leaf> = [];
    let prev: Leaf | null = null;
    for (let i = 0; i < frags.length; i += per) {
      const leaf = new Leaf(frags.slice(i, i + per));
      let v = 0;
      for (const f of leaf.frags) {
        f.leaf = leaf;
        if (!f.deleted) v += f.len;
      }
      leaf.vis = v;
      leaf.prev = prev;
      if (prev !== null) prev.next = leaf;
      else tree.head = leaf;
      prev = leaf;
      level.push(leaf);
    }
    const fan = (INNER_MAX * 3) >> 2;
    while (level.length > 1) {
      const up: Inner[] = [];
      for (let i = 0; i < level.length; i += fan) {
        const node = new Inner(level.slice(i, i + fan));
        let v = 0;
        for (const c of node.children) {
          c.parent = node;
          v += c.vis;
        }
        node.vis = v;
        up.push(node);
      }
      level = up;
    }
    tree.root = level[0] as Inner | Leaf;
    return tree;
  }

  get vis(): number {
    return this.root.vis;
  }

  addVis(leaf: Leaf, d: number): void {
    leaf.vis += d;
    for (let p = leaf.parent; p !== null; p = p.parent) p.vis += d;
  }

  /** Finds the leaf holding visible character `p` (0 <= p < vis); sets foundLeaf and foundStart. */
  findLeaf(p: number): void {
    let node = this.root;
    let start = 0;
    while (!(node instanceof Leaf)) {
      const ch = node.children;
      let i = 0;
      for (; i < ch.length - 1; i++) {
        const c = ch[i] as Inner | Leaf;
        if (p < c.vis) break;
        p -= c.vis;
        start += c.vis;
      }
      node = ch[i] as Inner | Leaf;
    }
    this.foundLeaf = node;
    this.foundStart = start;
  }

  firstFrag(): Frag | null {
    return this.head.frags[0] ?? null;
  }

  lastLeaf(): Leaf {
    let node = this.root;
    while (!(node instanceof Leaf)) node = node.children[node.children.length - 1] as Inner | Leaf;
    return node;
  }

  nextFrag(f: Frag): Frag | null {
    const leaf = f.leaf;
    const i = leaf.frags.indexOf(f);
    const n = leaf.frags[i + 1];
    if (n !== undefined) return n;
    return leaf.next === null ? null : (leaf.next.frags[0] ?? null);
  }

  /** Inserts `f` at index `idx` of `leaf`, splitting the leaf when full. */
  insertAt(leaf: Leaf, idx: number, f: Frag): void {
    f.leaf = leaf;
    insertInto(leaf.frags, idx, f);
    if (!f.deleted) this.addVis(leaf, f.len);
    if (leaf.frags.length > LEAF_MAX) this.splitLeaf(leaf);
  }

  /** Inserts `f` right before `before`, or at the end of the document when `before` is null. */
  insertBefore(before: Frag | null, f: Frag): void {
    if (before === null) {
      const leaf = this.lastLeaf();
      this.insertAt(leaf, leaf.frags.length, f);
    } else {
      this.insertAt(before.leaf, before.leaf.frags.indexOf(before), f);
    }
  }

  insertAfter(after: Frag, f: Frag): void {
    this.insertAt(after.leaf, after.leaf.frags.indexOf(after) + 1, f);
  }

  /** Splits `f` after its first `k` characters (0 < k < len) and returns the right part. */
  splitFrag(f: Frag, k: number): Frag {
    assert(k > 0 && k < f.len, 'split inside the fragment');
    const g = new Frag(f.lv + k, f.len - k, f.deleted, f.leaf, f.next);
    f.len = k;
    f.next = g;
    const leaf = f.leaf;
    insertInto(leaf.frags, leaf.frags.indexOf(f) + 1, g);
    if (leaf.frags.length > LEAF_MAX) this.splitLeaf(leaf);
    return g;
  }

  /** Removes the fragment at `idx` of `leaf` (its visible length must already be accounted). */
  removeAt(leaf: Leaf, idx: number): void {
    removeFrom(leaf.frags, idx);
  }

  private splitLeaf(leaf: Leaf): void {
    const half = leaf.frags.length >> 1;
    const right = new Leaf(leaf.frags.splice(half));
    for (const f of right.frags) f.leaf = right;
    right.vis = sumVis(right.frags);
    leaf.vis -= right.vis;
    right.next = leaf.next;
    if (right.next !== null) right.next.prev = right;
    right.prev = leaf;
    leaf.next = right;
    this.addChildAfter(leaf, right);
  }

  private addChildAfter(node: Inner | Leaf, sibling: Inner | Leaf): void {
    const parent = node.parent;
    if (parent === null) {
      const root = new Inner([node, sibling]);
      root.vis = node.vis + sibling.vis;
      node.parent = root;
      sibling.parent = root;
      this.root = root;
      return;
    }
    sibling.parent = parent;
    parent.children.splice(parent.children.indexOf(node) + 1, 0, sibling);
    if (parent.children.length > INNER_MAX) {
      const half = parent.children.length >> 1;
      const right = new Inner(parent.children.splice(half));
      let v = 0;
      for (const c of right.children) {
        c.parent = right;
        v += c.vis;
      }
      right.vis = v;
      parent.vis -= v;
      this.addChildAfter(parent, right);
    }
  }

  /** The visible index of the first character of `f` (or where it would be, if deleted). */
  visIndex(f: Frag): number {
    const leaf = f.leaf;
    let pos = 0;
    for (const g of leaf.frags) {
      if (g === f) break;
      if (!g.deleted) pos += g.len;
    }
    let node: Inner | Leaf = leaf;
    for (let p = node.parent; p !== null; node = p, p = p.parent) {
      for (const c of p.children) {
        if (c === node) break;
        pos += c.vis;
      }
    }
    return pos;
  }

  /** Document order of two fragments: negative when `a` comes first, 0 when the same. */
  compare(a: Frag, b: Frag): number {
    if (a === b) return 0;
    if (a.leaf === b.leaf) return a.leaf.frags.indexOf(a) - a.leaf.frags.indexOf(b);
    const pa: Array<Inner | Leaf> = [];
    const pb: Array<Inner | Leaf> = [];
    for (let n: Inner | Leaf | null = a.leaf; n !== null; n = n.parent) pa.push(n);
    for (let n: Inner | Leaf | null = b.leaf; n !== null; n = n.parent) pb.push(n);
    let i = pa.length - 1;
    let j = pb.length - 1;
    while (pa[i - 1] === pb[j - 1]) {
      i--;
      j--;
    }
    const parent = pa[i] as Inner;
    return parent.children.indexOf(pa[i - 1] as Inner | Leaf) - parent.children.indexOf(pb[j - 1] as Inner | Leaf);
  }

  /** Every fragment in document order. */
  *frags(): IterableIterator<Frag> {
    for (let leaf: Leaf | null = this.head; leaf !== null; leaf = leaf.next) yield* leaf.frags;
  }
}
