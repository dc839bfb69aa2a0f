/**
 * The checker's own model of map, counter and set documents (src/crdt, written again from
 * its documentation, not imported): what a dot store shows, and what each operation of a
 * client write must have done to the writer's state. The checker compares the replicas
 * against this model, so a bug in the product's view or operations shows as a difference.
 *
 *   view       at each path: an object when any entry lies below it; else the winning
 *              register value (merged when the path's policy is 'merge'; the latest, with
 *              no conflict, when it is 'lww': joins of maps keep them all); else a counter
 *              (the sum of every replica's increments less its decrements); else a set (its
 *              elements, sorted by their canonical JSON bytes). Losing register values
 *              (each value once), and live values other than `{}` at a path that is an
 *              object, are the conflicts; a document counts as in conflict when it shows one.
 *   operations set replaces everything at and under its path (and an empty-object value at
 *              a parent); remove drops everything at and under it; increment replaces the
 *              writer's own total; add-to-set and remove-from-set drop the element's entries
 *              (add makes a new one). Nothing else the writer held may go.
 */
import {
  compareBytes,
  compareForWinner,
  compareHlc,
  compareLww,
  contextToken,
  dotToString,
  fromUtf8,
  isRootRegister,
  isTextState,
  latestHlc,
  textEntryInfo,
  utf8,
  vvCovers,
} from '../core/index.js';
import type { Dot, JsonValue, Policy, PolicyAt, RecordState, Sibling } from '../core/index.js';

export type CollectionKind = 'record' | 'map' | 'counter' | 'set';
export type MergeFn = (values: JsonValue[]) => JsonValue;

/** How the registers at a path of a document resolve. */
export interface Resolver {
  /** The merge function of the register at `path`, when its policy is 'merge'. */
  mergeAt(path: string): MergeFn | undefined;
  /** Whether the registers at `path` (of a map, counter or set document) resolve last-writer-wins. */
  lwwAt(path: string): boolean;
}

/** Registers kept as conflicts, resolved by no function. */
export const KEEP: Resolver = { mergeAt: () => undefined, lwwAt: () => false };

/** What the checker knows of a collection: its kind, its join policy and its merge functions. */
export interface CollectionModel extends Resolver {
  readonly kind: CollectionKind;
  /** The policy joins use (per path for a map whose fields differ). */
  readonly policyAt: Policy | PolicyAt;
  /** Paths that hold counters ('' for a counter document) and sets ('' for a set document). */
  readonly counterFields: readonly string[];
  readonly setFields: readonly string[];
}

/** One operation of a patch, as the workload wrote it (src/crdt PatchOp). */
export type ModelOp =
  | { readonly op: 'set'; readonly path: string; readonly value: JsonValue }
  | { readonly op: 'remove'; readonly path: string }
  | { readonly op: 'increment'; readonly path: string; readonly by: number }
  | { readonly op: 'add-to-set' | 'remove-from-set'; readonly path: string; readonly value: JsonValue };

export type KindAction =
  | { readonly type: 'patch'; readonly ops: readonly ModelOp[] }
  | { readonly type: 'put'; readonly value: JsonValue }
  | { readonly type: 'delete' };

const parse = (bytes: Uint8Array): JsonValue => JSON.parse(fromUtf8(bytes)) as JsonValue;

export const pathOfEntry = (s: Sibling): string => s.path ?? '';

const valueKey = (s: Sibling): string => (s.value === null ? '' : `=${fromUtf8(s.value)}`);

function sameValue(a: Sibling, b: Sibling): boolean {
  return valueKey(a) === valueKey(b);
}

/** JSON text with object keys sorted and no whitespace: one spelling per value. */
export function canonicalText(value: JsonValue): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalText).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalText(value[k] as JsonValue)}`).join(',')}}`;
}

function segmentsOf(path: string): string[] {
  return path === '' ? [] : path.slice(1).split('/');
}

const unescapeSegment = (seg: string): string => seg.replace(/~1/g, '/').replace(/~0/g, '~');

/** True when `path` is `base` or lies below it. */
export function atOrBelow(path: string, base: string): boolean {
  return base === '' || path === base || path.startsWith(`${base}/`);
}

/** True when `a` is a strict ancestor of `path`. */
export function strictlyAbove(a: string, path: string): boolean {
  return a !== path && atOrBelow(path, a);
}

export function countTotals(s: Sibling): { p: number; n: number } {
  const [p, n] = parse(s.value as Uint8Array) as [number, number];
  return { p, n };
}

