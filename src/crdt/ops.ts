/**
 * Operations on map, counter and set documents, and how each one changes the dot store.
 *
 * Every operation takes a fresh dot and removes the entries it supersedes: those this
 * replica holds at the path it names (an observed remove, as in an OR-set). Entries written
 * concurrently elsewhere are not seen, so they survive the join: concurrent edits to
 * different fields both stay, an add concurrent with a remove of the same element wins,
 * and increments from every leader add up. A remove makes no entry, but its dot enters the
 * document's context, so the change replicates like any other.
 */
import { compareDots, encodeJsonValue, utf8, vvWith } from '../core/index.js';
import type { Dot, Hlc, JsonValue, Limits, RecordState, Sibling } from '../core/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { canonicalJson, isPlainObject, jsonEquals } from './canonical-json.js';
import { ROOT, ancestors, atOrUnder, checkPointer, child } from './json-pointer.js';
import { FieldType, Kind } from './kinds.js';
import type { CollectionConfig } from './kinds.js';
import { countOf, materialize, nodeAt } from './view.js';
import type { DocumentView, Node } from './view.js';

/** One operation of `PATCH /db/:collection/:id`, as users write it. */
export type PatchOp =
  | { op: 'set'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'increment'; path: string; by: number }
  | { op: 'add-to-set'; path: string; value: unknown }
  | { op: 'remove-from-set'; path: string; value: unknown };

/** A validated operation: values are JSON text, set elements in canonical form. */
export type PreparedOp =
  | { op: 'set'; path: string; value: JsonValue }
  | { op: 'remove'; path: string }
  | { op: 'increment'; path: string; by: number }
  | { op: 'add-to-set' | 'remove-from-set'; path: string; element: Uint8Array };

const OPS = ['set', 'remove', 'increment', 'add-to-set', 'remove-from-set'];

function bad(message: string): DbError {
  return new DbError(ErrorCode.invalidInput, message);
}

/**
 * Validates a list of operations for a document of `kind`. Throws invalid_input naming the
 * first bad operation, before anything is written.
 */
export function preparePatch(ops: unknown, kind: Kind, limits: Limits): PreparedOp[] {
  if (!Array.isArray(ops) || ops.length === 0) throw bad('"ops" must be a non-empty array of operations');
  if (ops.length > limits.batchDocsMax) throw bad(`a patch holds at most ${limits.batchDocsMax} operations`);
  return ops.map((raw, i) => {
    const where = `ops[${i}]`;
    if (!isPlainObject(raw)) throw bad(`${where} must be an object like {"op": "set", "path": "/title", "value": 1}`);
    const op = raw.op;
    if (typeof op !== 'string' || !OPS.includes(op)) {
      throw bad(`${where}: op must be one of ${OPS.join(', ')}, not ${JSON.stringify(op)}`);
    }
    const allowed =
      op === 'remove' ? ['op', 'path'] : op === 'increment' ? ['op', 'path', 'by'] : ['op', 'path', 'value'];
    for (const k of Object.keys(raw)) if (!allowed.includes(k)) throw bad(`${where}: unexpected "${k}" in ${op}`);
    let path: string;
    try {
      path = checkPointer(raw.path, limits.valueDepthMax);
    } catch (e) {
      throw bad(`${where}: ${(e as Error).message}`);
    }
    checkKindAllows(kind, op, path, where);
    switch (op) {
      case 'set':
      case 'add-to-set':
      case 'remove-from-set': {
        if (!('value' in raw)) throw bad(`${where}: ${op} needs a "value"`);
        try {
          encodeJsonValue(raw.value, limits); // validates it and checks its size
        } catch (e) {
          throw new DbError((e as DbError).code ?? ErrorCode.invalidInput, `${where}: ${(e as Error).message}`);
        }
        if (op === 'set') return { op, path, value: raw.value as JsonValue };
        return { op, path, element: utf8(canonicalJson(raw.value as JsonValue)) };
      }
      case 'increment': {
        const by = raw.by;
        if (typeof by !== 'number' || !Number.isSafeInteger(by)) {
          throw bad(`${where}: increment needs "by", an integer (negative to decrement)`);
        }
        return { op, path, by };
      }
      default:
        return { op: 'remove', path };
    }
  });
}

function checkKindAllows(kind: Kind, op: string, path: string, where: string): void {
  if (kind === Kind.record) {
    throw bad(
      `${where}: documents of kind "record" are replaced whole with PUT; set the collection's kind to "map" to patch fields`,
    );
  }
  if (kind === Kind.counter && (op !== 'increment' || path !== ROOT)) {
    throw bad(`${where}: a counter document takes only {"op": "increment", "path": "", "by": N}`);
  }
  if (kind === Kind.set && ((op !== 'add-to-set' && op !== 'remove-from-set') || path !== ROOT)) {
    throw bad(`${where}: a set document takes only add-to-set and remove-from-set at path ""`);
  }
  if (kind === Kind.map && path === ROOT) {
    throw bad(`${where}: path "" is the whole map: replace it with PUT, remove it with DELETE`);
  }
}

