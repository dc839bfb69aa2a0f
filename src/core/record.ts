/**
 * The `record` document kind: a multi-value register as a dotted version vector set
 * (Preguiça et al., "Dotted Version Vectors", and Riak's DVVSet).
 *
 * A state is a set of siblings, each a write identified by its dot, plus the document's
 * context: the version vector of every write to this document the state has seen.
 *
 *   siblings  { a:3 -> "x",  b:1 -> "y" }      two concurrent writes, both kept
 *   context   { a:3, b:1 }                      everything seen, superseded writes included
 *
 * Join keeps a sibling when both sides hold it, or when the other side has not seen it; a
 * sibling the other side has seen but no longer holds was superseded there. That join is
 * commutative, associative and idempotent, so replicas converge in any delivery order.
 * Deletes are tombstone siblings, so a delete concurrent with an update is a conflict too.
 * Values stay as the UTF-8 JSON bytes the writer produced: join and encode never parse them.
 *
 * The same dot store holds every document kind (Almeida et al., "Delta State Replicated Data
 * Types": a causal CRDT is a dot store plus a causal context, and its join is this one). An
 * entry may sit at a `path` (a JSON pointer into a map document) and be a register value (the
 * default), a counter's per-replica total, or a set element. Joins never look at the path or
 * the type (`lww` reduces only states made of root register values, a record's siblings), so
 * documents of every kind, and documents whose collection changed kind, join the same way.
 * src/crdt gives the entries their meaning.
 */
import { Decoder, Encoder, compareBytes, fromUtf8 } from './codec.js';
import { isJsonText } from './json-check.js';
import type { Dot } from './dot.js';
import { compareDots } from './dot.js';
import type { Hlc } from './hlc.js';
import { compareHlc } from './hlc.js';
import type { VersionVector } from './version-vector.js';
import { decodeVv, encodeVv, vvCovers, vvDominates, vvMerge, vvWith } from './version-vector.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { isTextState, joinTextEntries, maximalTextEntries, textEntryInfo } from './text-entries.js';

export const Policy = { keep: 'keep', lww: 'lww', merge: 'merge' } as const;
export type Policy = (typeof Policy)[keyof typeof Policy];

/** What an entry other than a register value holds. */
export type EntryType = 'count' | 'element' | 'text' | 'text-snapshot';

export interface Sibling {
  readonly dot: Dot;
  readonly hlc: Hlc;
  /**
   * UTF-8 JSON text of the value; null for a tombstone (a delete, only at the root). A
   * counter entry holds `[p,n]`, its replica's total increments and decrements; a set
   * element entry holds the element.
   */
  readonly value: Uint8Array | null;
  /** Where in a map document: a JSON pointer; absent for the whole document (''). */
  readonly path?: string;
  /** Absent for a register value. */
  readonly type?: EntryType;
}

/** A per-path policy, for map documents whose fields differ. */
export type PolicyAt = (path: string) => Policy;

export function pathOf(s: Sibling): string {
  return s.path ?? '';
}

/** A register value or tombstone at the document's root: what a record document holds. */
export function isRootRegister(s: Sibling): boolean {
  return s.type === undefined && (s.path === undefined || s.path === '');
}

export interface RecordState {
  /** Sorted by dot; no two siblings share a dot; every dot is covered by `context`. */
  readonly siblings: readonly Sibling[];
  readonly context: VersionVector;
}

export const EMPTY_RECORD: RecordState = { siblings: [], context: new Map() };

/** The format of an encoded state, as its first byte. Later formats take later bytes. */
export const KIND_RECORD = 1;

/**
 * An entry's first byte: 0 a root tombstone, 1 a root value (a record's siblings, the common
 * case, kept at one byte), then entries that carry a path: 2 a register value, 3 a counter
 * total, 4 a set element, 5 a text change, 6 a text snapshot (text-entries.ts). Root entries
 * other than register values use flags 3 to 6 with ''.
 */
const ENTRY_TOMBSTONE = 0;
const ENTRY_VALUE = 1;
const ENTRY_PATH_VALUE = 2;
const ENTRY_COUNT = 3;
const ENTRY_ELEMENT = 4;
const ENTRY_TEXT = 5;
const ENTRY_TEXT_SNAPSHOT = 6;

function entryFlag(s: Sibling): number {
  if (s.type === 'count') return ENTRY_COUNT;
  if (s.type === 'element') return ENTRY_ELEMENT;
  if (s.type === 'text') return ENTRY_TEXT;
  if (s.type === 'text-snapshot') return ENTRY_TEXT_SNAPSHOT;
  if (s.path !== undefined && s.path !== '') return ENTRY_PATH_VALUE;
  return s.value === null ? ENTRY_TOMBSTONE : ENTRY_VALUE;
}

