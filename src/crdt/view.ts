/**
 * What a document shows: the JSON view of its entries (src/core/record.ts), identical on
 * every replica that holds the same state.
 *
 * At each path the view is, in this order of precedence: an object when any entry lies
 * below the path; else the winning register value; else a counter (the sum of every
 * replica's increments less its decrements); else a set (its elements, sorted). Register
 * values that lose, including one written at a path another leader made an object of
 * concurrently, are the conflicts; at a path whose policy is `lww` the latest register value
 * (compareLww) is shown and the others are not conflicts. The join does not drop them (see
 * applyPolicy in src/core/record.ts): they go when a write to the path observes them.
 * Counter and set entries hidden by another type are kept, not lost, and show again when
 * what hides them is removed.
 */
import { Policy, compareBytes, compareForWinner, compareLww, fromUtf8, pathOf } from '../core/index.js';
import type { JsonValue, PolicyAt, RecordState, Sibling } from '../core/index.js';
import { ROOT, segments, unescapeKey } from './json-pointer.js';

export type Node =
  | { type: 'object'; fields: Map<string, Node> }
  | { type: 'register'; value: JsonValue; winner: Sibling; merged: boolean }
  | { type: 'counter'; value: number }
  | { type: 'set'; elements: JsonValue[] };

export interface PathConflict {
  path: string;
  /** The register values not shown, in dot order. */
  siblings: Sibling[];
}

/**
 * Resolves a path's register siblings with a merge function, when its policy is 'merge'.
 * The function answers undefined when it failed: the siblings then show as conflicts.
 */
export type MergeAt = (path: string) => ((values: JsonValue[]) => JsonValue | undefined) | undefined;

export interface DocumentView {
  /** undefined when nothing live is left: the document reads as absent. */
  root: Node | undefined;
  conflicts: PathConflict[];
}

interface Trie {
  entries: Sibling[];
  children: Map<string, Trie>;
}

const parse = (bytes: Uint8Array): JsonValue => JSON.parse(fromUtf8(bytes)) as JsonValue;

/** The `[p, n]` totals of a counter entry. */
export function countOf(s: Sibling): { p: number; n: number } {
  const [p, n] = parse(s.value as Uint8Array) as [number, number];
  return { p, n };
}

/** Whether the registers at `path` are resolved last-writer-wins. */
function lwwAt(policy: Policy | PolicyAt): (path: string) => boolean {
  if (typeof policy !== 'function') return () => policy === Policy.lww;
  return (path) => policy(path) === Policy.lww;
}

/**
 * The view of `state`. `policy` is the collection's (kinds.ts `policyAt`): under `lww` a
 * path's latest register value shows, without a conflict; `mergeAt` resolves 'merge' paths.
 */
export function materialize(
  state: RecordState,
  mergeAt: MergeAt = () => undefined,
  policy: Policy | PolicyAt = Policy.keep,
): DocumentView {
  const root: Trie = { entries: [], children: new Map() };
  for (const s of state.siblings) {
    let t = root;
    for (const seg of segments(pathOf(s))) {
      let c = t.children.get(seg);
      if (c === undefined) t.children.set(seg, (c = { entries: [], children: new Map() }));
      t = c;
    }
    t.entries.push(s);
  }
  const conflicts: PathConflict[] = [];
  const node = build(root, ROOT, { mergeAt, lww: lwwAt(policy) }, conflicts);
  return { root: node, conflicts };
}

interface Resolve {
  mergeAt: MergeAt;
  lww: (path: string) => boolean;
}

