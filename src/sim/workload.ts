/**
 * Client workloads, against random live replicas.
 *   records   puts with and without version tokens (read at the same replica or at another),
 *             sibling-version writes, deletes, create-only puts, atomic batches of 2-4
 *             documents and reads. Every value written is unique (`{"w": n}`), so the
 *             checker can tell each write apart wherever it ends up.
 *   kinds     (the 'mixed' and 'all' workloads add them to the records) patches of map, counter and set
 *             documents (set and remove nested fields, increment a counter field, add to and
 *             remove from a set field; increments up and down; set adds and removes),
 *             whole-document puts of maps, deletes, batches mixing every kind, reads; and
 *             records under a merge policy, whose conflicts the replicas resolve themselves.
 * Each write's commit and each read's snapshot are captured at the storage seam, so the
 * history records exactly what was acknowledged and what was seen.
 */
import { EMPTY_RECORD, decodeRecord, dotToString, fromUtf8, parseToken, vvCovers } from '../core/index.js';
import type { JsonValue, Policy, RecordState } from '../core/index.js';
import type { FieldConfig } from '../crdt/index.js';
import type { DocView, MergeFunction, Replica, WriteOp } from '../replication/index.js';
import { isDbError } from '../shared/errors.js';
import type { AnyWrite, Basis, History, KindWriteRecord, ReadView, Violation, WriteRecord } from './checker.js';
import { canonicalText, localEffectProblem } from './kind-model.js';
import type { CollectionKind, CollectionModel, KindAction, ModelOp } from './kind-model.js';
import type { SeededRandom } from './prng.js';
import { between, chance, shuffled, weighted } from './prng.js';
import type { SimStorage } from './sim-storage.js';
import { docKey } from './sim-storage.js';
import { TEXT_OP_SHARE, runTextOp } from './text-workload.js';
import type { TextHistory } from './text-workload.js';
import type { FeatureContext, SimFeature } from './features.js';

/**
 * 'full' (the default): everything 'all' has, plus the features of feature-registry.ts (time
 * ids and sequences, unique fields and references, triggers); 'all': records, every kind and
 * text (text-workload.ts); 'mixed': records and every kind, as before text; 'records': the
 * record workload alone, as before kinds. Older regression seeds name the mix they were found
 * with, so they replay the same runs.
 */
export type WorkloadMix = 'full' | 'all' | 'mixed' | 'records';
export const WORKLOAD_MIXES: readonly WorkloadMix[] = ['full', 'all', 'mixed', 'records'];

/** The share of client operations that go to the features in the 'full' workload. */
const FEATURE_OP_SHARE = 0.25;

export interface CollectionSpec {
  readonly name: string;
  readonly kind: CollectionKind;
  readonly policy: Policy;
  /** The merge function's name, with policy 'merge'. */
  readonly merge?: string;
  readonly fields?: Record<string, FieldConfig>;
}

/** The record collections of every run: two kept, one last-writer-wins. */
export const RECORD_COLLECTIONS: readonly CollectionSpec[] = [
  { name: 'docs', kind: 'record', policy: 'keep' },
  { name: 'notes', kind: 'record', policy: 'keep' },
  { name: 'presence', kind: 'record', policy: 'lww' },
];

/** The collections the mixed workload adds: a merge-policy record collection, a map, a counter and a set. */
export const KIND_COLLECTIONS: readonly CollectionSpec[] = [
  { name: 'scores', kind: 'record', policy: 'merge', merge: 'max-w' },
  {
    name: 'profiles',
    kind: 'map',
    policy: 'keep',
    fields: { '/status': { policy: 'lww' }, '/visits': { type: 'counter' }, '/tags': { type: 'set' } },
  },
  { name: 'tallies', kind: 'counter', policy: 'keep' },
  { name: 'labels', kind: 'set', policy: 'keep' },
];

/** Every collection a replica is opened with (the records-only workload writes to the first three). */
export const COLLECTIONS: readonly CollectionSpec[] = [...RECORD_COLLECTIONS, ...KIND_COLLECTIONS];

