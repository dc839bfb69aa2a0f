/**
 * The history of a run and the checker of DESIGN.md's guarantees G1-G5 over it.
 *
 * The history holds every acknowledged write (replica, document, the unique value it wrote,
 * the dot and timestamp it got, and its basis: what it replaced), every atomic batch, and
 * every read with the exact committed state it saw. With each replica's commit log (every
 * document state it stored, in commit order) and the final states after the heal, the
 * checker verifies:
 *   G1  every acknowledged write is, at every replica, a sibling of its document, or covered
 *       by the document's context and superseded by a write that causally follows it (or,
 *       under lww, beaten by a later one): never absent while uncovered;
 *   G2  every replica reports the same digest (and holds the same bytes per document); the
 *       simulator also checks each status against the stored states (simulator.ts);
 *   G3  under 'keep', exactly the writes no other write superseded remain as siblings; under
 *       'lww', one sibling, the last writer; every replica and every read shows the winner
 *       the rule gives;
 *   G4  a document only ever moves up the lattice at a replica; an atomic batch is never
 *       seen half applied, at any replica, after any commit; reads at a replica see the
 *       writes acknowledged there before them, and never go backwards;
 *   G5  no change is recorded twice (strict growth: a commit that changes nothing records
 *       nothing; a held document may move unchanged beside a real change, to keep an atomic
 *       change whole), and once quiet the cluster stays quiet.
 * It must never call into the replicas: it judges only what was recorded.
 */
import {
  EMPTY_RECORD,
  bytesEqual,
  compareLww,
  decodeRecord,
  dotToString,
  encodeRecord,
  fromUtf8,
  joinRecords,
  parseToken,
  vvCovers,
  vvDominates,
} from '../core/index.js';
import type { Dot, Hlc, JsonValue, RecordState, Sibling, VersionVector } from '../core/index.js';
import { KEEP, canonicalText, describeEntry, modelView, pathOfEntry, resolverOf, valueAt } from './kind-model.js';
import type { CollectionModel, KindAction, MergeFn, Resolver } from './kind-model.js';
import type { ReplicaLog } from './sim-storage.js';

export type Invariant = 'G1' | 'G2' | 'G3' | 'G4' | 'G5' | 'liveness' | 'internal';

export interface Violation {
  readonly invariant: Invariant;
  readonly message: string;
  /** Documents involved (`collection/id`). */
  readonly keys: readonly string[];
  readonly replicas: readonly number[];
  /** Virtual time of the first evidence. */
  readonly atMs: number;
  /** When the story starts (the write the violation is about), for minimal traces. */
  readonly sinceMs?: number;
}

/** What a write replaced: every sibling a context covers, or exactly one sibling. */
export type Basis =
  | { readonly kind: 'context'; readonly vv: VersionVector }
  | { readonly kind: 'dot'; readonly dot: Dot };

export interface WriteRecord {
  /** The write number: the value written is `{"w": n}` (unique in the run), or a tombstone. */
  readonly n: number;
  readonly replica: number;
  readonly collection: string;
  readonly id: string;
  readonly key: string;
  /** The JSON text written, or null for a delete. */
  readonly valueText: string | null;
  readonly dot: Dot;
  readonly hlc: Hlc;
  readonly basis: Basis;
  /** Whether the client handed a version token (else the basis is the replica's state). */
  readonly token: 'none' | 'context' | 'dot';
  /** The writer's state of the document just before the write. */
  readonly prevContext: VersionVector;
  readonly batch: number | undefined;
  readonly atMs: number;
  /** Logical time of the acknowledgement (orders acks against reads). */
  readonly ackSeq: number;
  /** A client's write, or a merge function's resolution written back by the replica itself. */
  readonly origin: 'client' | 'merge';
}

/** An acknowledged write to a map, counter or set document, with its commit at the writer. */
export interface KindWriteRecord {
  readonly n: number;
  readonly replica: number;
  readonly collection: string;
  readonly id: string;
  readonly key: string;
  readonly action: KindAction;
  /** The writer's state of the document just before and just after the write. */
  readonly prev: RecordState;
  readonly state: RecordState;
  /** The last dot the write minted (its document's context covers every earlier one). */
  readonly dot: Dot;
  readonly token: 'none' | 'context';
  readonly batch: number | undefined;
  readonly atMs: number;
  readonly ackSeq: number;
}