/** The JSON a document shows, and how many register values it lists as conflicts. */
export interface ModelView {
  readonly value: JsonValue;
  readonly conflicts: number;
  readonly origin: string;
  readonly version: string;
}

interface Trie {
  entries: Sibling[];
  children: Map<string, Trie>;
}

/** The view a read must return for a committed state (replica.ts `view` and `documentView`). */
export function modelView(
  collection: string,
  id: string,
  state: RecordState | undefined,
  resolve: Resolver,
): ModelView | null {
  if (state === undefined) return null;
  const shown = resolveState(state, resolve);
  if (shown.value === undefined) return null;
  const version = contextToken(collection, id, state.context, latestHlc(state));
  return { value: shown.value, conflicts: shown.conflicts, origin: shown.origin, version };
}

/**
 * How many register values a document lists as conflicts, which is what makes it count as
 * one (status, change events, onConflict): none where 'lww' or a merge function resolves
 * them, one per distinct losing value otherwise.
 */
export function conflictCount(state: RecordState, resolve: Resolver): number {
  if (state.siblings.length <= 1 || isTextState(state)) return 0;
  // A record under 'lww' keeps one sibling; it never counts as a conflict.
  if (state.siblings.every(isRootRegister) && resolve.lwwAt('')) return 0;
  return resolveState(state, resolve).conflicts;
}

/** The value (undefined: the document reads as absent), its conflicts and its origin. */
function resolveState(
  state: RecordState,
  resolve: Resolver,
): { value: JsonValue | undefined; conflicts: number; origin: string } {
  if (state.siblings.every(isRootRegister)) {
    let win: Sibling | undefined;
    for (const s of state.siblings) if (win === undefined || compareForWinner(s, win) > 0) win = s;
    if (win === undefined) return { value: undefined, conflicts: 0, origin: '' };
    const losers = distinctLosers(state.siblings, win);
    const merge = losers > 0 ? resolve.mergeAt('') : undefined;
    const live = state.siblings.filter((s) => s.value !== null).map((s) => parse(s.value as Uint8Array));
    const merged = merge === undefined || live.length === 0 ? undefined : merge(live);
    const origin = win.dot.replica;
    if (win.value === null) return { value: undefined, conflicts: losers, origin };
    if (merged !== undefined) return { value: merged, conflicts: 0, origin };
    return { value: parse(win.value), conflicts: losers, origin };
  }
  const root: Trie = { entries: [], children: new Map() };
  for (const s of state.siblings) {
    let t = root;
    for (const seg of segmentsOf(pathOfEntry(s))) {
      let c = t.children.get(seg);
      if (c === undefined) t.children.set(seg, (c = { entries: [], children: new Map() }));
      t = c;
    }
    t.entries.push(s);
  }
  const out = { conflicts: 0 };
  const value = nodeValue(root, '', resolve, out);
  let latest: Sibling | undefined;
  for (const s of state.siblings) if (latest === undefined || compareHlc(s.hlc, latest.hlc) > 0) latest = s;
  return { value, conflicts: out.conflicts, origin: latest?.dot.replica ?? '' };
}

/** Losing values, each once: leaders that wrote the same value (or deleted) concurrently do not disagree. */
function distinctLosers(registers: readonly Sibling[], win: Sibling): number {
  const losers = new Set<string>();
  for (const s of registers) if (!sameValue(s, win)) losers.add(valueKey(s));
  return losers.size;
}

/** The value `{}`: written at a path, it is not at odds with fields written into it. */
const isEmptyObject = (s: Sibling): boolean => s.value !== null && fromUtf8(s.value) === '{}';