function build(t: Trie, path: string, resolve: Resolve, conflicts: PathConflict[]): Node | undefined {
  const fields = new Map<string, Node>();
  for (const seg of [...t.children.keys()].sort()) {
    const n = build(t.children.get(seg) as Trie, `${path}/${seg}`, resolve, conflicts);
    if (n !== undefined) fields.set(unescapeKey(seg), n);
  }
  const registers = t.entries.filter((s) => s.type === undefined);
  if (fields.size > 0) {
    // An empty object written here is not at odds with fields written into it.
    const live = registers.filter((s) => s.value !== null && !isEmptyObject(s.value));
    if (live.length > 0) conflicts.push({ path, siblings: live });
    return { type: 'object', fields };
  }
  if (registers.length > 0) {
    const lww = resolve.lww(path);
    let win = registers[0] as Sibling;
    for (const s of registers) if ((lww ? compareLww(s, win) : compareForWinner(s, win)) > 0) win = s;
    if (registers.length > 1 && !lww) {
      const merge = resolve.mergeAt(path);
      const live = registers.filter((s) => s.value !== null);
      const merged =
        merge === undefined || live.length === 0 ? undefined : merge(live.map((s) => parse(s.value as Uint8Array)));
      if (merged !== undefined) return { type: 'register', value: merged, winner: win, merged: true };
      const losers = distinctLosers(registers, win);
      if (losers.length > 0) conflicts.push({ path, siblings: losers });
    }
    if (win.value === null) return undefined;
    return { type: 'register', value: parse(win.value), winner: win, merged: false };
  }
  const counts = t.entries.filter((s) => s.type === 'count');
  if (counts.length > 0) {
    let value = 0;
    for (const s of counts) {
      const { p, n } = countOf(s);
      value += p - n;
    }
    return { type: 'counter', value };
  }
  const elements = t.entries.filter((s) => s.type === 'element');
  if (elements.length > 0) {
    const texts = new Map<string, Uint8Array>();
    for (const s of elements) texts.set(fromUtf8(s.value as Uint8Array), s.value as Uint8Array);
    const sorted = [...texts.values()].sort(compareBytes);
    return { type: 'set', elements: sorted.map(parse) };
  }
  return undefined;
}

/**
 * The register siblings other than the winner, each value once: leaders that wrote the same
 * value concurrently do not disagree. The first in dot order stands for its value.
 */
export function distinctLosers(registers: readonly Sibling[], win: Sibling): Sibling[] {
  const out: Sibling[] = [];
  for (const s of registers) {
    if (sameValue(s, win) || out.some((o) => sameValue(o, s))) continue;
    out.push(s);
  }
  return out;
}

/** The JSON text `{}` (values are stored as JSON.stringify writes them). */
function isEmptyObject(value: Uint8Array): boolean {
  return value.length === 2 && value[0] === 0x7b && value[1] === 0x7d;
}

export function sameValue(a: Sibling, b: Sibling): boolean {
  if (a.value === null || b.value === null) return a.value === b.value;
  return compareBytes(a.value, b.value) === 0;
}

export function toJson(node: Node): JsonValue {
  switch (node.type) {
    case 'object':
      // fromEntries defines own properties: a field named "__proto__" stays a field.
      return Object.fromEntries([...node.fields].map(([k, v]) => [k, toJson(v)])) as Record<string, JsonValue>;
    case 'register':
    case 'counter':
      return node.value;
    case 'set':
      return node.elements;
  }
}

/** The node at `path`, if the view has one. */
export function nodeAt(root: Node | undefined, path: string): Node | undefined {
  let n = root;
  for (const seg of segments(path)) {
    if (n === undefined || n.type !== 'object') return undefined;
    n = n.fields.get(unescapeKey(seg));
  }
  return n;
}

/**
 * True when some path shows a conflict (for counts and listings; merge-resolved paths
 * included). Several register values at a path whose `policy` is `lww` are not one.
 */
export function hasConflict(state: RecordState, policy: Policy | PolicyAt = Policy.keep): boolean {
  const lww = lwwAt(policy);
  const registers = new Map<string, Sibling>();
  const live = new Set<string>();
  const paths = new Set<string>();
  for (const s of state.siblings) {
    const p = pathOf(s);
    paths.add(p);
    if (s.type !== undefined) continue;
    const first = registers.get(p);
    if (first === undefined) registers.set(p, s);
    else if (!sameValue(first, s) && !lww(p)) return true;
    if (s.value !== null && !isEmptyObject(s.value)) live.add(p);
  }
  // A live register at a path another entry lies below: a value met an object concurrently.
  for (const p of live) {
    const prefix = p === ROOT ? '/' : `${p}/`;
    for (const q of paths) if (q.startsWith(prefix)) return true;
  }
  return false;
}