function hasDot(siblings: readonly Sibling[], dot: Dot): boolean {
  for (const s of siblings) if (s.dot.replica === dot.replica && s.dot.counter === dot.counter) return true;
  return false;
}

/**
 * The displayed winner among siblings, identical on every replica: a live sibling beats a
 * tombstone, then the higher HLC, then the higher replica id, then the higher counter.
 */
export function compareForWinner(a: Sibling, b: Sibling): number {
  const live = (a.value === null ? 0 : 1) - (b.value === null ? 0 : 1);
  if (live !== 0) return live;
  return compareLww(a, b);
}

/** Last-writer-wins order: the HLC alone (deletes included), then replica id, then counter. */
export function compareLww(a: Sibling, b: Sibling): number {
  const t = compareHlc(a.hlc, b.hlc);
  if (t !== 0) return t;
  if (a.dot.replica !== b.dot.replica) return a.dot.replica < b.dot.replica ? -1 : 1;
  return a.dot.counter - b.dot.counter;
}

/** The winner among the root register values (a record document's siblings). */
export function winner(state: RecordState): Sibling | undefined {
  let best: Sibling | undefined;
  for (const s of state.siblings) {
    if (isRootRegister(s) && (best === undefined || compareForWinner(s, best) > 0)) best = s;
  }
  return best;
}

/** True when the document holds nothing live: no entry at all, or only tombstones. */
export function isDeletedState(state: RecordState): boolean {
  for (const s of state.siblings) if (s.value !== null) return false;
  return true;
}

/**
 * `lww` keeps only the latest of a record's siblings; the losers' dots stay in the context, so
 * they never return. That is sound because every record write, a delete included, leaves a
 * sibling later than the ones it replaced. Map, counter and set documents are not reduced
 * here: their operations remove entries without leaving one (a remove, a set of a parent), so
 * a value dropped for losing to a later one would stay lost or come back depending on the
 * order states arrive in, and the join would not be associative. Their register paths under
 * `lww` are resolved when read instead (src/crdt/view.ts `materialize`).
 */
function applyPolicy(siblings: Sibling[], policy: Policy | PolicyAt): Sibling[] {
  if (siblings.length <= 1) return siblings;
  if ((typeof policy === 'function' ? policy('') : policy) !== Policy.lww) return siblings;
  if (!siblings.every(isRootRegister)) return siblings;
  let best = siblings[0] as Sibling;
  for (const s of siblings) if (compareLww(s, best) > 0) best = s;
  return [best];
}

export function joinRecords(a: RecordState, b: RecordState, policy: Policy | PolicyAt = Policy.keep): RecordState {
  if (isTextState(a) || isTextState(b)) {
    return { siblings: joinTextEntries(a.siblings, b.siblings), context: vvMerge(a.context, b.context) };
  }
  const out: Sibling[] = [];
  for (const s of a.siblings) {
    if (hasDot(b.siblings, s.dot) || !vvCovers(b.context, s.dot)) out.push(s);
  }
  for (const s of b.siblings) {
    if (!hasDot(a.siblings, s.dot) && !vvCovers(a.context, s.dot)) out.push(s);
  }
  out.sort((x, y) => compareDots(x.dot, y.dot));
  return { siblings: applyPolicy(out, policy), context: vvMerge(a.context, b.context) };
}

/**
 * What a write saw: `context` covers every sibling it replaces (a whole-document version),
 * or `dot` names the one sibling it replaces (a sibling's own version). `hlc` is the latest
 * timestamp among what the reader saw: the write must be stamped after it, because
 * last-writer-wins order is only consistent when a write is later than what it replaces,
 * also when the version was read at another leader whose clock runs ahead.
 */
export type WriteBasis = { kind: 'context'; context: VersionVector; hlc?: Hlc } | { kind: 'dot'; dot: Dot; hlc?: Hlc };

/** The latest timestamp among a state's siblings (zero when it has none). */
export function latestHlc(state: RecordState): Hlc {
  let best: Hlc = { ms: 0, c: 0 };
  for (const s of state.siblings) if (compareHlc(s.hlc, best) > 0) best = s.hlc;
  return best;
}

/**
 * A local write: a new sibling with a fresh dot replaces every sibling its basis covers;
 * siblings the basis did not see stay as conflicts.
 */