function nodeValue(t: Trie, path: string, resolve: Resolver, out: { conflicts: number }): JsonValue | undefined {
  const fields: Record<string, JsonValue> = {};
  let any = false;
  for (const seg of [...t.children.keys()].sort()) {
    const v = nodeValue(t.children.get(seg) as Trie, `${path}/${seg}`, resolve, out);
    if (v === undefined) continue;
    fields[unescapeSegment(seg)] = v;
    any = true;
  }
  const registers = t.entries.filter((s) => s.type === undefined);
  if (any) {
    out.conflicts += registers.filter((s) => s.value !== null && !isEmptyObject(s)).length;
    return fields;
  }
  if (registers.length > 0) {
    const lww = resolve.lwwAt(path);
    let win = registers[0] as Sibling;
    for (const s of registers) if ((lww ? compareLww(s, win) : compareForWinner(s, win)) > 0) win = s;
    if (registers.length > 1 && !lww) {
      const merge = resolve.mergeAt(path);
      const live = registers.filter((s) => s.value !== null);
      const merged =
        merge === undefined || live.length === 0 ? undefined : merge(live.map((s) => parse(s.value as Uint8Array)));
      if (merged !== undefined) return merged;
      out.conflicts += distinctLosers(registers, win);
    }
    return win.value === null ? undefined : parse(win.value);
  }
  const counts = t.entries.filter((s) => s.type === 'count');
  if (counts.length > 0) {
    let sum = 0;
    for (const s of counts) {
      const { p, n } = countTotals(s);
      sum += p - n;
    }
    return sum;
  }
  const elements = t.entries.filter((s) => s.type === 'element');
  if (elements.length > 0) {
    const texts = new Map<string, Uint8Array>();
    for (const s of elements) texts.set(fromUtf8(s.value as Uint8Array), s.value as Uint8Array);
    return [...texts.values()].sort(compareBytes).map(parse);
  }
  return undefined;
}

/**
 * The replica that writes a merge resolution back: the least replica id among the origins
 * of the live siblings (replica.ts `resolverOf`), so that resolutions of one conflict replace
 * each other rather than meet as a new one.
 */
export function resolverOf(siblings: readonly Sibling[]): string | undefined {
  let least: string | undefined;
  for (const s of siblings)
    if (s.value !== null && (least === undefined || s.dot.replica < least)) least = s.dot.replica;
  return least;
}