/** What the batch and read checks need of any acknowledged write. */
export type AnyWrite = WriteRecord | KindWriteRecord;

export interface BatchRecord {
  readonly id: number;
  readonly replica: number;
  readonly writes: readonly AnyWrite[];
}

export interface ReadView {
  /** The value's JSON text. */
  readonly valueText: string;
  readonly origin: string;
  readonly version: string;
  readonly conflicts: number;
}

export interface ReadRecord {
  readonly replica: number;
  readonly collection: string;
  readonly id: string;
  readonly key: string;
  readonly atMs: number;
  /** Logical time the read was issued. */
  readonly issueSeq: number;
  readonly result: ReadView | null;
  /** The committed state the read's transaction saw (undefined: no such document). */
  readonly seen: Uint8Array | undefined;
  readonly final: boolean;
}

export class History {
  /** Writes to record documents (merge write-backs included). */
  readonly writes: WriteRecord[] = [];
  /** Writes to map, counter and set documents. */
  readonly kindWrites: KindWriteRecord[] = [];
  readonly reads: ReadRecord[] = [];
  readonly batches: BatchRecord[] = [];
  private seq = 0;
  private nextWrite = 1;
  private nextBatch = 1;

  /** The next logical time. */
  tick(): number {
    return ++this.seq;
  }

  writeNumber(): number {
    return this.nextWrite++;
  }

  batchId(): number {
    return this.nextBatch++;
  }
}

/** What one replica holds after the heal. */
export interface FinalReplica {
  readonly index: number;
  readonly id: string;
  readonly digest: string;
  /** State bytes per document key (missing: no such document). */
  readonly states: ReadonlyMap<string, Uint8Array>;
}

const MAX_VIOLATIONS = 40;
/** Merge write-backs a document may take beyond one per client write to it. */
const MAX_WRITE_BACKS_FLOOR = 2;

export function basisCovers(basis: Basis, dot: Dot): boolean {
  return basis.kind === 'context'
    ? vvCovers(basis.vv, dot)
    : basis.dot.replica === dot.replica && basis.dot.counter === dot.counter;
}

const dotKey = (d: Dot): string => `${d.replica}:${d.counter}`;

/** The view a read must return for a committed state (kind-model.ts; valueText canonical JSON). */
export function expectedView(
  collection: string,
  id: string,
  state: RecordState | undefined,
  resolve: Resolver = KEEP,
): ReadView | null {
  const v = modelView(collection, id, state, resolve);
  if (v === null) return null;
  return { valueText: canonicalText(v.value), origin: v.origin, version: v.version, conflicts: v.conflicts };
}

export function describeView(v: ReadView | null): string {
  return v === null ? 'null' : `${v.valueText} from ${v.origin}${v.conflicts > 0 ? ` +${v.conflicts} conflicts` : ''}`;
}

export function describeState(s: RecordState | undefined): string {
  if (s === undefined) return 'absent';
  const sibs = s.siblings.map(describeEntry);
  const ctx = [...s.context].map(([r, n]) => `${r}:${n}`).join(',');
  return `[${sibs.join(' ')}] ctx{${ctx}}`;
}

export class Checker {
  readonly violations: Violation[] = [];
  private readonly seen = new Set<string>();

  constructor(
    private readonly modelOf: (collection: string) => CollectionModel,
    private readonly replicaIds: readonly string[],
  ) {}

  report(v: Violation): void {
    // One report per invariant and document set is enough to diagnose; the rest is noise.
    const dedupe = `${v.invariant}|${v.keys.join(',')}|${v.message.slice(0, 40)}`;
    if (this.seen.has(dedupe) || this.violations.length >= MAX_VIOLATIONS) return;
    this.seen.add(dedupe);
    this.violations.push(v);
  }

  private name(replica: number): string {
    return this.replicaIds[replica] ?? `#${replica}`;
  }

