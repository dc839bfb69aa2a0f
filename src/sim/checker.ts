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
  contextToken,
  decodeRecord,
  dotToString,
  encodeRecord,
  fromUtf8,
  joinRecords,
  latestHlc,
  parseToken,
  vvCovers,
  vvDominates,
  winner,
} from '../core/index.js';
import type { Dot, Hlc, Policy, RecordState, Sibling, VersionVector } from '../core/index.js';
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
}

export interface BatchRecord {
  readonly id: number;
  readonly replica: number;
  readonly writes: readonly WriteRecord[];
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
  readonly writes: WriteRecord[] = [];
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

export function basisCovers(basis: Basis, dot: Dot): boolean {
  return basis.kind === 'context'
    ? vvCovers(basis.vv, dot)
    : basis.dot.replica === dot.replica && basis.dot.counter === dot.counter;
}

const dotKey = (d: Dot): string => `${d.replica}:${d.counter}`;

/** The view a read must return for a committed state (replica.ts `view`, for 'keep' and 'lww'). */
export function expectedView(collection: string, id: string, state: RecordState | undefined): ReadView | null {
  if (state === undefined) return null;
  const win = winner(state);
  if (win === undefined || win.value === null) return null;
  return {
    valueText: fromUtf8(win.value),
    origin: win.dot.replica,
    version: contextToken(collection, id, state.context, latestHlc(state)),
    conflicts: state.siblings.length - 1,
  };
}

export function describeView(v: ReadView | null): string {
  return v === null ? 'null' : `${v.valueText} from ${v.origin}${v.conflicts > 0 ? ` +${v.conflicts} conflicts` : ''}`;
}

export function describeState(s: RecordState | undefined): string {
  if (s === undefined) return 'absent';
  const sibs = s.siblings.map((x) => `${dotToString(x.dot)}=${x.value === null ? 'del' : fromUtf8(x.value)}`);
  const ctx = [...s.context].map(([r, n]) => `${r}:${n}`).join(',');
  return `[${sibs.join(' ')}] ctx{${ctx}}`;
}

export class Checker {
  readonly violations: Violation[] = [];
  private readonly seen = new Set<string>();

  constructor(
    private readonly policyOf: (collection: string) => Policy,
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
              const joined = encodeRecord(joinRecords(prev, state, this.policyOf(put.collection)));
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
    const writesAt = new Map<string, WriteRecord[]>();
    for (const w of history.writes) {
      const k = `${w.replica}|${w.key}`;
      const list = writesAt.get(k) ?? [];
      list.push(w);
      writesAt.set(k, list);
    }
    const lastSeen = new Map<string, VersionVector>();
    const reads = [...history.reads].sort((a, b) => a.issueSeq - b.issueSeq);
    for (const rd of reads) {
      const state = rd.seen === undefined ? undefined : decodeRecord(rd.seen);
      const expected = expectedView(rd.collection, rd.id, state);
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
              `(write ${w.n}), acknowledged there before it; it saw ${describeState(state)}`,
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
      const lww = this.policyOf(collection) === 'lww';
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
                message: `${key} sibling ${dotToString(w.dot)} holds ${text ?? 'a tombstone'}, not write ${w.n}'s value ${w.valueText ?? 'tombstone'} ${where}`,
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
              message: `write ${w.n} (${dotToString(w.dot)} at ${this.name(w.replica)}, acknowledged) is missing and not covered ${where}`,
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
                `write ${w.n} (${dotToString(w.dot)}) is gone from ${key} although no write replaced it` +
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
              message: `${key} still holds write ${w.n} (${dotToString(w.dot)}) that write ${by.n} (${dotToString(by.dot)}) replaced ${where}`,
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
              message: `lww ${key} should hold only the last writer, write ${last?.n} (${last === undefined ? '-' : dotToString(last.dot)}), ${where}`,
              keys: [key],
              replicas: [f.index],
              atMs,
            });
          }
        }
      }
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

function decodeMaybe(bytes: Uint8Array | undefined): RecordState | undefined {
  return bytes === undefined ? undefined : decodeRecord(bytes);
}
