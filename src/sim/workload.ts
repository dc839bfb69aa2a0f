/**
 * Client workloads: puts with and without version tokens (read at the same replica or at
 * another), sibling-version writes, deletes, create-only puts, atomic batches of 2-4
 * documents and reads, against random live replicas. Every value written is unique
 * (`{"w": n}`), so the checker can tell each write apart wherever it ends up.
 * Each write's commit and each read's snapshot are captured at the storage seam, so the
 * history records exactly what was acknowledged and what was seen.
 */
import { EMPTY_RECORD, decodeRecord, dotToString, fromUtf8, parseToken, vvCovers } from '../core/index.js';
import type { Policy, RecordState } from '../core/index.js';
import type { DocView, Replica, WriteOp } from '../replication/index.js';
import { isDbError } from '../shared/errors.js';
import type { Basis, History, ReadView, Violation, WriteRecord } from './checker.js';
import type { SeededRandom } from './prng.js';
import { between, chance, weighted } from './prng.js';
import type { SimStorage } from './sim-storage.js';
import { docKey } from './sim-storage.js';

export interface CollectionSpec {
  readonly name: string;
  readonly policy: Policy;
}

/** The collections every run uses: two kept, one last-writer-wins. */
export const COLLECTIONS: readonly CollectionSpec[] = [
  { name: 'docs', policy: 'keep' },
  { name: 'notes', policy: 'keep' },
  { name: 'presence', policy: 'lww' },
];

/** Outcomes a client must expect and handle: they change nothing. */
export const EXPECTED_ERRORS = ['conflict', 'not_found', 'precondition_failed', 'clock_skew'] as const;

export interface WorkloadStats {
  ops: number;
  writes: number;
  batches: number;
  reads: number;
  tokenWrites: number;
  expectedErrors: Record<string, number>;
}

export function emptyWorkloadStats(): WorkloadStats {
  return { ops: 0, writes: 0, batches: 0, reads: 0, tokenWrites: 0, expectedErrors: {} };
}

/** What the workload needs of the cluster. */
export interface ClientCluster {
  readonly history: History;
  readonly rng: SeededRandom;
  readonly keys: number;
  readonly stats: WorkloadStats;
  nowMs(): number;
  upReplicas(): number[];
  handle(replica: number): { replica: Replica; storage: SimStorage } | undefined;
  replicaId(replica: number): string;
  traceOp(text: string, keys: readonly string[], replicas: readonly number[]): void;
  violation(v: Omit<Violation, 'atMs'>): void;
}

type OpKind = 'put' | 'put-token' | 'put-sibling' | 'delete' | 'create' | 'batch' | 'read';

const OP_WEIGHTS: readonly (readonly [OpKind, number])[] = [
  ['put', 28],
  ['put-token', 16],
  ['put-sibling', 5],
  ['delete', 8],
  ['create', 4],
  ['batch', 14],
  ['read', 25],
];

interface Doc {
  readonly collection: string;
  readonly id: string;
}

interface PlannedOp {
  readonly op: WriteOp;
  readonly n: number;
  readonly token: 'none' | 'context' | 'dot';
  readonly tokenFrom: string;
}

function randomDoc(c: ClientCluster): Doc {
  const spec = c.rng.pick(COLLECTIONS);
  // A few hot documents make conflicts likely.
  const k = chance(c.rng, 0.5) ? c.rng.int(Math.min(2, c.keys)) : c.rng.int(c.keys);
  return { collection: spec.name, id: `k${k}` };
}