  /**
   * G4 and G5 over each replica's commit log: each document moves strictly up the lattice,
   * and each atomic batch is all or nothing after every commit.
   */
  checkLogs(history: History, logs: readonly ReplicaLog[]): void {
    const batchesByKey = new Map<string, BatchRecord[]>();
    for (const b of history.batches) {
      for (const w of b.writes) {
        const list = batchesByKey.get(w.key) ?? [];
        list.push(b);
        batchesByKey.set(w.key, list);
      }
    }
    const exempt = importedBatches(history);
    logs.forEach((log, r) => {
      const current = new Map<string, RecordState>();
      const broken = new Set<number>();
      for (const commit of log.commits) {
        const touched = new Set<BatchRecord>();
        // A document may be put unchanged only to keep an atomic change whole (moved to the seq
        // of the change's new part, docs/adr/0002): in a commit that records a real change too.
        const changes = commit.puts.some((p) => p.prev === undefined || !bytesEqual(p.prev, p.state));
        for (const put of commit.puts) {
          const state = decodeRecord(put.state);
          if (put.prev !== undefined) {
            if (bytesEqual(put.prev, put.state)) {
              if (changes) {
                current.set(put.key, state);
                continue;
              }
              this.report({
                invariant: 'G5',
                message: `${this.name(r)} recorded ${put.key} again in a commit that changes nothing: ${describeState(state)}`,
                keys: [put.key],
                replicas: [r],
                atMs: commit.atMs,
              });
            } else {
              const prev = decodeRecord(put.prev);
              const joined = encodeRecord(joinRecords(prev, state, this.modelOf(put.collection).policyAt));
              if (!bytesEqual(joined, put.state)) {
                this.report({
                  invariant: 'G4',
                  message:
                    `${this.name(r)} moved ${put.key} to a state that does not follow the previous one: ` +
                    `${describeState(prev)} -> ${describeState(state)}`,
                  keys: [put.key],
                  replicas: [r],
                  atMs: commit.atMs,
                });
              }
            }
          }
          current.set(put.key, state);
          for (const b of batchesByKey.get(put.key) ?? []) touched.add(b);
        }
        for (const b of touched) {
          if (broken.has(b.id)) continue;
          const applied = b.writes.map((w) => {
            const s = current.get(w.key);
            return s !== undefined && vvCovers(s.context, w.dot);
          });
          const shown = b.writes.map((w) => current.get(w.key)?.siblings.some((s) => sameDot(s.dot, w.dot)) === true);
          const all = applied.every(Boolean);
          const some = exempt.has(b.id) ? shown.some(Boolean) : applied.some(Boolean);
          if (some && !all) {
            broken.add(b.id);
            const parts = b.writes.map(
              (w, i) =>
                `${w.key} ${dotToString(w.dot)} ${applied[i] === true ? 'applied' : 'MISSING'} ` +
                `(${describeState(current.get(w.key))})`,
            );
            this.report({
              invariant: 'G4',
              message:
                `${this.name(r)} shows atomic batch #${b.id} (written at ${this.name(b.replica)}) half applied ` +
                `after commit ${commit.index}: ${parts.join('; ')}`,
              keys: b.writes.map((w) => w.key),
              replicas: [r, b.replica],
              atMs: commit.atMs,
              sinceMs: (b.writes[0] as WriteRecord).atMs,
            });
          }
        }
      }
    });
  }

  /** G3 (the view a read returns) and G4 (read-your-writes, monotonic reads) over every read. */
  checkReads(history: History): void {
    const writesAt = new Map<string, AnyWrite[]>();
    for (const w of [...history.writes, ...history.kindWrites]) {
      const k = `${w.replica}|${w.key}`;
      const list = writesAt.get(k) ?? [];
      list.push(w);
      writesAt.set(k, list);
    }
    const lastSeen = new Map<string, VersionVector>();
    const reads = [...history.reads].sort((a, b) => a.issueSeq - b.issueSeq);
    for (const rd of reads) {
      const state = rd.seen === undefined ? undefined : decodeRecord(rd.seen);
      const expected = expectedView(rd.collection, rd.id, state, this.modelOf(rd.collection));
      if (!sameView(expected, rd.result)) {
        this.report({
          invariant: 'G3',
          message:
            `a read of ${rd.key} at ${this.name(rd.replica)} returned ${describeView(rd.result)}; the state it read, ` +
            `${describeState(state)}, shows ${describeView(expected)}`,
          keys: [rd.key],
          replicas: [rd.replica],
          atMs: rd.atMs,
        });
        continue;
      }
      let observed: VersionVector = state?.context ?? EMPTY_RECORD.context;
      if (rd.result !== null) {
        const basis = parseToken(rd.collection, rd.id, rd.result.version);
        if (basis.kind === 'context') observed = basis.context;
      }
      const k = `${rd.replica}|${rd.key}`;
      for (const w of writesAt.get(k) ?? []) {
        if (w.ackSeq < rd.issueSeq && !vvCovers(observed, w.dot)) {
          this.report({
            invariant: 'G4',
            message:
              `read-your-writes: a read of ${rd.key} at ${this.name(rd.replica)} does not see ${dotToString(w.dot)} ` +
              `(${writeName(w)}), acknowledged there before it; it saw ${describeState(state)}`,
            keys: [rd.key],
            replicas: [rd.replica],
            atMs: rd.atMs,
            sinceMs: w.atMs,
          });
        }
      }
      const before = lastSeen.get(k);
      if (before !== undefined && !vvDominates(observed, before)) {
        this.report({
          invariant: 'G4',
          message: `monotonic reads: a read of ${rd.key} at ${this.name(rd.replica)} saw less than an earlier read there`,
          keys: [rd.key],
          replicas: [rd.replica],
          atMs: rd.atMs,
        });
      }
      lastSeen.set(k, observed);
    }
  }