export function writeRecord(
  state: RecordState,
  write: { dot: Dot; hlc: Hlc; value: Uint8Array | null; basis: WriteBasis },
  policy: Policy | PolicyAt = Policy.keep,
): RecordState {
  const { basis } = write;
  const mine: Sibling = { dot: write.dot, hlc: write.hlc, value: write.value };
  if (state.siblings.length === 0 && state.context.size === 0 && basis.kind === 'context' && basis.context.size === 0) {
    // A new document: the common case of bulk loads, without the general path's allocations.
    return { siblings: [mine], context: new Map([[write.dot.replica, write.dot.counter]]) };
  }
  const kept = state.siblings.filter((s) =>
    basis.kind === 'context'
      ? !vvCovers(basis.context, s.dot)
      : !(s.dot.replica === basis.dot.replica && s.dot.counter === basis.dot.counter),
  );
  const siblings = [...kept, mine].sort((x, y) => compareDots(x.dot, y.dot));
  let context = vvWith(state.context, write.dot);
  // A whole-document version from another leader may have seen writes this one has not:
  // they are superseded too, so they must not come back when they arrive.
  if (basis.kind === 'context' && basis.context !== state.context) context = vvMerge(context, basis.context);
  return { siblings: applyPolicy(siblings, policy), context };
}

const scratch = new Encoder(4096);

export function encodeRecord(state: RecordState): Uint8Array {
  encodeRecordTo(scratch.reset(), state);
  return scratch.finish();
}

/** Encodes `state` after `prefix` bytes, in one allocation. */
export function encodeRecordWithPrefix(prefix: number, state: RecordState): Uint8Array {
  scratch.reset();
  for (let i = 0; i < prefix; i++) scratch.byte(0);
  encodeRecordTo(scratch, state);
  return scratch.finish();
}

export function encodeRecordTo(enc: Encoder, state: RecordState): void {
  enc.byte(KIND_RECORD);
  enc.uint(state.siblings.length);
  for (const s of state.siblings) {
    enc.string(s.dot.replica).uint(s.dot.counter).uint(s.hlc.ms).uint(s.hlc.c);
    const flag = entryFlag(s);
    enc.byte(flag);
    if (flag >= ENTRY_PATH_VALUE) enc.string(s.path ?? '');
    if (flag !== ENTRY_TOMBSTONE) enc.bytes(s.value as Uint8Array);
  }
  encodeVv(enc, state.context);
}

/**
 * Decodes and validates a state. Values are copied out of the input buffer so a state never
 * pins a large frame in memory. Throws DbError('corrupt') on any malformed or non-canonical
 * input; with `checkJson`, also when a value is not valid JSON text.
 */
export function decodeRecord(bytes: Uint8Array, options: { checkJson?: boolean } = {}): RecordState {
  const dec = new Decoder(bytes);
  const state = decodeRecordFrom(dec, options);
  dec.end();
  return state;
}

export function decodeRecordFrom(dec: Decoder, options: { checkJson?: boolean } = {}): RecordState {
  const kind = dec.byte();
  if (kind !== KIND_RECORD) throw new DbError(ErrorCode.corrupt, `unknown document kind ${kind}`);
  const n = dec.uint();
  if (n > 100_000) throw new DbError(ErrorCode.corrupt, 'too many siblings');
  const siblings: Sibling[] = [];
  for (let i = 0; i < n; i++) {
    const replica = dec.string();
    const counter = dec.uint();
    const ms = dec.uint();
    const c = dec.uint();
    const flag = dec.byte();
    if (flag > ENTRY_TEXT_SNAPSHOT) throw new DbError(ErrorCode.corrupt, 'bad sibling flag');
    const path = flag >= ENTRY_PATH_VALUE ? dec.string() : undefined;
    const value = flag === ENTRY_TOMBSTONE ? null : dec.bytes().slice();
    if (counter < 1) throw new DbError(ErrorCode.corrupt, 'sibling counter below 1');
    let s: Sibling = { dot: { replica, counter }, hlc: { ms, c }, value };
    if (flag >= ENTRY_PATH_VALUE) s = checkEntry(flag, path as string, value as Uint8Array, s, options);
    else if (value !== null && options.checkJson === true) checkJsonText(value);
    const prev = siblings[siblings.length - 1];
    if (prev !== undefined && compareDots(prev.dot, s.dot) >= 0) {
      throw new DbError(ErrorCode.corrupt, 'siblings not sorted');
    }
    siblings.push(s);
  }
  const context = decodeVv(dec);
  for (const s of siblings) {
    if (!vvCovers(context, s.dot)) throw new DbError(ErrorCode.corrupt, 'sibling not covered by its context');
  }
  if (isTextState({ siblings })) checkTextState(siblings, context);
  return { siblings, context };
}