/** Runs one random client operation at a random live replica. */
export async function runClientOp(c: ClientCluster): Promise<void> {
  const up = c.upReplicas();
  if (up.length === 0) return;
  c.stats.ops++;
  const r = c.rng.pick(up);
  const kind = weighted(c.rng, OP_WEIGHTS);
  if (kind === 'read') {
    await clientRead(c, r, randomDoc(c), false);
    return;
  }
  const docs: Doc[] = [];
  if (kind === 'batch') {
    const want = between(c.rng, 2, 4);
    const seen = new Set<string>();
    for (let tries = 0; docs.length < want && tries < 20; tries++) {
      const d = randomDoc(c);
      const k = docKey(d.collection, d.id);
      if (seen.has(k)) continue;
      seen.add(k);
      docs.push(d);
    }
  } else docs.push(randomDoc(c));
  const planned: PlannedOp[] = [];
  for (const d of docs) {
    const opKind: OpKind =
      kind === 'batch'
        ? weighted(c.rng, [
            ['put', 5],
            ['put-token', 3],
            ['delete', 1],
          ] as const)
        : kind;
    planned.push(await planOp(c, r, d, opKind));
  }
  await clientWrite(c, r, planned);
}

async function planOp(c: ClientCluster, r: number, d: Doc, kind: OpKind): Promise<PlannedOp> {
  const n = c.history.writeNumber();
  const { collection, id } = d;
  const base: WriteOp =
    kind === 'delete' ? { type: 'delete', collection, id } : { type: 'put', collection, id, value: { w: n } };
  if (kind === 'create') return { op: { ...base, ifAbsent: true } as WriteOp, n, token: 'none', tokenFrom: '' };
  const wantToken = kind === 'put-token' || kind === 'put-sibling' || (kind === 'delete' && chance(c.rng, 0.5));
  if (!wantToken) return { op: base, n, token: 'none', tokenFrom: '' };
  // Clients sometimes read at one leader and write at another with that version.
  const up = c.upReplicas();
  const reader = chance(c.rng, 0.35) && up.length > 0 ? c.rng.pick(up) : r;
  const view = await clientRead(c, reader, d, false);
  if (view === null) return { op: base, n, token: 'none', tokenFrom: '' };
  const from = c.replicaId(reader);
  if (kind === 'put-sibling' && view.conflicts.length > 0) {
    const pick = c.rng.pick(view.conflicts);
    return { op: { ...base, version: pick.version }, n, token: 'dot', tokenFrom: from };
  }
  return { op: { ...base, version: view.version }, n, token: 'context', tokenFrom: from };
}

function valueTextOf(op: WriteOp): string | null {
  return op.type === 'put' ? JSON.stringify(op.value) : null;
}

function describeOp(p: PlannedOp): string {
  const { op } = p;
  const what = op.type === 'put' ? `${op.ifAbsent === true ? 'create' : 'put'} w=${p.n}` : `del(w=${p.n})`;
  const token = p.token === 'none' ? '' : ` [${p.token === 'dot' ? 'sibling' : 'doc'} version from ${p.tokenFrom}]`;
  return `${docKey(op.collection, op.id)} ${what}${token}`;
}