  /** G1, G2 and G3 over the final states, after the heal. */
  checkFinal(history: History, finals: readonly FinalReplica[], atMs: number): void {
    const byKey = new Map<string, WriteRecord[]>();
    const byDot = new Map<string, WriteRecord>();
    for (const w of history.writes) {
      const list = byKey.get(w.key) ?? [];
      list.push(w);
      byKey.set(w.key, list);
      byDot.set(dotKey(w.dot), w);
    }
    // G2: one digest, one state per document.
    const digests = new Set(finals.map((f) => f.digest));
    const keys = new Set<string>(byKey.keys());
    for (const f of finals) for (const k of f.states.keys()) keys.add(k);
    if (digests.size > 1) {
      const differing = [...keys].filter((k) => {
        const first = finals[0]?.states.get(k);
        return finals.some((f) => {
          const s = f.states.get(k);
          return s === undefined || first === undefined ? s !== first : !bytesEqual(s, first);
        });
      });
      const detail = differing
        .slice(0, 3)
        .map((k) => `${k}: ${finals.map((f) => `${f.id} ${describeState(decodeMaybe(f.states.get(k)))}`).join(' | ')}`);
      this.report({
        invariant: 'G2',
        message:
          `digests differ after the heal: ${finals.map((f) => `${f.id}=${f.digest.slice(0, 8)}`).join(' ')}` +
          (differing.length > 0 ? `; documents that differ: ${detail.join('; ')}` : '; every document is equal'),
        keys: differing.slice(0, 3),
        replicas: finals.map((f) => f.index),
        atMs,
      });
    }
    for (const [key, writes] of byKey) {
      const collection = (writes[0] as WriteRecord).collection;
      // Siblings are writes only in record documents; map, counter and set entries are checkKinds' business.
      const model = this.modelOf(collection);
      if (model.kind !== 'record') continue;
      const lww = model.policyAt === 'lww';
      const superseded = (w: WriteRecord): WriteRecord | undefined =>
        writes.find((o) => o !== w && basisCovers(o.basis, w.dot));
      let last: WriteRecord | undefined;
      for (const w of writes) if (last === undefined || compareLww(sib(w), sib(last)) > 0) last = w;
      for (const f of finals) {
        const bytes = f.states.get(key);
        const state = decodeMaybe(bytes);
        const where = `at ${f.id}: ${describeState(state)}`;
        for (const w of writes) {
          const s = state?.siblings.find((x) => sameDot(x.dot, w.dot));
          if (s !== undefined) {
            const text = s.value === null ? null : fromUtf8(s.value);
            if (text !== w.valueText) {
              this.report({
                invariant: 'G1',
                message: `${key} sibling ${dotToString(w.dot)} holds ${text ?? 'a tombstone'}, not ${writeName(w)}'s value ${w.valueText ?? 'tombstone'} ${where}`,
                keys: [key],
                replicas: [f.index, w.replica],
                atMs,
              });
            }
            continue;
          }
          if (state === undefined || !vvCovers(state.context, w.dot)) {
            this.report({
              invariant: 'G1',
              message: `${writeName(w)} (${dotToString(w.dot)} at ${this.name(w.replica)}, acknowledged) is missing and not covered ${where}`,
              keys: [key],
              replicas: [f.index, w.replica],
              atMs,
              sinceMs: w.atMs,
            });
            continue;
          }
          const by = superseded(w);
          if (by === undefined && !(lww && last !== w)) {
            this.report({
              invariant: 'G3',
              message:
                `${writeName(w)} (${dotToString(w.dot)}) is gone from ${key} although no write replaced it` +
                `${lww ? ' or beats it' : ''} ${where}`,
              keys: [key],
              replicas: [f.index, w.replica],
              atMs,
              sinceMs: w.atMs,
            });
          }
        }
        for (const s of state?.siblings ?? []) {
          const w = byDot.get(dotKey(s.dot));
          if (w === undefined || w.key !== key) {
            this.report({
              invariant: 'G1',
              message: `${key} holds sibling ${dotToString(s.dot)} that no acknowledged write to it made ${where}`,
              keys: [key],
              replicas: [f.index],
              atMs,
            });
            continue;
          }
          const by = superseded(w);
          if (!lww && by !== undefined) {
            this.report({
              invariant: 'G3',
              message: `${key} still holds ${writeName(w)} (${dotToString(w.dot)}) that ${writeName(by)} (${dotToString(by.dot)}) replaced ${where}`,
              keys: [key],
              replicas: [f.index, by.replica],
              atMs,
              sinceMs: w.atMs,
            });
          }
        }
        if (lww && state !== undefined) {
          if (state.siblings.length > 1 || (last !== undefined && !sameDot(state.siblings[0]?.dot, last.dot))) {
            this.report({
              invariant: 'G3',
              message: `lww ${key} should hold only the last writer, ${last === undefined ? '-' : writeName(last)} (${last === undefined ? '-' : dotToString(last.dot)}), ${where}`,
              keys: [key],
              replicas: [f.index],
              atMs,
            });
          }
        }
      }
    }
  }