/** A text state holds only text changes, none subsumed by another, within its context. */
function checkTextState(siblings: readonly Sibling[], context: VersionVector): void {
  for (const s of siblings) {
    if (s.type !== 'text' && s.type !== 'text-snapshot') {
      throw new DbError(ErrorCode.corrupt, 'a text document holds an entry of another kind');
    }
    const info = textEntryInfo(s);
    if (info.kind === 'snapshot' && !vvDominates(context, info.cover)) {
      throw new DbError(ErrorCode.corrupt, 'text snapshot covers more than its document context');
    }
  }
  if (maximalTextEntries(siblings).length !== siblings.length) {
    throw new DbError(ErrorCode.corrupt, 'text document holds a change another one subsumes');
  }
}

const COUNT_TEXT = /^\[(0|[1-9][0-9]{0,15}),(0|[1-9][0-9]{0,15})\]$/;

/** Validates a map, counter or set entry, which must also be in its canonical form. */
function checkEntry(
  flag: number,
  path: string,
  value: Uint8Array,
  s: Sibling,
  options: { checkJson?: boolean },
): Sibling {
  if (path !== '' && !isJsonPointer(path)) throw new DbError(ErrorCode.corrupt, 'entry path is not a JSON pointer');
  if (flag === ENTRY_TEXT || flag === ENTRY_TEXT_SNAPSHOT) {
    if (path !== '') throw new DbError(ErrorCode.corrupt, 'a text change sits at the root');
    const entry: Sibling = { ...s, type: flag === ENTRY_TEXT ? 'text' : 'text-snapshot' };
    textEntryInfo(entry);
    return entry;
  }
  if (flag === ENTRY_PATH_VALUE) {
    if (path === '') throw new DbError(ErrorCode.corrupt, 'a root value entry must use the short form');
    if (options.checkJson === true) checkJsonText(value);
    return { ...s, path };
  }
  if (flag === ENTRY_COUNT) {
    const m = COUNT_TEXT.exec(fromUtf8(value));
    if (m === null || !Number.isSafeInteger(Number(m[1])) || !Number.isSafeInteger(Number(m[2]))) {
      throw new DbError(ErrorCode.corrupt, 'counter entry is not [p,n]');
    }
    return path === '' ? { ...s, type: 'count' } : { ...s, path, type: 'count' };
  }
  if (options.checkJson === true) checkJsonText(value);
  return path === '' ? { ...s, type: 'element' } : { ...s, path, type: 'element' };
}

/** RFC 6901: '' or '/'-separated keys in which '~' only starts '~0' or '~1'. */
export function isJsonPointer(path: string): boolean {
  return path === '' || /^(\/([^~]|~[01])*)+$/.test(path);
}

function checkJsonText(value: Uint8Array): void {
  if (!isJsonText(value)) throw new DbError(ErrorCode.corrupt, 'sibling value is not JSON text in UTF-8');
}

/** True when both states are the same, by canonical bytes. */
export function recordEquals(a: RecordState, b: RecordState): boolean {
  return compareBytes(encodeRecord(a), encodeRecord(b)) === 0;
}

/**
 * Whether `holds` answers yes for every sibling's dot and every context entry's latest dot,
 * read straight from the encoding: no values are copied and nothing is allocated but the
 * replica ids. Replication asks this of every document it considers sending.
 */
export function everyDotIn(bytes: Uint8Array, holds: (replica: string, counter: number) => boolean): boolean {
  const dec = new Decoder(bytes);
  if (dec.byte() !== KIND_RECORD) throw new DbError(ErrorCode.corrupt, 'unknown document kind');
  const n = dec.uint();
  for (let i = 0; i < n; i++) {
    const replica = dec.string();
    const counter = dec.uint();
    dec.uint();
    dec.uint();
    const flag = dec.byte();
    if (flag >= ENTRY_PATH_VALUE) dec.raw(dec.uint());
    if (flag !== ENTRY_TOMBSTONE) dec.raw(dec.uint());
    if (!holds(replica, counter)) return false;
  }
  const entries = dec.uint();
  for (let i = 0; i < entries; i++) {
    const replica = dec.string();
    if (!holds(replica, dec.uint())) return false;
  }
  return true;
}

/** Whether an encoded state is a text document's, read from its first entry's flag alone. */
export function isTextBytes(bytes: Uint8Array): boolean {
  const dec = new Decoder(bytes);
  if (dec.byte() !== KIND_RECORD || dec.uint() === 0) return false;
  dec.string();
  dec.uint();
  dec.uint();
  dec.uint();
  const flag = dec.byte();
  return flag === ENTRY_TEXT || flag === ENTRY_TEXT_SNAPSHOT;
}
