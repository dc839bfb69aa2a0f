/**
 * Unique fields and references between documents: the integrity constraints a single-leader
 * database enforces at write time, and a multi-leader one can only enforce in part.
 *
 * A leader refuses a local write (409 constraint_violation) that would, judged on the state
 * after its whole batch: give a document a unique value another live document shows; point
 * a reference at a document that is absent or deleted here; or delete a document that live
 * documents reference (RESTRICT). Two leaders cut off from each other can still each accept
 * one half of a violation (two users given one email, a task pointed at a user deleted
 * elsewhere): both writes were acknowledged, so nothing may be refused when they meet.
 * Those are detected instead, deterministically from the replicated state, so every leader
 * holding the same writes flags the same documents: among live documents sharing a unique
 * value the least id (string order) keeps it and every other is flagged; a reference to a
 * document absent or deleted here is flagged. A flag lasts until the application changes or
 * deletes the document, or recreates the target.
 *
 * The judged value is the document's value as its view shows it (a record's winner, a map's
 * materialized value), so every replica holding the same state judges alike.
 *
 * Memory: the indexes live in memory, built by one scan of the constrained collections on
 * first need (and again after their settings change or a commit aborts after building).
 * They hold, per live document of a constrained collection that has a constrained value:
 * one small entry plus its id in one set per field that has a value (unique values by
 * canonical JSON text, references by target id); and the id of every live document of a
 * collection that some collection references. About 100-200 bytes per such document
 * (100k users with a unique email, referenced by tasks: some 20-30 MB). Collections without
 * constraints cost one Map lookup per document a commit records.
 */
import type { JsonValue, RecordState } from '../core/index.js';
import { canonicalJson, constraintPointer, fieldAt } from '../crdt/index.js';
import type { CollectionConfig } from '../crdt/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import type { ReadTx } from '../storage/index.js';
import { CONFIG_COLLECTION } from './collection-config.js';
import type { CommitHook, RecordedChange } from './commit-hooks.js';
import { unwrapStored } from './stored-doc.js';

/** Why a document is flagged, as `conflicts()` and a document's view list it. */
export type ConstraintViolation =
  | {
      kind: 'unique';
      field: string;
      /** The value the document shares with `winner`. */
      value: JsonValue;
      /** The document that keeps the value: the least id (string order) among those sharing it. */
      winner: string;
    }
  | {
      kind: 'reference';
      field: string;
      /** The document named, absent or deleted here. */
      target: { collection: string; id: string };
    };

/** What the constraints need of the replica. */
export interface ConstraintHost {
  /** The collections whose settings in use declare unique fields or references. */
  constrained(): string[];
  config(collection: string): CollectionConfig;
  /** The document's value as its view shows it; undefined when absent or deleted. */
  valueOf(collection: string, id: string, state: RecordState): { value: JsonValue } | undefined;
  /** One read transaction of committed state (runs one at a time with the commits). */
  read<T>(fn: (tx: ReadTx) => Promise<T>): Promise<T>;
  /** Runs `job` after the current commits (a rebuild after the settings changed). */
  schedule(job: () => Promise<void>): void;
}

interface UniqueIndex {
  readonly field: string;
  readonly pointer: string;
  /** Canonical JSON of a value -> the live documents showing it. */
  readonly byValue: Map<string, Set<string>>;
  /** The values more than one live document shows. */
  readonly dup: Set<string>;
}

interface RefIndex {
  readonly collection: string;
  readonly field: string;
  readonly pointer: string;
  readonly target: string;
  /** Target id -> the live documents naming it. */
  readonly byTarget: Map<string, Set<string>>;
  /** The target ids named here that are not live. */
  readonly dangling: Set<string>;
}

/** A live document's constrained values, by the position of its collection's indexes. */
interface Entry {
  readonly keys: readonly (string | undefined)[];
  readonly refs: readonly (string | undefined)[];
}

