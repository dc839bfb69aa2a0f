/**
 * What a document shows: the JSON view of its entries (src/core/record.ts), identical on
 * every replica that holds the same state.
 *
 * At each path the view is, in this order of precedence: an object when any entry lies
 * below the path; else the winning register value; else a counter (the sum of every
 * replica's increments less its decrements); else a set (its elements, sorted). Register
 * values that lose, including one written at a path another leader made an object of
 * concurrently, are the conflicts. Counter and set entries hidden by another type are kept,
 * not lost, and show again when what hides them is removed.
 */
import { compareBytes, compareForWinner, fromUtf8, pathOf } from '../core/index.js';
import type { JsonValue, RecordState, Sibling } from '../core/index.js';
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

/** Resolves a path's register siblings with a merge function, when its policy is 'merge'. */
export type MergeAt = (path: string) => ((values: JsonValue[]) => JsonValue) | undefined;

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

export function materialize(state: RecordState, mergeAt: MergeAt = () => undefined): DocumentView {
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
  const node = build(root, ROOT, mergeAt, conflicts);
  return { root: node, conflicts };
}

function build(t: Trie, path: string, mergeAt: MergeAt, conflicts: PathConflict[]): Node | undefined {
  const fields = new Map<string, Node>();
  for (const seg of [...t.children.keys()].sort()) {
    const n = build(t.children.get(seg) as Trie, `${path}/${seg}`, mergeAt, conflicts);
    if (n !== undefined) fields.set(unescapeKey(seg), n);
  }
  const registers = t.entries.filter((s) => s.type === undefined);
  if (fields.size > 0) {
    const live = registers.filter((s) => s.value !== null);
    if (live.length > 0) conflicts.push({ path, siblings: live });
    return { type: 'object', fields };
  }
  if (registers.length > 0) {
    let win = registers[0] as Sibling;
    for (const s of registers) if (compareForWinner(s, win) > 0) win = s;
    if (registers.length > 1) {
      const merge = mergeAt(path);
      const live = registers.filter((s) => s.value !== null);
      if (merge !== undefined && live.length > 0) {
        return {
          type: 'register',
          value: merge(live.map((s) => parse(s.value as Uint8Array))),
          winner: win,
          merged: true,
        };
      }
      conflicts.push({ path, siblings: registers.filter((s) => s !== win) });
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

export function toJson(node: Node): JsonValue {
  switch (node.type) {
    case 'object': {
      const o: Record<string, JsonValue> = {};
      for (const [k, v] of node.fields) o[k] = toJson(v);
      return o;
    }
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

/** True when some path shows a conflict (for counts and listings; merge-resolved paths included). */
export function hasConflict(state: RecordState): boolean {
  const registers = new Map<string, number>();
  const live = new Set<string>();
  const paths = new Set<string>();
  for (const s of state.siblings) {
    const p = pathOf(s);
    paths.add(p);
    if (s.type !== undefined) continue;
    const n = (registers.get(p) ?? 0) + 1;
    if (n > 1) return true;
    registers.set(p, n);
    if (s.value !== null) live.add(p);
  }
  // A live register at a path another entry lies below: a value met an object concurrently.
  for (const p of live) {
    const prefix = p === ROOT ? '/' : `${p}/`;
    for (const q of paths) if (q.startsWith(prefix)) return true;
  }
  return false;
}