  /**
   * Map, counter and set documents after the heal. A dot store changes only by local
   * operations (joins spread what they did; an 'lww' field keeps its latest value), so the
   * entries every replica's local commits made and dropped say what each replica must hold:
   *   G1  every entry a local commit made is covered by every replica's context, and held
   *       unless a local commit dropped it (an operation that saw it superseded it) or a
   *       later value of its 'lww' field beat it; no entry is held that no local commit made;
   *   G3  no dropped entry comes back; as clients see it,
   *       a counter never reset shows the sum of every acknowledged increment, and a set
   *       shows exactly the elements whose adds no remove saw (add-wins).
   */
  checkKinds(
    history: History,
    logs: readonly ReplicaLog[],
    finals: readonly FinalReplica[],
    views: readonly { replica: number; key: string; view: ReadView | null }[],
    atMs: number,
  ): void {
    const made = new Map<string, Map<string, { entry: Sibling; replica: number; atMs: number }>>();
    const dropped = new Map<string, Map<string, { replica: number; atMs: number }>>();
    const isKind = (key: string): boolean => this.modelOf(collectionOf(key)).kind !== 'record';
    logs.forEach((log, r) => {
      const me = this.name(r);
      for (const commit of log.commits) {
        if (commit.checkpoint !== undefined) continue;
        for (const put of commit.puts) {
          if (!isKind(put.key)) continue;
          const prev = decodeMaybe(put.prev) ?? EMPTY_RECORD;
          const state = decodeRecord(put.state);
          const before = new Set(prev.siblings.map((x) => dotKey(x.dot)));
          const after = new Set(state.siblings.map((x) => dotKey(x.dot)));
          for (const e of state.siblings) {
            if (before.has(dotKey(e.dot))) continue;
            if (e.dot.replica !== me || vvCovers(prev.context, e.dot)) {
              this.report({
                invariant: 'G1',
                message: `a local commit at ${me} put ${describeEntry(e)} into ${put.key}, an entry it did not make`,
                keys: [put.key],
                replicas: [r],
                atMs: commit.atMs,
              });
              continue;
            }
            mapOf(made, put.key).set(dotKey(e.dot), { entry: e, replica: r, atMs: commit.atMs });
          }
          for (const e of prev.siblings) {
            if (!after.has(dotKey(e.dot)))
              mapOf(dropped, put.key).set(dotKey(e.dot), { replica: r, atMs: commit.atMs });
          }
        }
      }
    });
    const keys = new Set<string>(made.keys());
    for (const f of finals) for (const k of f.states.keys()) if (isKind(k)) keys.add(k);
    for (const key of [...keys].sort()) {
      const model = this.modelOf(collectionOf(key));
      const entries = made.get(key) ?? new Map<string, { entry: Sibling; replica: number; atMs: number }>();
      const gone = dropped.get(key) ?? new Map<string, { replica: number; atMs: number }>();
      // A join may drop the register values of an 'lww' field that a later one beats (or keep
      // them all, for the view to resolve): either way a beaten value may be gone.
      const lwwAt = (e: Sibling): boolean => e.type === undefined && model.lwwAt(pathOfEntry(e));
      const beaten = (e: Sibling): boolean =>
        lwwAt(e) &&
        [...entries.values()].some(
          (o) => o.entry.type === undefined && pathOfEntry(o.entry) === pathOfEntry(e) && compareLww(o.entry, e) > 0,
        );
      for (const f of finals) {
        const state = decodeMaybe(f.states.get(key));
        const where = `at ${f.id}: ${describeState(state)}`;
        const held = new Set<string>();
        for (const e of state?.siblings ?? []) {
          const k = dotKey(e.dot);
          held.add(k);
          const m = entries.get(k);
          if (m === undefined || !sameEntry(m.entry, e)) {
            this.report({
              invariant: 'G1',
              message: `${key} holds ${describeEntry(e)}, which no local commit made ${where}`,
              keys: [key],
              replicas: [f.index],
              atMs,
            });
            continue;
          }
          const d = gone.get(k);
          if (d !== undefined) {
            this.report({
              invariant: 'G3',
              message: `${key} holds ${describeEntry(e)} again after an operation at ${this.name(d.replica)} removed it ${where}`,
              keys: [key],
              replicas: [f.index, d.replica],
              atMs,
              sinceMs: m.atMs,
            });
          }
        }
        for (const [k, m] of entries) {
          if (state === undefined || !vvCovers(state.context, m.entry.dot)) {
            this.report({
              invariant: 'G1',
              message: `${key} ${describeEntry(m.entry)} (made at ${this.name(m.replica)}) never arrived ${where}`,
              keys: [key],
              replicas: [f.index, m.replica],
              atMs,
              sinceMs: m.atMs,
            });
            continue;
          }
          if (held.has(k) || gone.has(k) || beaten(m.entry)) continue;
          this.report({
            invariant: 'G1',
            message:
              `${key} lost ${describeEntry(m.entry)} (made at ${this.name(m.replica)}): no operation that saw it ` +
              `removed it${lwwAt(m.entry) ? ' and no later value beat it' : ''} ${where}`,
            keys: [key],
            replicas: [f.index, m.replica],
            atMs,
            sinceMs: m.atMs,
          });
        }
      }
    }
    this.checkCounters(history, views, atMs);
    this.checkSets(made, dropped, views, atMs);
  }