interface CollectionIndex {
  readonly name: string;
  readonly unique: UniqueIndex[];
  readonly refs: RefIndex[];
  /** Live documents with at least one constrained value. */
  readonly entries: Map<string, Entry>;
  /** Every live document's id, when some collection references this one. */
  live: Set<string> | undefined;
  /** The reference indexes (of any collection) naming this one. */
  readonly referrers: RefIndex[];
}

/** What a change replaced, to put it back when the commit aborts. */
interface Undo {
  readonly ix: CollectionIndex;
  readonly id: string;
  readonly entry: Entry | undefined;
  readonly live: boolean;
  readonly change: RecordedChange;
}

/**
 * A reference that is not a string names no document: kept under a key no id can equal
 * (ids never hold U+0000), so it is always dangling.
 */
const NOT_AN_ID = '\u0000';

const SCAN_PAGE = 500;

/** A document whose constraint violations changed with a commit (`violations` empty: it was fixed). */
export interface ViolationEvent {
  collection: string;
  id: string;
  /** The feed position of the commit that changed them. */
  seq: number;
  /** Why the document is flagged now, as `violationsOf` and `conflicts()` show it. */
  violations: ConstraintViolation[];
}

export class Constraints implements CommitHook {
  private readonly listeners = new Set<(e: ViolationEvent) => void>();
  /** What the commit in progress changed of documents' violations, told once it commits. */
  private events: ViolationEvent[] = [];

  /** By collection; undefined until built (lazily, on first need). */
  private indexes: Map<string, CollectionIndex> | undefined;
  /** What the commit in progress changed, until it commits or aborts. */
  private undo: Undo[] | undefined;
  /** Whether the commit in progress built the indexes (from its own uncommitted writes too). */
  private builtInTx = false;

  constructor(private readonly host: ConstraintHost) {}

  // ---------------------------------------------------------------- commit hook

  async beforeCommit(tx: ReadTx, changes: readonly RecordedChange[]): Promise<void> {
    if (this.indexes === undefined) {
      await this.build(tx);
      this.builtInTx = true;
    }
    const indexes = this.indexes as Map<string, CollectionIndex>;
    if (indexes.size === 0) return;
    // Kept before any change, so that whatever throws below, aborted() puts everything back.
    const undo: Undo[] = [];
    this.undo = undo;
    this.events = [];
    const updates: { ix: CollectionIndex; change: RecordedChange; entry: Entry | undefined; live: boolean }[] = [];
    for (const change of changes) {
      const ix = indexes.get(change.collection);
      if (ix === undefined) continue;
      const shown = this.host.valueOf(change.collection, change.id, change.after);
      updates.push({
        ix,
        change,
        entry: shown === undefined ? undefined : entryOf(ix, shown.value),
        live: shown !== undefined,
      });
    }
    if (updates.length === 0) return;
    // Only while someone listens: the documents whose violations the commit may change.
    const watched = this.listeners.size > 0 ? affected(updates) : undefined;
    const before = watched === undefined ? undefined : this.flagsOf(watched);
    for (const u of updates) {
      undo.push({
        ix: u.ix,
        id: u.change.id,
        entry: u.ix.entries.get(u.change.id),
        live: isLive(u.ix, u.change.id),
        change: u.change,
      });
      setDoc(indexes, u.ix, u.change.id, u.entry, u.live);
    }
    for (const u of undo) if (u.change.origin === 'local') this.check(u);
    if (watched !== undefined && before !== undefined) {
      const seq = changes[0]?.seq ?? 0;
      const after = this.flagsOf(watched);
      for (const [key, now] of after) {
        if (now.text === before.get(key)?.text) continue;
        const [collection, id] = watched.get(key) as [string, string];
        this.events.push({ collection, id, seq, violations: now.violations });
      }
    }
  }