/**
 * The merge function of `scores`, registered at every replica: the highest `w`, with `of` the
 * sorted union of every `w` merged so far. A function of the set of values (order and
 * repeats make no difference), so every replica computes the same resolution.
 */
export function mergeMaxW(values: readonly JsonValue[]): JsonValue {
  let w = Number.NEGATIVE_INFINITY;
  const of = new Set<number>();
  for (const v of values) {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) continue;
    if (typeof v.w === 'number') w = Math.max(w, v.w);
    const merged = v.of;
    if (Array.isArray(merged)) for (const x of merged) if (typeof x === 'number') of.add(x);
    if (typeof v.w === 'number') of.add(v.w);
  }
  return { w: Number.isFinite(w) ? w : 0, of: [...of].sort((a, b) => a - b) };
}

export const MERGE_FUNCTIONS: Record<string, MergeFunction> = { 'max-w': (values) => mergeMaxW(values) };

/** What the checker needs to know of a collection (kind-model.ts). */
export function collectionModel(spec: CollectionSpec): CollectionModel {
  const fields = spec.fields ?? {};
  const paths = (type: 'counter' | 'set'): string[] =>
    spec.kind === type ? [''] : Object.keys(fields).filter((p) => fields[p]?.type === type);
  return {
    kind: spec.kind,
    // As replica.ts gives it to joins: per path once a map has field settings.
    policyAt: spec.fields === undefined ? spec.policy : (path) => fields[path]?.policy ?? spec.policy,
    mergeAt(path) {
      const f = fields[path];
      const name =
        f?.policy !== undefined
          ? f.policy === 'merge'
            ? f.merge
            : undefined
          : spec.policy === 'merge' && (path === '' || spec.kind === 'map')
            ? spec.merge
            : undefined;
      const fn = name === undefined ? undefined : MERGE_FUNCTIONS[name];
      return fn === undefined ? undefined : (values) => fn(values, { collection: spec.name, id: '', path });
    },
    // For a record collection, path '' stands for its documents' siblings.
    lwwAt: (path) => (spec.kind !== 'record' || path === '') && (fields[path]?.policy ?? spec.policy) === 'lww',
    counterFields: paths('counter'),
    setFields: paths('set'),
  };
}

export function specOf(collection: string): CollectionSpec | undefined {
  return COLLECTIONS.find((c) => c.name === collection);
}

/** Outcomes a client must expect and handle: they change nothing. */
export const EXPECTED_ERRORS = ['conflict', 'not_found', 'precondition_failed', 'clock_skew'] as const;

export interface WorkloadStats {
  ops: number;
  /** Acknowledged document writes, of every kind. */
  writes: number;
  /** Of which to map, counter and set documents. */
  kindWrites: number;
  /** Text edits acknowledged (each committed at once). */
  textEdits: number;
  /** Merge resolutions the replicas wrote back themselves. */
  writeBacks: number;
  /** Acknowledged client writes per collection. */
  writesByCollection: Record<string, number>;
  batches: number;
  reads: number;
  tokenWrites: number;
  expectedErrors: Record<string, number>;
}

export function emptyWorkloadStats(): WorkloadStats {
  return {
    ops: 0,
    writes: 0,
    kindWrites: 0,
    textEdits: 0,
    writeBacks: 0,
    writesByCollection: {},
    batches: 0,
    reads: 0,
    tokenWrites: 0,
    expectedErrors: {},
  };
}

/** What the workload needs of the cluster. */
export interface ClientCluster {
  readonly history: History;
  readonly rng: SeededRandom;
  readonly keys: number;
  readonly workload: WorkloadMix;
  readonly stats: WorkloadStats;
  readonly texts: TextHistory;
  /** The features of the 'full' workload (empty for the other mixes). */
  readonly features: readonly SimFeature[];
  /** What a feature's operation is given. */
  featureContext(): FeatureContext;
  modelOf(collection: string): CollectionModel;
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
  /** For a map, counter or set document: what the write does, for the checker. */
  readonly action?: KindAction;
}