  /** G3 for counters: one never reset shows, everywhere, the sum of every acknowledged increment. */
  private checkCounters(
    history: History,
    views: readonly { replica: number; key: string; view: ReadView | null }[],
    atMs: number,
  ): void {
    const sums = new Map<string, { key: string; path: string; sum: number; increments: number; reset: boolean }>();
    for (const w of history.kindWrites) {
      const model = this.modelOf(w.collection);
      for (const path of model.counterFields) {
        const id = `${w.key}|${path}`;
        const c = sums.get(id) ?? { key: w.key, path, sum: 0, increments: 0, reset: false };
        sums.set(id, c);
        const { action } = w;
        if (action.type === 'delete') c.reset = true;
        else if (action.type === 'put') {
          const n = valueAt(action.value, path);
          const before = modelView(w.collection, w.id, w.prev, model);
          const was = valueAt(before?.value, path);
          if (typeof n !== 'number' || (was !== undefined && typeof was !== 'number')) c.reset = true;
          else {
            c.sum += n - (was ?? 0);
            c.increments++;
          }
        } else {
          for (const op of action.ops) {
            if (op.op === 'increment' && op.path === path) {
              c.sum += op.by;
              c.increments++;
            } else if (
              (op.op === 'set' || op.op === 'remove') &&
              (path === op.path || path.startsWith(`${op.path}/`))
            ) {
              c.reset = true;
            }
          }
        }
      }
    }
    for (const c of sums.values()) {
      if (c.reset || c.increments === 0) continue;
      for (const v of views) {
        if (v.key !== c.key) continue;
        const shown = v.view === null ? undefined : valueAt(JSON.parse(v.view.valueText) as JsonValue, c.path);
        if (shown === c.sum) continue;
        this.report({
          invariant: 'G3',
          message:
            `counter ${c.key}${c.path === '' ? '' : ` ${c.path}`} shows ${shown === undefined ? 'nothing' : canonicalText(shown)} ` +
            `at ${this.name(v.replica)}, not ${c.sum}, the sum of its ${c.increments} acknowledged increments`,
          keys: [c.key],
          replicas: [v.replica],
          atMs,
        });
      }
    }
  }