  /**
   * Calls `listener` after each commit that flags a document or clears its flags, local or
   * remote, including a document flagged by another one's change (a local user flagged when a
   * user with the same email and a lesser id, which keeps it, arrives from another leader).
   * Returns an unsubscribe function.
   */
  onViolation(listener: (e: ViolationEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private flagsOf(
    docs: ReadonlyMap<string, [string, string]>,
  ): Map<string, { text: string; violations: ConstraintViolation[] }> {
    const out = new Map<string, { text: string; violations: ConstraintViolation[] }>();
    for (const [key, [collection, id]] of docs) {
      const violations = this.violationsOf(collection, id);
      out.set(key, { text: JSON.stringify(violations), violations });
    }
    return out;
  }

  committed(changes: readonly RecordedChange[]): void {
    this.undo = undefined;
    this.builtInTx = false;
    const events = this.events;
    this.events = [];
    for (const e of events) for (const l of [...this.listeners]) l(e);
    // Settings are applied right after the hooks hear of the commit: rebuild under them.
    if (this.indexes !== undefined && changes.some((c) => c.collection === CONFIG_COLLECTION)) this.invalidate();
  }

  aborted(): void {
    const undo = this.undo;
    this.undo = undefined;
    this.events = [];
    if (this.builtInTx) {
      this.builtInTx = false;
      this.invalidate();
      return;
    }
    if (undo === undefined || this.indexes === undefined) return;
    for (let i = undo.length - 1; i >= 0; i--) {
      const u = undo[i] as Undo;
      setDoc(this.indexes, u.ix, u.id, u.entry, u.live);
    }
  }

  // ---------------------------------------------------------------- reads

  /** Builds the indexes unless they are: then `count` and `violationsOf` are exact. */
  async ensureBuilt(): Promise<void> {
    if (this.indexes !== undefined) return;
    await this.host.read((tx) => this.ensureBuiltIn(tx));
  }

  /** Like ensureBuilt, inside a read the caller holds (so that its read starts at once). */
  async ensureBuiltIn(tx: ReadTx): Promise<void> {
    if (this.indexes === undefined) await this.build(tx);
  }

  /** Whether `collection` takes part in a constraint (declares one, or is referenced). */
  involves(collection: string): boolean {
    if (this.indexes !== undefined) return this.indexes.has(collection);
    return this.host.constrained().length > 0;
  }

  /** How many constraint entries `conflicts()` lists (0 until the indexes are built). */
  count(): number {
    let n = 0;
    for (const ix of this.indexes?.values() ?? []) {
      for (const u of ix.unique) for (const k of u.dup) n += (u.byValue.get(k)?.size ?? 1) - 1;
      for (const r of ix.refs) for (const x of r.dangling) n += r.byTarget.get(x)?.size ?? 0;
    }
    return n;
  }

  /** Why `collection/id` is flagged, in the order of its settings' fields (unique, then references). */
  violationsOf(collection: string, id: string): ConstraintViolation[] {
    const ix = this.indexes?.get(collection);
    const entry = ix?.entries.get(id);
    if (ix === undefined || entry === undefined) return [];
    const out: ConstraintViolation[] = [];
    ix.unique.forEach((u, i) => {
      const k = entry.keys[i];
      if (k === undefined || !u.dup.has(k)) return;
      const winner = least(u.byValue.get(k) as Set<string>);
      if (winner !== id) out.push({ kind: 'unique', field: u.field, value: JSON.parse(k) as JsonValue, winner });
    });
    ix.refs.forEach((r, i) => {
      const x = entry.refs[i];
      if (x !== undefined && r.dangling.has(x)) {
        out.push({ kind: 'reference', field: r.field, target: { collection: r.target, id: shownId(x) } });
      }
    });
    return out;
  }

  // ---------------------------------------------------------------- internals

  private invalidate(): void {
    this.indexes = undefined;
    this.host.schedule(() => this.ensureBuilt());
  }

  /** One scan of every collection that declares a constraint or is referenced by one. */
  private async build(tx: ReadTx): Promise<void> {
    const indexes = new Map<string, CollectionIndex>();
    const indexOf = (name: string): CollectionIndex => {
      let ix = indexes.get(name);
      if (ix === undefined) {
        ix = { name, unique: [], refs: [], entries: new Map(), live: undefined, referrers: [] };
        indexes.set(name, ix);
      }
      return ix;
    };
    for (const name of this.host.constrained()) {
      const config = this.host.config(name);
      const ix = indexOf(name);
      for (const field of config.unique ?? []) {
        ix.unique.push({ field, pointer: constraintPointer(field), byValue: new Map(), dup: new Set() });
      }
      for (const [field, target] of Object.entries(config.references ?? {})) {
        const r: RefIndex = {
          collection: name,
          field,
          pointer: constraintPointer(field),
          target,
          byTarget: new Map(),
          dangling: new Set(),
        };
        ix.refs.push(r);
        const t = indexOf(target);
        t.live ??= new Set();
        t.referrers.push(r);
      }
    }
    for (const ix of indexes.values()) {
      let after: string | undefined;
      for (;;) {
        const rows = await tx.listDocs(ix.name, after, SCAN_PAGE);
        for (const row of rows) {
          const shown = this.host.valueOf(ix.name, row.id, unwrapStored(row.state).state);
          if (shown !== undefined) setDoc(indexes, ix, row.id, entryOf(ix, shown.value), true);
        }
        if (rows.length < SCAN_PAGE) break;
        after = rows[rows.length - 1]?.id;
      }
    }
    this.indexes = indexes;
  }

  /** Throws constraint_violation when a local change breaks a constraint it touched. */
  private check(u: Undo): void {
    const { ix, id } = u;
    const collection = ix.name;
    const entry = ix.entries.get(id);
    // What the document showed before, from its state (the index may have been built from
    // this very transaction's writes): only what the write changes is judged.
    const before = u.change.before === undefined ? undefined : this.host.valueOf(collection, id, u.change.before);
    const prev = before === undefined ? undefined : entryOf(ix, before.value);
    ix.unique.forEach((un, i) => {
      const k = entry?.keys[i];
      if (k === undefined || k === prev?.keys[i]) return;
      const holders = un.byValue.get(k) as Set<string>;
      if (holders.size < 2) return;
      const other = least([...holders].filter((h) => h !== id));
      const value = JSON.parse(k) as JsonValue;
      throw violation(`${collection}/${id}: ${un.field} ${k} is already used by ${collection}/${other}`, {
        kind: 'unique',
        collection,
        id,
        field: un.field,
        value,
        other: { collection, id: other },
      });
    });
    ix.refs.forEach((r, i) => {
      const x = entry?.refs[i];
      if (x === undefined || x === prev?.refs[i] || !r.dangling.has(x)) return;
      const details = { kind: 'reference', collection, id, field: r.field, value: refValue(x) };
      if (x.startsWith(NOT_AN_ID)) {
        throw violation(`${collection}/${id}: ${r.field} must hold the id (a string) of a document of ${r.target}`, {
          ...details,
          other: { collection: r.target },
        });
      }
      throw violation(`${collection}/${id}: ${r.field} names ${r.target}/${x}, which does not exist here`, {
        ...details,
        other: { collection: r.target, id: x },
      });
    });
    if (before === undefined || isLive(ix, id)) return;
    for (const r of ix.referrers) {
      const by = r.byTarget.get(id);
      if (by === undefined || by.size === 0) continue;
      const other = least(by);
      throw violation(
        `${collection}/${id} is referenced by ${r.collection}/${other} (field ${r.field}): change or delete that document first`,
        {
          kind: 'reference',
          collection,
          id,
          field: r.field,
          value: id,
          other: { collection: r.collection, id: other },
        },
      );
    }
  }
}

function violation(message: string, details: Record<string, unknown>): DbError {
  return new DbError(ErrorCode.constraint, message, { details });
}

function isLive(ix: CollectionIndex, id: string): boolean {
  return ix.live?.has(id) ?? ix.entries.has(id);
}

function least(ids: Iterable<string>): string {
  let min: string | undefined;
  for (const id of ids) if (min === undefined || id < min) min = id;
  return min as string;
}

function shownId(x: string): string {
  return x.startsWith(NOT_AN_ID) ? x.slice(NOT_AN_ID.length) : x;
}

function refValue(x: string): JsonValue {
  return x.startsWith(NOT_AN_ID) ? (JSON.parse(x.slice(NOT_AN_ID.length)) as JsonValue) : x;
}

/** The document's constrained values; undefined when it has none (most memory is saved there). */
function entryOf(ix: CollectionIndex, value: JsonValue): Entry | undefined {
  let any = false;
  const keys = ix.unique.map((u) => {
    const v = fieldAt(value, u.pointer);
    if (v === undefined || v === null) return undefined;
    any = true;
    return canonicalJson(v);
  });
  const refs = ix.refs.map((r) => {
    const v = fieldAt(value, r.pointer);
    if (v === undefined || v === null) return undefined;
    any = true;
    return typeof v === 'string' ? v : NOT_AN_ID + canonicalJson(v);
  });
  return any ? { keys, refs } : undefined;
}

function addTo(map: Map<string, Set<string>>, key: string, id: string): Set<string> {
  let set = map.get(key);
  if (set === undefined) {
    set = new Set();
    map.set(key, set);
  }
  set.add(id);
  return set;
}

/** Removes `id` from `map[key]`; returns how many documents remain there. */
function removeFrom(map: Map<string, Set<string>>, key: string, id: string): number {
  const set = map.get(key);
  if (set === undefined) return 0;
  set.delete(id);
  if (set.size === 0) map.delete(key);
  return set.size;
}

/**
 * The documents whose violations these updates may change, by `collection\u0000id`: each
 * updated document, those sharing any unique value it had or takes, and those referencing it.
 */
function affected(
  updates: readonly { ix: CollectionIndex; change: RecordedChange; entry: Entry | undefined }[],
): Map<string, [string, string]> {
  const out = new Map<string, [string, string]>();
  const add = (collection: string, id: string): void => void out.set(`${collection}\u0000${id}`, [collection, id]);
  for (const { ix, change, entry } of updates) {
    const id = change.id;
    add(ix.name, id);
    const old = ix.entries.get(id);
    ix.unique.forEach((u, i) => {
      for (const k of [old?.keys[i], entry?.keys[i]]) {
        if (k !== undefined) for (const other of u.byValue.get(k) ?? []) add(ix.name, other);
      }
    });
    for (const r of ix.referrers) for (const other of r.byTarget.get(id) ?? []) add(r.collection, other);
  }
  return out;
}

/** Makes the indexes show `ix.name/id` with `entry` (undefined: no constrained value) and liveness `live`. */
function setDoc(
  indexes: Map<string, CollectionIndex>,
  ix: CollectionIndex,
  id: string,
  entry: Entry | undefined,
  live: boolean,
): void {
  const old = ix.entries.get(id);
  ix.unique.forEach((u, i) => {
    const was = old?.keys[i];
    const now = entry?.keys[i];
    if (was === now) return;
    if (was !== undefined && removeFrom(u.byValue, was, id) < 2) u.dup.delete(was);
    if (now !== undefined && addTo(u.byValue, now, id).size > 1) u.dup.add(now);
  });
  ix.refs.forEach((r, i) => {
    const was = old?.refs[i];
    const now = entry?.refs[i];
    if (was === now) return;
    if (was !== undefined && removeFrom(r.byTarget, was, id) === 0) r.dangling.delete(was);
    if (now !== undefined) {
      addTo(r.byTarget, now, id);
      const target = indexes.get(r.target) as CollectionIndex;
      if (!isLive(target, now)) r.dangling.add(now);
    }
  });
  if (entry === undefined) ix.entries.delete(id);
  else ix.entries.set(id, entry);
  if (ix.live === undefined || ix.live.has(id) === live) return;
  if (live) ix.live.add(id);
  else ix.live.delete(id);
  for (const r of ix.referrers) {
    if (!r.byTarget.has(id)) continue;
    if (live) r.dangling.delete(id);
    else r.dangling.add(id);
  }
}