/** Issues a fresh dot and timestamp for each entry or remove an operation makes. */
export type Mint = () => { dot: Dot; hlc: Hlc };

interface Work {
  entries: Sibling[];
  context: Map<string, number>;
  mint: Mint;
}

/** A new entry with a fresh dot, which the document's context now covers. */
function entry(w: Work, path: string, value: Uint8Array, type?: 'count' | 'element'): Sibling {
  const { dot, hlc } = w.mint();
  w.context = vvWith(w.context, dot);
  const s: { dot: Dot; hlc: Hlc; value: Uint8Array; path?: string; type?: 'count' | 'element' } = { dot, hlc, value };
  if (path !== ROOT) s.path = path;
  if (type !== undefined) s.type = type;
  return s;
}

/** A remove's dot: it makes no entry, but the context must move so the change replicates. */
function removal(w: Work): void {
  w.context = vvWith(w.context, w.mint().dot);
}

function describe(node: Node): string {
  return node.type === 'register' ? 'a value' : node.type === 'object' ? 'an object' : `a ${node.type}`;
}

/** Refuses an operation at `path` when a parent holds something other than an object. */
function checkParents(view: DocumentView, path: string): void {
  for (const a of ancestors(path)) {
    const n = nodeAt(view.root, a);
    if (n === undefined || n.type === 'object') continue;
    if (n.type === 'register' && isPlainObject(n.value) && Object.keys(n.value).length === 0) continue;
    throw bad(`${a} holds ${describe(n)}, not an object, so ${path} cannot be written`);
  }
}

function checkTarget(view: DocumentView, path: string, want: 'counter' | 'set'): void {
  const n = nodeAt(view.root, path);
  if (n !== undefined && n.type !== want) {
    const hint =
      path === ROOT
        ? ''
        : ` (remove it first, or declare it in the collection's settings: "fields": {"${path}": {"type": "${want}"}})`;
    throw bad(`${path === ROOT ? 'the document' : path} holds ${describe(n)}, not a ${want}${hint}`);
  }
}

/** Expands a value into entries: non-empty objects field by field, anything else as one register. */
function setValue(w: Work, path: string, value: JsonValue): void {
  if (isPlainObject(value) && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) setValue(w, child(path, k), v as JsonValue);
    return;
  }
  w.entries.push(entry(w, path, utf8(JSON.stringify(value))));
}

/**
 * Applies validated operations in order to `state`, as this replica sees it (`view` is its
 * materialized form). Returns the new state; throws invalid_input when an operation does not
 * fit what the document holds (an increment of a text field), leaving `state` untouched.
 */
export function applyPatch(
  state: RecordState,
  view: DocumentView,
  ops: readonly PreparedOp[],
  replica: string,
  mint: Mint,
): RecordState {
  const w: Work = { entries: [...state.siblings], context: new Map(state.context), mint };
  let current = view;
  // A whole-document object (written while the collection held records) becomes fields
  // first, so writing one field keeps the others.
  const root = view.root;
  if (
    root?.type === 'register' &&
    isPlainObject(root.value) &&
    Object.keys(root.value).length > 0 &&
    ops.some((op) => op.path !== ROOT)
  ) {
    w.entries = w.entries.filter((s) => !(s.type === undefined && (s.path ?? ROOT) === ROOT));
    setValue(w, ROOT, root.value);
    current = materialize({ siblings: w.entries, context: w.context });
  }
  for (const op of ops) {
    const { path } = op;
    if (op.op !== 'remove') checkParents(current, path);
    // Ancestors that held an empty object as a value become objects made of fields, and a
    // value of the whole document (written while the collection held records) gives way to
    // the fields written into it.
    const parents = new Set(ancestors(path));
    if (path !== ROOT) parents.add(ROOT);
    const dropParents = (s: Sibling): boolean => s.type === undefined && parents.has(s.path ?? ROOT);
    switch (op.op) {
      case 'set':
        w.entries = w.entries.filter((s) => !atOrUnder(s.path ?? ROOT, path) && !dropParents(s));
        setValue(w, path, op.value);
        break;
      case 'remove':
        w.entries = w.entries.filter((s) => !atOrUnder(s.path ?? ROOT, path));
        removal(w);
        break;
      case 'increment': {
        checkTarget(current, path, 'counter');
        // This replica's own total replaces its previous one; other replicas' totals stay,
        // and whatever else this path held (seen, and hidden by the counter) goes.
        let p = 0;
        let n = 0;
        w.entries = w.entries.filter((s) => {
          if ((s.path ?? ROOT) !== path) return !dropParents(s);
          if (s.type === 'count' && s.dot.replica === replica) {
            ({ p, n } = countOf(s));
            return false;
          }
          return s.type === 'count';
        });
        if (op.by >= 0) p += op.by;
        else n -= op.by;
        if (!Number.isSafeInteger(p) || !Number.isSafeInteger(n)) throw bad(`${path}: the counter would overflow`);
        w.entries.push(entry(w, path, utf8(`[${p},${n}]`), 'count'));
        break;
      }
      case 'add-to-set':
      case 'remove-from-set': {
        checkTarget(current, path, 'set');
        const same = (s: Sibling): boolean =>
          (s.path ?? ROOT) === path && s.type === 'element' && bytesSame(s.value as Uint8Array, op.element);
        w.entries = w.entries.filter(
          (s) => !same(s) && !dropParents(s) && !(s.type === undefined && (s.path ?? ROOT) === path),
        );
        if (op.op === 'add-to-set') w.entries.push(entry(w, path, op.element, 'element'));
        else removal(w);
        break;
      }
    }
    if (ops.length > 1) current = materialize({ siblings: w.entries, context: w.context });
  }
  w.entries.sort((x, y) => compareDots(x.dot, y.dot));
  return { siblings: w.entries, context: w.context };
}