/** The record collections the record operations write to. */
const MIXED_RECORD_COLLECTIONS: readonly CollectionSpec[] = COLLECTIONS.filter((c) => c.kind === 'record');
/** The collections of map, counter and set documents. */
const KIND_DOC_COLLECTIONS: readonly CollectionSpec[] = COLLECTIONS.filter((c) => c.kind !== 'record');

/** The share of client operations that go to map, counter and set documents in the mixed workload. */
const KIND_OP_SHARE = 0.45;

type KindOpKind = 'patch' | 'put' | 'delete' | 'batch' | 'read';

const KIND_OP_WEIGHTS: readonly (readonly [KindOpKind, number])[] = [
  ['patch', 45],
  ['put', 10],
  ['delete', 5],
  ['batch', 15],
  ['read', 25],
];

function docIn(c: ClientCluster, spec: CollectionSpec): Doc {
  // A few hot documents make conflicts likely.
  const k = chance(c.rng, 0.5) ? c.rng.int(Math.min(2, c.keys)) : c.rng.int(c.keys);
  return { collection: spec.name, id: `k${k}` };
}

function randomDoc(c: ClientCluster): Doc {
  return docIn(c, c.rng.pick(c.workload === 'records' ? RECORD_COLLECTIONS : MIXED_RECORD_COLLECTIONS));
}