  /** G3 for sets (add-wins): exactly the elements with an add entry no remove saw, at every replica. */
  private checkSets(
    made: ReadonlyMap<string, ReadonlyMap<string, { entry: Sibling }>>,
    dropped: ReadonlyMap<string, ReadonlyMap<string, unknown>>,
    views: readonly { replica: number; key: string; view: ReadView | null }[],
    atMs: number,
  ): void {
    for (const v of views) {
      const model = this.modelOf(collectionOf(v.key));
      for (const path of model.setFields) {
        const want = new Set<string>();
        for (const [k, m] of made.get(v.key) ?? new Map<string, { entry: Sibling }>()) {
          if (m.entry.type !== 'element' || pathOfEntry(m.entry) !== path) continue;
          if (dropped.get(v.key)?.has(k) !== true) want.add(fromUtf8(m.entry.value as Uint8Array));
        }
        const shown = v.view === null ? undefined : valueAt(JSON.parse(v.view.valueText) as JsonValue, path);
        const got = new Set(Array.isArray(shown) ? shown.map(canonicalText) : []);
        const extra = [...got].filter((e) => !want.has(e));
        const missing = [...want].filter((e) => !got.has(e));
        if (extra.length === 0 && missing.length === 0 && (shown === undefined || Array.isArray(shown))) continue;
        this.report({
          invariant: 'G3',
          message:
            `set ${v.key}${path === '' ? '' : ` ${path}`} at ${this.name(v.replica)} shows ` +
            `${shown === undefined ? 'nothing' : canonicalText(shown)}: ` +
            `${missing.length > 0 ? `missing ${missing.join(', ')} (added, and no remove saw the add)` : ''}` +
            `${extra.length > 0 ? `${missing.length > 0 ? '; ' : ''}holds ${extra.join(', ')} (never added, or every add removed)` : ''}`,
          keys: [v.key],
          replicas: [v.replica],
          atMs,
        });
      }
    }
  }

  /**
   * Merge collections: resolutions written back stay few. Each one answers a conflict that a
   * client's concurrent write made, or two resolutions written concurrently by resolvers that
   * saw disjoint siblings (which then meet as one more conflict): so at most about two per
   * client write; more means a document is resolving its own resolutions (a storm).
   */
  checkWriteBacks(history: History, atMs: number): void {
    const byKey = new Map<string, { clients: number; backs: WriteRecord[] }>();
    for (const w of history.writes) {
      const c = byKey.get(w.key) ?? { clients: 0, backs: [] };
      byKey.set(w.key, c);
      if (w.origin === 'merge') c.backs.push(w);
      else c.clients++;
    }
    for (const [key, c] of byKey) {
      if (c.backs.length <= Math.max(MAX_WRITE_BACKS_FLOOR, 2 * c.clients)) continue;
      this.report({
        invariant: 'G5',
        message: `${key}: ${c.backs.length} merge write-backs for ${c.clients} client writes (${c.backs.map((w) => `${this.name(w.replica)} ${dotToString(w.dot)}`).join(', ')})`,
        keys: [key],
        replicas: [...new Set(c.backs.map((w) => w.replica))],
        atMs,
      });
    }
  }