function bytesSame(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The operations that turn a map's current view into `next`, for a whole-document write
 * (PUT): changed fields are set, missing ones removed, counters incremented by the
 * difference and sets given the adds and removes. Fields shown with a conflict are always
 * set, so writing back what was read resolves the conflict.
 */
export function diffToOps(view: DocumentView, next: unknown, config: CollectionConfig): PreparedOp[] {
  if (!isPlainObject(next)) throw bad('a map document is a JSON object');
  // An empty map is kept as the value {}, so that it exists; fields written later replace it.
  if (Object.keys(next).length === 0) return [{ op: 'set', path: ROOT, value: {} }];
  const conflicted = new Set(view.conflicts.map((c) => c.path));
  const typed = Object.entries(config.fields ?? {}).filter(
    ([, f]) => f.type !== undefined && f.type !== FieldType.register,
  );
  const typedBelow = (p: string): boolean => typed.some(([q]) => q.startsWith(`${p}/`));
  const ops: PreparedOp[] = [];
  const walk = (cur: Node | undefined, value: Record<string, unknown>, path: string): void => {
    const fields = cur?.type === 'object' ? cur.fields : new Map<string, Node>();
    for (const [k, v] of Object.entries(value)) {
      const p = child(path, k);
      const c = fields.get(k);
      const type =
        config.fields?.[p]?.type ??
        (c?.type === 'counter' ? FieldType.counter : c?.type === 'set' ? FieldType.set : undefined);
      if (type === FieldType.counter) {
        if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw bad(`${p} is a counter: give it an integer`);
        const was = c?.type === 'counter' ? c.value : 0;
        if (c !== undefined && c.type !== 'counter') ops.push({ op: 'remove', path: p });
        if (v !== was || c?.type !== 'counter') ops.push({ op: 'increment', path: p, by: v - was });
        continue;
      }
      if (type === FieldType.set) {
        if (!Array.isArray(v)) throw bad(`${p} is a set: give it an array`);
        const had = new Map<string, boolean>();
        if (c?.type === 'set') for (const e of c.elements) had.set(canonicalJson(e), true);
        else if (c !== undefined) ops.push({ op: 'remove', path: p });
        const want = new Set((v as JsonValue[]).map(canonicalJson));
        for (const e of want) if (!had.has(e)) ops.push({ op: 'add-to-set', path: p, element: utf8(e) });
        for (const e of had.keys()) if (!want.has(e)) ops.push({ op: 'remove-from-set', path: p, element: utf8(e) });
        continue;
      }
      if (isPlainObject(v) && Object.keys(v).length > 0 && (c === undefined || c.type === 'object')) {
        // A new object is set whole, unless the settings give a field inside it a type.
        if (c === undefined && !typedBelow(p)) ops.push({ op: 'set', path: p, value: v as JsonValue });
        else walk(c, v, p);
        if (conflicted.has(p) && c !== undefined) ops.push({ op: 'set', path: p, value: v as JsonValue });
        continue;
      }
      if (c?.type === 'register' && !conflicted.has(p) && jsonEquals(c.value, v as JsonValue)) continue;
      ops.push({ op: 'set', path: p, value: v as JsonValue });
    }
    for (const k of fields.keys()) if (!Object.hasOwn(value, k)) ops.push({ op: 'remove', path: child(path, k) });
  };
  walk(view.root, next, ROOT);
  return ops;
}