/** Runs one random client operation at a random live replica. */
export async function runClientOp(c: ClientCluster): Promise<void> {
  const up = c.upReplicas();
  if (up.length === 0) return;
  c.stats.ops++;
  const r = c.rng.pick(up);
  if (c.features.length > 0 && chance(c.rng, FEATURE_OP_SHARE)) {
    const feature = c.rng.pick(c.features);
    const replica = c.handle(r)?.replica;
    if (replica !== undefined) await feature.op(r, replica, c.featureContext());
    return;
  }
  if ((c.workload === 'all' || c.workload === 'full') && chance(c.rng, TEXT_OP_SHARE)) {
    await runTextOp(c, c.texts, r);
    return;
  }
  if (c.workload !== 'records' && chance(c.rng, KIND_OP_SHARE)) {
    await runKindOp(c, r);
    return;
  }
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

/** One operation on map, counter and set documents (or a batch mixing them with records). */
async function runKindOp(c: ClientCluster, r: number): Promise<void> {
  const what = weighted(c.rng, KIND_OP_WEIGHTS);
  if (what === 'read') {
    await clientRead(c, r, docIn(c, c.rng.pick(KIND_DOC_COLLECTIONS)), false);
    return;
  }
  const planned: PlannedOp[] = [];
  if (what === 'batch') {
    const want = between(c.rng, 2, 3);
    const seen = new Set<string>();
    for (let tries = 0; planned.length < want && tries < 20; tries++) {
      const spec = c.rng.pick(COLLECTIONS);
      const d = docIn(c, spec);
      const k = docKey(d.collection, d.id);
      if (seen.has(k)) continue;
      seen.add(k);
      if (spec.kind === 'record') {
        const opKind = weighted(c.rng, [
          ['put', 5],
          ['put-token', 3],
          ['delete', 1],
        ] as const);
        planned.push(await planOp(c, r, d, opKind));
        continue;
      }
      const action = weighted(c.rng, [
        ['patch', 8],
        ['put', spec.kind === 'map' ? 2 : 0],
        ['delete', 1],
      ] as const);
      planned.push(await planKindOp(c, r, d, spec, action));
    }
  } else {
    const spec = what === 'put' ? (specOf('profiles') as CollectionSpec) : c.rng.pick(KIND_DOC_COLLECTIONS);
    planned.push(await planKindOp(c, r, docIn(c, spec), spec, what));
  }
  await clientWrite(c, r, planned);
}

/** Set elements: strings, a number, and an object written with its keys in either order (one element). */
const ELEMENTS: readonly (() => JsonValue)[] = [
  () => 'a',
  () => 'b',
  () => 'c',
  () => 3,
  () => ({ k: 1, j: 2 }),
  () => ({ j: 2, k: 1 }),
];
const TAGS = ['a', 'b', 'c'] as const;

/** 1-3 operations on distinct fields of a `profiles` map; values carry the write number. */
function mapPatch(c: ClientCluster, n: number): ModelOp[] {
  const groups = shuffled(c.rng, ['title', 'status', 'meta', 'visits', 'tags'] as const).slice(0, between(c.rng, 1, 3));
  return groups.map((g): ModelOp => {
    switch (g) {
      case 'title':
        return chance(c.rng, 0.85) ? { op: 'set', path: '/title', value: `t${n}` } : { op: 'remove', path: '/title' };
      case 'status':
        return chance(c.rng, 0.85) ? { op: 'set', path: '/status', value: `s${n}` } : { op: 'remove', path: '/status' };
      case 'meta':
        switch (
          weighted(c.rng, [
            ['a', 35],
            ['b', 25],
            ['object', 15],
            ['empty', 10],
            ['remove-a', 8],
            ['remove', 7],
          ] as const)
        ) {
          case 'a':
            return { op: 'set', path: '/meta/a', value: n };
          case 'b':
            return { op: 'set', path: '/meta/b', value: n };
          case 'object':
            return { op: 'set', path: '/meta', value: { a: n, b: -n } };
          case 'empty':
            return { op: 'set', path: '/meta', value: {} };
          case 'remove-a':
            return { op: 'remove', path: '/meta/a' };
          default:
            return { op: 'remove', path: '/meta' };
        }
      case 'visits':
        return chance(c.rng, 0.9)
          ? { op: 'increment', path: '/visits', by: between(c.rng, -3, 5) }
          : { op: 'remove', path: '/visits' };
      case 'tags': {
        const how = weighted(c.rng, [
          ['add-to-set', 55],
          ['remove-from-set', 35],
          ['remove', 10],
        ] as const);
        if (how === 'remove') return { op: 'remove', path: '/tags' };
        return { op: how, path: '/tags', value: c.rng.pick(TAGS) };
      }
    }
  });
}

/** A whole `profiles` document: some fields left out (a put removes them), a counter value, a sorted set. */
function mapValue(c: ClientCluster, n: number): JsonValue {
  const v: Record<string, JsonValue> = {};
  if (chance(c.rng, 0.8)) v.title = `t${n}`;
  if (chance(c.rng, 0.6)) v.status = `s${n}`;
  if (chance(c.rng, 0.7)) v.meta = chance(c.rng, 0.25) ? {} : { a: n, b: -n };
  if (chance(c.rng, 0.7)) v.visits = between(c.rng, 0, 20);
  if (chance(c.rng, 0.6)) v.tags = TAGS.filter(() => chance(c.rng, 0.5));
  return v;
}

async function planKindOp(
  c: ClientCluster,
  r: number,
  d: Doc,
  spec: CollectionSpec,
  action: 'patch' | 'put' | 'delete',
): Promise<PlannedOp> {
  const n = c.history.writeNumber();
  const { collection, id } = d;
  let op: WriteOp;
  let act: KindAction;
  if (action === 'delete') {
    op = { type: 'delete', collection, id };
    act = { type: 'delete' };
  } else if (action === 'put' && spec.kind === 'map') {
    const value = mapValue(c, n);
    op = { type: 'put', collection, id, value };
    act = { type: 'put', value };
    if (chance(c.rng, 0.15)) return { op: { ...op, ifAbsent: true }, n, token: 'none', tokenFrom: '', action: act };
  } else {
    let ops: ModelOp[];
    if (spec.kind === 'counter') ops = [{ op: 'increment', path: '', by: between(c.rng, -5, 9) }];
    else if (spec.kind === 'set') {
      const picks = shuffled(c.rng, [0, 1, 2, 3, 4]).slice(0, between(c.rng, 1, 2));
      ops = picks.map((i): ModelOp => {
        // Index 4 is the object element, written with its keys in either order.
        const value = (ELEMENTS[i === 4 && chance(c.rng, 0.5) ? 5 : i] as () => JsonValue)();
        return { op: chance(c.rng, 0.6) ? 'add-to-set' : 'remove-from-set', path: '', value };
      });
    } else ops = mapPatch(c, n);
    op = { type: 'patch', collection, id, ops: ops.map((o) => ({ ...o })) };
    act = { type: 'patch', ops };
  }
  if (!chance(c.rng, 0.2)) return { op, n, token: 'none', tokenFrom: '', action: act };
  // A version read first (maybe at another leader): the write is refused if the document changed since.
  const up = c.upReplicas();
  const reader = chance(c.rng, 0.35) && up.length > 0 ? c.rng.pick(up) : r;
  const view = await clientRead(c, reader, d, false);
  if (view === null) return { op, n, token: 'none', tokenFrom: '', action: act };
  return {
    op: { ...op, version: view.version },
    n,
    token: 'context',
    tokenFrom: c.replicaId(reader),
    action: act,
  };
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

function describeModelOp(o: ModelOp): string {
  const path = o.path === '' ? "''" : o.path;
  switch (o.op) {
    case 'set':
      return `set ${path}=${canonicalText(o.value)}`;
    case 'remove':
      return `rm ${path}`;
    case 'increment':
      return `incr ${path} ${o.by >= 0 ? '+' : ''}${o.by}`;
    case 'add-to-set':
      return `add ${path} ${canonicalText(o.value)}`;
    case 'remove-from-set':
      return `unadd ${path} ${canonicalText(o.value)}`;
  }
}

function describeOp(p: PlannedOp): string {
  const { op, action } = p;
  let what: string;
  if (action === undefined) {
    what = op.type === 'put' ? `${op.ifAbsent === true ? 'create' : 'put'} w=${p.n}` : `del(w=${p.n})`;
  } else if (action.type === 'patch') what = `patch[${action.ops.map(describeModelOp).join(', ')}] (w=${p.n})`;
  else if (action.type === 'put') {
    what = `${op.type === 'put' && op.ifAbsent === true ? 'create' : 'put'} ${canonicalText(action.value)} (w=${p.n})`;
  } else what = `del(w=${p.n})`;
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
  const kindRecords: KindWriteRecord[] = [];
  const all: AnyWrite[] = [];
  for (const p of planned) {
    const { op } = p;
    const key = docKey(op.collection, op.id);
    const put = commit.puts.find((x) => x.key === key);
    if (p.action !== undefined) {
      const model = c.modelOf(op.collection);
      const prev: RecordState = put?.prev === undefined ? EMPTY_RECORD : decodeRecord(put.prev);
      const state = put === undefined ? undefined : decodeRecord(put.state);
      const dot = { replica: name, counter: state?.context.get(name) ?? 0 };
      const problem =
        state === undefined
          ? 'the commit does not store it'
          : localEffectProblem(p.action, prev, state, dot, name, model.setFields, model);
      if (state === undefined || problem !== undefined) {
        c.violation({
          invariant: 'G1',
          message: `${what}: acknowledged, but at ${key} ${problem ?? ''}`,
          keys,
          replicas: [r],
        });
        return;
      }
      if (op.version !== undefined) c.stats.tokenWrites++;
      const w: KindWriteRecord = {
        n: p.n,
        replica: r,
        collection: op.collection,
        id: op.id,
        key,
        action: p.action,
        prev,
        state,
        dot,
        token: p.token === 'none' ? 'none' : 'context',
        batch,
        atMs: c.nowMs(),
        ackSeq,
      };
      kindRecords.push(w);
      all.push(w);
      continue;
    }
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
      origin: 'client',
    });
    all.push(records[records.length - 1] as WriteRecord);
  }
  c.history.writes.push(...records);
  c.history.kindWrites.push(...kindRecords);
  c.stats.writes += all.length;
  c.stats.kindWrites += kindRecords.length;
  for (const w of all) c.stats.writesByCollection[w.collection] = (c.stats.writesByCollection[w.collection] ?? 0) + 1;
  if (batch !== undefined) {
    c.history.batches.push({ id: batch, replica: r, writes: all });
    c.stats.batches++;
  }
  c.traceOp(`${what} -> ${all.map((w) => dotToString(w.dot)).join(',')}`, keys, [r]);
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
          valueText: canonicalText(view.value),
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