  /** G3: every replica shows the same winner for every document. */
  checkSameViews(views: readonly { replica: number; key: string; view: ReadView | null }[], atMs: number): void {
    const byKey = new Map<string, { replica: number; view: ReadView | null }[]>();
    for (const v of views) {
      const list = byKey.get(v.key) ?? [];
      list.push(v);
      byKey.set(v.key, list);
    }
    for (const [key, list] of byKey) {
      const first = list[0];
      if (first === undefined) continue;
      if (list.every((v) => sameView(v.view, first.view))) continue;
      this.report({
        invariant: 'G3',
        message: `replicas show different winners for ${key}: ${list.map((v) => `${this.name(v.replica)}: ${describeView(v.view)}`).join(' | ')}`,
        keys: [key],
        replicas: list.map((v) => v.replica),
        atMs,
      });
    }
  }
}

/**
 * Batches a client imported into another replica's view with a version token: a token read
 * at X and used at Y makes Y's document claim (in its context) batch writes Y never
 * received. Such a batch can only be held to the weaker rule: never one of its values shown
 * while another of its writes is missing.
 */
function importedBatches(history: History): Set<number> {
  const out = new Set<number>();
  const batchWrites = history.writes.filter((w) => w.batch !== undefined);
  for (const w of history.writes) {
    if (w.token !== 'context' || w.basis.kind !== 'context') continue;
    for (const b of batchWrites) {
      if (b.key === w.key && vvCovers(w.basis.vv, b.dot) && !vvCovers(w.prevContext, b.dot)) {
        out.add(b.batch as number);
      }
    }
  }
  return out;
}

/** How a write is named in reports: `write 12`, or `merge write-back` for a replica's own resolution. */
export function writeName(w: AnyWrite): string {
  return 'origin' in w && w.origin === 'merge' ? 'a merge write-back' : `write ${w.n}`;
}

function sib(w: WriteRecord): Sibling {
  return { dot: w.dot, hlc: w.hlc, value: null };
}

function sameDot(a: Dot | undefined, b: Dot): boolean {
  return a !== undefined && a.replica === b.replica && a.counter === b.counter;
}

function sameView(a: ReadView | null, b: ReadView | null): boolean {
  if (a === null || b === null) return a === b;
  return a.valueText === b.valueText && a.origin === b.origin && a.version === b.version && a.conflicts === b.conflicts;
}

function mapOf<V>(m: Map<string, Map<string, V>>, key: string): Map<string, V> {
  let inner = m.get(key);
  if (inner === undefined) m.set(key, (inner = new Map<string, V>()));
  return inner;
}

export function collectionOf(key: string): string {
  return key.slice(0, key.indexOf('/'));
}

function sameEntry(a: Sibling, b: Sibling): boolean {
  return (
    a.type === b.type &&
    pathOfEntry(a) === pathOfEntry(b) &&
    a.hlc.ms === b.hlc.ms &&
    a.hlc.c === b.hlc.c &&
    (a.value === null || b.value === null ? a.value === b.value : bytesEqual(a.value, b.value))
  );
}

/**
 * What is wrong with a merge write-back committed at replica `me` (or undefined): it resolves
 * two siblings or more, only their resolver writes it (the least replica id among the live
 * siblings' origins, so resolutions replace each other), and its value is the merge function
 * of the live siblings it replaced.
 */
export function writeBackProblem(
  prev: RecordState,
  state: RecordState,
  me: string,
  merge: MergeFn | undefined,
): string | undefined {
  if (merge === undefined) return 'the collection has no merge function';
  if (prev.siblings.length < 2) return `there was no conflict to resolve: ${describeState(prev)}`;
  const resolver = resolverOf(prev.siblings);
  if (resolver !== me) return `${me} resolved ${describeState(prev)}, whose resolver is ${resolver ?? 'nobody'}`;
  const mine = state.siblings.filter((s) => s.dot.replica === me && !vvCovers(prev.context, s.dot));
  if (mine.length !== 1 || state.siblings.length !== 1) return `it left ${describeState(state)}`;
  const live = prev.siblings
    .filter((s) => s.value !== null)
    .map((s) => JSON.parse(fromUtf8(s.value as Uint8Array)) as JsonValue);
  const want = canonicalText(merge(live));
  const value = (mine[0] as Sibling).value;
  const got = value === null ? 'a tombstone' : canonicalText(JSON.parse(fromUtf8(value)) as JsonValue);
  return got === want ? undefined : `it wrote ${got}, not ${want}, the merge of ${describeState(prev)}`;
}

function decodeMaybe(bytes: Uint8Array | undefined): RecordState | undefined {
  return bytes === undefined ? undefined : decodeRecord(bytes);
}