/** The value at `path` of a view (undefined when absent). */
export function valueAt(view: JsonValue | undefined, path: string): JsonValue | undefined {
  let v = view;
  for (const seg of segmentsOf(path)) {
    if (v === undefined || v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    v = v[unescapeSegment(seg)];
  }
  return v;
}

/** What a whole-document write (PUT) of `value` to a map shows: set fields sorted and without duplicates, empty ones gone. */
export function normalizedPut(value: JsonValue, setFields: readonly string[], path = ''): JsonValue {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const out: Record<string, JsonValue> = {};
  for (const [k, v] of Object.entries(value)) {
    const p = `${path}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`;
    if (setFields.includes(p) && Array.isArray(v)) {
      if (v.length === 0) continue;
      const texts = new Map<string, Uint8Array>();
      for (const e of v) texts.set(canonicalText(e), utf8(canonicalText(e)));
      out[k] = [...texts.values()].sort(compareBytes).map(parse);
      continue;
    }
    out[k] = normalizedPut(v, setFields, p);
  }
  return out;
}

const dotKey = (d: Dot): string => `${d.replica}:${d.counter}`;

/** How an entry reads in a report: `r1:7 /title="x"`, `r1:8 /visits#[3,0]`, `r1:9 +"a"`. */
export function describeEntry(s: Sibling): string {
  if (s.type === 'text' || s.type === 'text-snapshot') {
    const info = textEntryInfo(s);
    return info.kind === 'delta'
      ? `${dotToString(s.dot)} text ops [${info.start},${info.end})`
      : `${dotToString(s.dot)} text snapshot ${[...info.version].map(([r, n]) => `${r}:${n}`).join(',')}`;
  }
  const path = s.path === undefined || s.path === '' ? '' : ` ${s.path}`;
  const value = s.value === null ? 'del' : fromUtf8(s.value);
  const mark = s.type === 'count' ? '#' : s.type === 'element' ? ' +' : '=';
  return `${dotToString(s.dot)}${path}${mark}${value}`;
}

/** Whether an operation may drop `s` from the state of the replica `me` that applied it. */
function mayRemove(op: ModelOp, s: Sibling, me: string): boolean {
  const p = pathOfEntry(s);
  // Any operation below a path that held an empty-object value turns it into an object.
  if (s.type === undefined && op.op !== 'remove' && strictlyAbove(p, op.path)) return true;
  switch (op.op) {
    case 'set':
    case 'remove':
      return atOrBelow(p, op.path);
    case 'increment':
      return p === op.path && (s.type !== 'count' || s.dot.replica === me);
    case 'add-to-set':
    case 'remove-from-set':
      return (
        p === op.path &&
        (s.type === undefined || (s.type === 'element' && fromUtf8(s.value as Uint8Array) === canonicalText(op.value)))
      );
  }
}

/**
 * What is wrong with an acknowledged write's commit at its writer `me`, by the model (or
 * undefined): its context covers what it saw and what it minted; it holds no entry it did not
 * make; every operation did what it says; it dropped nothing its operations do not name.
 */
export function localEffectProblem(
  action: KindAction,
  prev: RecordState,
  state: RecordState,
  minted: Dot,
  me: string,
  setFields: readonly string[],
  resolve: Resolver,
): string | undefined {
  for (const [r, n] of prev.context) {
    if ((state.context.get(r) ?? 0) < n) return `its context lost ${r}:${n}`;
  }
  if (!vvCovers(state.context, minted) || vvCovers(prev.context, minted)) return 'it minted no dot';
  const before = new Set(prev.siblings.map((s) => dotKey(s.dot)));
  const after = new Set(state.siblings.map((s) => dotKey(s.dot)));
  const added = state.siblings.filter((s) => !before.has(dotKey(s.dot)));
  const removed = prev.siblings.filter((s) => !after.has(dotKey(s.dot)));
  for (const s of added) {
    if (s.dot.replica !== me || vvCovers(prev.context, s.dot)) return `it holds ${describeEntry(s)}, not its own`;
  }
  const isNew = (s: Sibling): boolean => !before.has(dotKey(s.dot));
  if (action.type === 'delete') {
    return state.siblings.length === 0 ? undefined : `a delete left ${state.siblings.map(describeEntry).join(' ')}`;
  }
  if (action.type === 'put') {
    const shown = modelView('', '', state, resolve)?.value ?? {};
    const want = normalizedPut(action.value, setFields);
    return canonicalText(shown) === canonicalText(want)
      ? undefined
      : `after a put of ${canonicalText(want)} the writer shows ${canonicalText(shown)}`;
  }
  for (const op of action.ops) {
    const at = state.siblings.filter((s) => pathOfEntry(s) === op.path);
    switch (op.op) {
      case 'set': {
        const under = state.siblings.filter((s) => atOrBelow(pathOfEntry(s), op.path));
        const stale = under.filter((s) => !isNew(s));
        if (stale.length > 0) return `set ${op.path} kept ${stale.map(describeEntry).join(' ')}`;
        const view = modelView('', '', { siblings: under, context: state.context }, resolve);
        const shown = valueAt(view?.value, op.path);
        if (shown === undefined || canonicalText(shown) !== canonicalText(op.value)) {
          return `set ${op.path} to ${canonicalText(op.value)} shows ${shown === undefined ? 'nothing' : canonicalText(shown)}`;
        }
        break;
      }
      case 'remove': {
        const left = state.siblings.filter((s) => atOrBelow(pathOfEntry(s), op.path));
        if (left.length > 0) return `remove ${op.path} left ${left.map(describeEntry).join(' ')}`;
        break;
      }
      case 'increment': {
        const own = (s: Sibling): boolean => s.type === 'count' && s.dot.replica === me && pathOfEntry(s) === op.path;
        const was = prev.siblings.find(own);
        const now = at.filter(own);
        const w = was === undefined ? { p: 0, n: 0 } : countTotals(was);
        const want = { p: w.p + Math.max(op.by, 0), n: w.n + Math.max(-op.by, 0) };
        const got = now.length === 1 ? countTotals(now[0] as Sibling) : undefined;
        if (got === undefined || !isNew(now[0] as Sibling) || got.p !== want.p || got.n !== want.n) {
          return (
            `increment ${op.path || "''"} by ${op.by} from [${w.p},${w.n}] left ` +
            `${now.map(describeEntry).join(' ') || 'no own total'}, not a new [${want.p},${want.n}]`
          );
        }
        break;
      }
      case 'add-to-set':
      case 'remove-from-set': {
        const text = canonicalText(op.value);
        const mine = at.filter((s) => s.type === 'element' && fromUtf8(s.value as Uint8Array) === text);
        const ok = op.op === 'add-to-set' ? mine.length === 1 && isNew(mine[0] as Sibling) : mine.length === 0;
        if (!ok) {
          return `${op.op} ${op.path || "''"} ${text} left ${mine.map(describeEntry).join(' ') || 'no entry'}`;
        }
        break;
      }
    }
  }
  for (const s of removed) {
    if (!action.ops.some((op) => mayRemove(op, s, me))) {
      return `it dropped ${describeEntry(s)}, which none of its operations names`;
    }
  }
  return undefined;
}