async function clientWrite(c: ClientCluster, r: number, planned: readonly PlannedOp[]): Promise<void> {
  const h = c.handle(r);
  if (h === undefined) return;
  const name = c.replicaId(r);
  const keys = planned.map((p) => docKey(p.op.collection, p.op.id));
  const what = `${name} ${planned.length > 1 ? 'batch ' : ''}${planned.map(describeOp).join(', ')}`;
  const cap = h.storage.armWrite();
  let pending: Promise<unknown>;
  try {
    pending = h.replica.write(planned.map((p) => p.op));
  } finally {
    h.storage.disarm();
  }
  try {
    await pending;
  } catch (e) {
    const crashed = c.handle(r)?.replica !== h.replica;
    const code = isDbError(e) ? e.code : 'exception';
    if ((EXPECTED_ERRORS as readonly string[]).includes(code) || (crashed && code === 'closed')) {
      c.stats.expectedErrors[code] = (c.stats.expectedErrors[code] ?? 0) + 1;
      c.traceOp(`${what} -> ${code}`, keys, [r]);
      return;
    }
    c.violation({
      invariant: 'internal',
      message: `${what} failed unexpectedly: ${code}: ${(e as Error).message}`,
      keys,
      replicas: [r],
    });
    return;
  }
  const commit = cap.commit;
  if (commit === undefined) {
    c.violation({
      invariant: 'internal',
      message: `${what}: acknowledged without a captured commit`,
      keys,
      replicas: [r],
    });
    return;
  }
  const ackSeq = c.history.tick();
  const batch = planned.length > 1 ? c.history.batchId() : undefined;
  const records: WriteRecord[] = [];
  for (const p of planned) {
    const { op } = p;
    const key = docKey(op.collection, op.id);
    const put = commit.puts.find((x) => x.key === key);
    const state = put === undefined ? undefined : decodeRecord(put.state);
    const prev: RecordState = put?.prev === undefined ? EMPTY_RECORD : decodeRecord(put.prev);
    const mine = state?.siblings.filter((s) => s.dot.replica === name && !vvCovers(prev.context, s.dot)) ?? [];
    const sibling = mine[0];
    const valueText = valueTextOf(op);
    if (
      sibling === undefined ||
      mine.length !== 1 ||
      (sibling.value === null ? null : fromUtf8(sibling.value)) !== valueText
    ) {
      c.violation({
        invariant: 'G1',
        message: `${what}: acknowledged, but the committed state of ${key} does not hold it as one new sibling`,
        keys,
        replicas: [r],
      });
      return;
    }
    let basis: Basis = { kind: 'context', vv: prev.context };
    if (op.version !== undefined) {
      const parsed = parseToken(op.collection, op.id, op.version);
      basis = parsed.kind === 'context' ? { kind: 'context', vv: parsed.context } : { kind: 'dot', dot: parsed.dot };
      c.stats.tokenWrites++;
    }
    records.push({
      n: p.n,
      replica: r,
      collection: op.collection,
      id: op.id,
      key,
      valueText,
      dot: sibling.dot,
      hlc: sibling.hlc,
      basis,
      token: p.token,
      prevContext: prev.context,
      batch,
      atMs: c.nowMs(),
      ackSeq,
    });
  }
  c.history.writes.push(...records);
  c.stats.writes += records.length;
  if (batch !== undefined) {
    c.history.batches.push({ id: batch, replica: r, writes: records });
    c.stats.batches++;
  }
  c.traceOp(`${what} -> ${records.map((w) => dotToString(w.dot)).join(',')}`, keys, [r]);
}

/** Reads one document at replica `r`, recording what it returned and the state it saw. */
export async function clientRead(c: ClientCluster, r: number, d: Doc, final: boolean): Promise<DocView | null> {
  const h = c.handle(r);
  if (h === undefined) return null;
  const key = docKey(d.collection, d.id);
  const issueSeq = c.history.tick();
  const cap = h.storage.armRead(key);
  let pending: Promise<DocView | null>;
  try {
    pending = h.replica.get(d.collection, d.id);
  } finally {
    h.storage.disarm();
  }
  let view: DocView | null;
  try {
    view = await pending;
  } catch (e) {
    const crashed = c.handle(r)?.replica !== h.replica;
    if (crashed && isDbError(e, 'closed')) return null;
    c.violation({
      invariant: 'internal',
      message: `a read of ${key} at ${c.replicaId(r)} failed: ${(e as Error).message}`,
      keys: [key],
      replicas: [r],
    });
    return null;
  }
  if (!cap.seen) {
    c.violation({ invariant: 'internal', message: `a read of ${key} was not captured`, keys: [key], replicas: [r] });
    return view;
  }
  const result: ReadView | null =
    view === null
      ? null
      : {
          valueText: JSON.stringify(view.value),
          origin: view.origin,
          version: view.version,
          conflicts: view.conflicts.length,
        };
  c.history.reads.push({
    replica: r,
    collection: d.collection,
    id: d.id,
    key,
    atMs: c.nowMs(),
    issueSeq,
    result,
    seen: cap.state,
    final,
  });
  c.stats.reads++;
  if (!final) {
    const shown =
      result === null
        ? 'null'
        : `${result.valueText} from ${result.origin}${result.conflicts > 0 ? ` +${result.conflicts}` : ''}`;
    c.traceOp(`${c.replicaId(r)} get ${key} -> ${shown}`, [key], [r]);
  }
  return view;
}
