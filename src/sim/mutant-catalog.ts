/**
 * Deliberate bugs, to show the checker catches what it claims to (mutation testing of the
 * simulator itself). None touches src/core or src/replication: each is built here, at a
 * seam the simulator controls, which production code never reaches:
 *   storage     a SimStorage hook rewrites rows or reorders a checkpoint (sim-storage.ts);
 *   instance    a replica object's method is wrapped (own property over the prototype's),
 *               the way a buggy build of that method would behave.
 * Each entry says which guarantee should catch it; `huntMutant` runs seeds until one does.
 */
import {
  CausalContext,
  EMPTY_RECORD,
  compareForWinner,
  contextToken,
  decodeRecord,
  dotToken,
  encodeRecord,
  fromUtf8,
  hlcToIso,
  isTextState,
  latestHlc,
  textEntriesContext,
  vvCovers,
} from '../core/index.js';
import type { JsonValue, Sibling } from '../core/index.js';
import type { DocRow } from '../storage/index.js';
import type { DocView, OutgoingBatch, Replica } from '../replication/index.js';
import type { CommitHook } from '../replication/commit-hooks.js';
import type { ConflictEntry } from '../replication/replica.js';
import type { Invariant } from './checker.js';
import { countTotals } from './kind-model.js';
import { chance } from './prng.js';
import { mergeMaxW } from './workload.js';
import { runSimulation } from './simulator.js';
import type { MutantSpec, SimOptions, SimResult } from './simulator.js';

export interface MutantEntry {
  readonly spec: MutantSpec;
  readonly description: string;
  /** The seam it uses, for the report. */
  readonly seam: string;
  /** Guarantees expected to catch it. */
  readonly expect: readonly Invariant[];
  /** Run options that give the bug room to show (the rest comes from the seed). */
  readonly options: Partial<Omit<SimOptions, 'seed'>>;
}

/** (a) A join that drops a sibling: a remote apply stores the state minus its first sibling. */
const dropSibling: MutantSpec = {
  name: 'drop-sibling',
  storageHooks: (ctx) => ({
    mapPut(row, remote) {
      if (!remote) return row;
      const state = decodeRecord(row.state.subarray(1));
      if (state.siblings.length < 2 || !chance(ctx.rng, 0.5)) return row;
      const encoded = encodeRecord({ siblings: state.siblings.slice(1), context: state.context });
      const bytes = new Uint8Array(encoded.length + 1);
      bytes[0] = row.state[0] ?? 0;
      bytes.set(encoded, 1);
      return { ...row, state: bytes };
    },
  }),
};

/**
 * (b) A checkpoint stored before its batch is applied: the checkpoint commits in a
 * transaction of its own, then the process dies before the batch's transaction commits.
 */
const earlyCheckpoint: MutantSpec = {
  name: 'early-checkpoint',
  storageHooks: (ctx) => ({
    loseApplyKeepCheckpoint: () => ctx.inSafetyPhase() && chance(ctx.rng, 0.2),
  }),
};

/**
 * (c) Forwarding with the skip rule inverted: the sender leaves out every document of which
 * the receiver holds *any* write, where it should leave out only those it holds entirely.
 */
const blindForwarding: MutantSpec = {
  name: 'blind-forwarding',
  patchReplica(replica) {
    const readBatch = replica.readBatch.bind(replica);
    replica.readBatch = async (afterSeq, maxDocs, peerContext, maxBytes): Promise<OutgoingBatch> => {
      const all = await readBatch(afterSeq, maxDocs, new CausalContext(), maxBytes);
      const changes = all.changes
        .map((c) => ({
          docs: c.docs.filter((d) => {
            const state = decodeRecord(d.state);
            return !state.siblings.some((s) => peerContext.has(s.dot));
          }),
        }))
        .filter((c) => c.docs.length > 0);
      return { ...all, changes };
    };
  },
};

/**
 * (d) A winner rule that differs by replica: odd-numbered replicas show the *earliest*
 * sibling as the winner. The winner is computed inside Replica's read path with no seam of
 * its own, so the mutant wraps the replica's `get` (the client-facing read) and rebuilds the
 * view from the stored state with the wrong rule, as a replica built with it would.
 */
const winnerByReplica: MutantSpec = {
  name: 'winner-by-replica',
  patchReplica(replica, ctx) {
    if (ctx.replica % 2 === 0) return;
    replica.get = async (collection: string, id: string): Promise<DocView | null> => {
      const state = await replica.getState(collection, id);
      if (state === undefined) return null;
      let win: Sibling | undefined;
      for (const s of state.siblings) if (win === undefined || compareForWinner(s, win) < 0) win = s;
      if (state.siblings.some((s) => s.value !== null) && win?.value === null) {
        win = state.siblings.find((s) => s.value !== null);
      }
      if (win === undefined || win.value === null) return null;
      const chosen = win;
      return {
        id,
        value: JSON.parse(fromUtf8(chosen.value as Uint8Array)) as JsonValue,
        version: contextToken(collection, id, state.context, latestHlc(state)),
        origin: chosen.dot.replica,
        time: hlcToIso(chosen.hlc),
        conflicts: state.siblings
          .filter((s) => s !== chosen)
          .map((s) => ({
            value: s.value === null ? null : (JSON.parse(fromUtf8(s.value)) as JsonValue),
            deleted: s.value === null,
            version: dotToken(collection, id, s.dot, s.hlc),
            origin: s.dot.replica,
            time: hlcToIso(s.hlc),
          })),
      };
    };
  },
};

/** (e) An atomic change applied in two transactions: its first document commits alone first. */
const splitBatch: MutantSpec = {
  name: 'split-batch',
  patchReplica(replica: Replica) {
    const applyRemote = replica.applyRemote.bind(replica);
    replica.applyRemote = async (changes, options) => {
      const firsts = changes.filter((c) => c.docs.length > 1).map((c) => ({ docs: c.docs.slice(0, 1) }));
      if (firsts.length > 0) {
        // Stored with the checkpoint it already has, so the commit still reads as a remote apply.
        const peer = options?.peer;
        await applyRemote(firsts, peer === undefined ? {} : { peer, toSeq: await replica.checkpoint(peer) });
      }
      return applyRemote(changes, options);
    };
  },
};

/**
 * (f) A counter that shows the largest replica's total instead of the sum of them all: the
 * replica's `get` wrapped, on every replica, for documents holding counter entries at the root.
 */
const counterMax: MutantSpec = {
  name: 'counter-max',
  patchReplica(replica) {
    const get = replica.get.bind(replica);
    replica.get = async (collection: string, id: string): Promise<DocView | null> => {
      const view = await get(collection, id);
      const state = await replica.getState(collection, id);
      const counts = state?.siblings.filter((s) => s.type === 'count' && (s.path ?? '') === '') ?? [];
      if (view === null || counts.length === 0) return view;
      let max = Number.NEGATIVE_INFINITY;
      for (const s of counts) {
        const { p, n } = countTotals(s);
        max = Math.max(max, p - n);
      }
      return { ...view, value: max };
    };
  },
};

/** Rewrites a row's state (after its flag byte). */
function rewriteRow(row: DocRow, f: (s: ReturnType<typeof decodeRecord>) => ReturnType<typeof decodeRecord>): DocRow {
  const encoded = encodeRecord(f(decodeRecord(row.state.subarray(1))));
  const bytes = new Uint8Array(encoded.length + 1);
  bytes[0] = row.state[0] ?? 0;
  bytes.set(encoded, 1);
  return { ...row, state: bytes };
}

/**
 * (g) A set where a remove wins over a concurrent add: once a replica removed an element
 * from a set document, adds of it that it had not seen are dropped when they arrive. The
 * replica remembers its removes for its lifetime (a storage hook watching its local commits).
 */
const removeWins: MutantSpec = {
  name: 'remove-wins',
  storageHooks() {
    const removed = new Set<string>();
    const elementKey = (row: DocRow, s: Sibling): string =>
      `${row.collection}/${row.id}|${s.path ?? ''}|${fromUtf8(s.value as Uint8Array)}`;
    return {
      mapPut(row, remote, prevBytes) {
        const prev = prevBytes === undefined ? EMPTY_RECORD : decodeRecord(prevBytes);
        const state = decodeRecord(row.state.subarray(1));
        if (!remote) {
          for (const s of prev.siblings) {
            if (s.type !== 'element') continue;
            const k = elementKey(row, s);
            if (!state.siblings.some((x) => x.type === 'element' && elementKey(row, x) === k)) removed.add(k);
          }
          return row;
        }
        const lost = (s: Sibling): boolean =>
          s.type === 'element' && removed.has(elementKey(row, s)) && !vvCovers(prev.context, s.dot);
        if (!state.siblings.some(lost)) return row;
        return rewriteRow(row, (st) => ({ siblings: st.siblings.filter((s) => !lost(s)), context: st.context }));
      },
    };
  },
};

/**
 * (h) A merge resolution written back by every replica that receives siblings, not only by
 * their one resolver: concurrent resolutions of one conflict. Built outside the replica (a
 * change listener writing the merge with the version it read), as a replica built with that
 * rule would.
 */
const mergeEverywhere: MutantSpec = {
  name: 'merge-everywhere',
  patchReplica(replica, ctx) {
    replica.subscribe((e) => {
      // Until the heal: the storm such resolutions start would otherwise only end at the heal's bound.
      if (e.origin !== 'remote' || e.collection !== 'scores' || !ctx.inSafetyPhase()) return;
      void (async () => {
        try {
          const state = await replica.getState(e.collection, e.id);
          if (state === undefined) return;
          const live = state.siblings
            .filter((s) => s.value !== null)
            .map((s) => JSON.parse(fromUtf8(s.value as Uint8Array)) as JsonValue);
          if (live.length < 2) return;
          const version = contextToken(e.collection, e.id, state.context, latestHlc(state));
          await replica.write([{ type: 'put', collection: e.collection, id: e.id, value: mergeMaxW(live), version }]);
        } catch {
          // refused (a newer change came in) or crashed: as a background job would be
        }
      })();
    });
  },
};

/**
 * (i) A sender that ships a text document's newest change alone, as if the peer had every
 * earlier one: the changes it lacks besides are never sent (unless the document changes again
 * and its row comes up in the feed once more).
 */
const textNewestOnly: MutantSpec = {
  name: 'text-newest-only',
  patchReplica(replica) {
    const readBatch = replica.readBatch.bind(replica);
    replica.readBatch = async (afterSeq, maxDocs, peerContext, maxBytes): Promise<OutgoingBatch> => {
      const batch = await readBatch(afterSeq, maxDocs, peerContext, maxBytes);
      const changes = batch.changes.map((c) => ({
        docs: c.docs.map((d) => {
          const state = decodeRecord(d.state);
          if (!isTextState(state) || state.siblings.length < 2) return d;
          const newest = state.siblings.reduce((a, b) => (b.hlc.ms > a.hlc.ms ? b : a));
          return { ...d, state: encodeRecord({ siblings: [newest], context: textEntriesContext([newest]) }) };
        }),
      }));
      return { ...batch, changes };
    };
  },
};

/**
 * (j) An open text handle deaf to remote changes: the replica stores them but the handle's
 * document never applies them (the replica's hand-off to its open documents is cut).
 */
const textDeafHandle: MutantSpec = {
  name: 'text-deaf-handle',
  patchReplica(replica) {
    const texts = (replica as unknown as { texts: { stored: (...a: unknown[]) => void } }).texts;
    texts.stored = () => undefined;
  },
};

/**
 * (k) A sequence whose leader never persists the last number it handed out (the meta key
 * `sequence:<name>` of src/replication/sequences.ts): after a crash the leader starts again
 * from the blocks it was granted and hands out numbers it already gave.
 */
const sequencePositionLost: MutantSpec = {
  name: 'sequence-position-lost',
  storageHooks: () => ({
    mapMeta: (key, value) => (key.startsWith('sequence:') ? undefined : value),
  }),
};

/**
 * (l) Trigger events captured outside the commit's transaction, and lost when that second step
 * does not happen (the process dies between the two): a third of the documents a commit records
 * never reach the outbox (meta `tq/<trigger>/...` of src/replication/triggers.ts), though their
 * change is stored. Built by handing the triggers' commit hook only the rest of the changes.
 */
const triggerOutboxLost: MutantSpec = {
  name: 'trigger-outbox-lost',
  patchReplica(replica, ctx) {
    const hook = (replica as unknown as { triggers: { hook: CommitHook } }).triggers.hook;
    const capture = hook.beforeCommit?.bind(hook);
    if (capture === undefined) return;
    hook.beforeCommit = (tx, changes) =>
      capture(
        tx,
        changes.filter((c) => c.collection.startsWith('_') || !chance(ctx.rng, 0.33)),
      );
  },
};

/**
 * (m) A unique-field winner that depends on the replica: odd-numbered replicas let the
 * *greatest* document id keep a shared value, where every replica must pick the least. The
 * winner is computed inside the replica's constraint index with no seam of its own, so the
 * mutant wraps `conflicts()` (where the entries are shown) and regroups each page's unique
 * entries with the wrong rule, as a replica built with it would.
 */
const uniqueLocalWinner: MutantSpec = {
  name: 'unique-local-winner',
  patchReplica(replica, ctx) {
    if (ctx.replica % 2 === 0) return;
    const conflicts = replica.conflicts.bind(replica);
    replica.conflicts = async (options) => {
      const page = await conflicts(options);
      const groups = new Map<string, ConflictEntry[]>();
      for (const e of page.results) {
        if (e.kind !== 'unique' || e.constraint === undefined || !('winner' in e.constraint)) continue;
        const k = JSON.stringify([e.collection, e.constraint.field, e.constraint.value, e.constraint.winner]);
        groups.set(k, [...(groups.get(k) ?? []), e]);
      }
      if (groups.size === 0) return page;
      const results = page.results.filter((e) => e.kind !== 'unique');
      for (const flagged of groups.values()) {
        const first = flagged[0] as ConflictEntry;
        const c = first.constraint as { field: string; value: JsonValue; winner: string };
        const ids = [c.winner, ...flagged.map((e) => e.id)];
        const winner = ids.reduce((a, b) => (b > a ? b : a));
        for (const e of flagged) {
          if (e.id !== winner) results.push({ ...e, constraint: { ...c, winner } });
        }
        // The rightful winner is flagged in its place, shown as get() shows it.
        const view = await replica.get(first.collection, c.winner);
        results.push({
          seq: first.seq,
          collection: first.collection,
          id: c.winner,
          kind: 'unique',
          constraint: { ...c, winner },
          value: view?.value ?? null,
          version: view?.version ?? first.version,
          conflicts: view?.conflicts ?? [],
        });
      }
      return { ...page, results };
    };
  },
};

export const MUTANTS: readonly MutantEntry[] = [
  {
    spec: dropSibling,
    description: '(a) a join that drops a sibling',
    seam: 'storage: rows of remote applies lose their first sibling',
    expect: ['G1', 'G3'],
    options: {},
  },
  {
    spec: earlyCheckpoint,
    description: '(b) a checkpoint stored before the batch is applied, then a crash',
    seam: 'storage: the checkpoint commits alone, the batch transaction is lost, the replica crashes',
    expect: ['G1', 'G2'],
    options: { topology: 'line', faults: ['cut', 'skew'] },
  },
  {
    spec: blindForwarding,
    description: '(c) forwarding that skips documents the receiver does not have',
    seam: 'instance: readBatch skips a document when the receiver holds any of its writes',
    expect: ['G1', 'G2'],
    options: {},
  },
  {
    spec: winnerByReplica,
    description: '(d) a winner rule that differs by replica',
    seam: 'instance: get() on odd replicas shows the earliest sibling',
    expect: ['G3'],
    options: { faults: ['partition', 'cut'] },
  },
  {
    spec: splitBatch,
    description: '(e) an atomic change applied in two transactions',
    seam: 'instance: applyRemote commits the first document of each multi-document change alone',
    expect: ['G4'],
    options: {},
  },
  {
    spec: counterMax,
    description: '(f) a counter that shows the largest replica total, not the sum',
    seam: 'instance: get() of a counter document shows the max of the per-replica totals',
    expect: ['G3'],
    options: { faults: ['partition', 'cut'] },
  },
  {
    spec: removeWins,
    description: '(g) a set where a remove beats a concurrent add',
    seam: 'storage: remote applies drop unseen adds of elements the replica removed',
    expect: ['G1', 'G3'],
    // Sets only: in the 'full' workload the features take a quarter of a short run's operations,
    // and over seeds 1-25 of 60 operations too few set writes were left to meet a remove.
    options: { faults: ['partition', 'cut'], keys: 2, workload: 'all' },
  },
  {
    spec: mergeEverywhere,
    description: '(h) a merge resolution written back by every replica, not only one',
    seam: 'instance: an onConflict listener writes the merge at every replica that sees a remote conflict',
    expect: ['G3', 'G5'],
    options: { faults: ['partition', 'cut'], keys: 2 },
  },
  {
    spec: textNewestOnly,
    description: "(i) a sender that ships a text document's newest change alone",
    seam: 'instance: readBatch keeps only the latest entry of each text document it sends',
    expect: ['G1', 'G5'],
    options: {},
  },
  {
    spec: textDeafHandle,
    description: '(j) an open text handle that never applies remote changes',
    seam: "instance: the replica's hand-off of committed text states to open documents does nothing",
    expect: ['G3'],
    options: {},
  },
  {
    spec: sequencePositionLost,
    description: '(k) a sequence leader that never persists the last number it handed out',
    seam: 'storage: puts of the meta key sequence:<name> are dropped, so a restarted leader reuses its blocks',
    // The sequence feature reports a number handed out twice as 'internal'.
    expect: ['internal'],
    // Few replicas and many operations: each leader takes numbers before and after its crashes.
    options: { faults: ['crash'], replicas: 3, ops: 200 },
  },
  {
    spec: triggerOutboxLost,
    description: '(l) trigger events captured outside the commit and sometimes lost',
    seam: "instance: the triggers' commit hook is not given a third of each commit's documents, so their events never reach the outbox",
    expect: ['G1'],
    options: {},
  },
  {
    spec: uniqueLocalWinner,
    description: '(m) a unique-field winner that depends on the replica',
    seam: 'instance: conflicts() on odd replicas lets the greatest id keep a shared unique value',
    expect: ['G3'],
    // Shows where a duplicate email outlives the run: the constraint workload's simultaneous
    // sign-ups at two leaders leave one in most runs (21 of seeds 1-25 with these options).
    options: { faults: ['partition', 'cut'], replicas: 4, ops: 120 },
  },
];

export function findMutant(name: string): MutantEntry | undefined {
  return MUTANTS.find((m) => m.spec.name === name);
}

export interface HuntResult {
  readonly mutant: MutantEntry;
  readonly detected: boolean;
  /** The first seed on which the mutant was caught. */
  readonly result: SimResult | undefined;
  readonly invariants: readonly Invariant[];
  readonly runs: number;
  /** Seeds where the unmutated code failed too, so they proved nothing about the mutant. */
  readonly confounded: readonly number[];
}

/**
 * Runs the mutant over `seeds` until the checker reports a violation on a seed that the
 * unmutated code passes: only then is the violation the mutant's doing.
 */
export async function huntMutant(
  mutant: MutantEntry,
  seeds: readonly number[],
  base: Partial<Omit<SimOptions, 'seed'>> = {},
): Promise<HuntResult> {
  let runs = 0;
  const confounded: number[] = [];
  for (const seed of seeds) {
    runs++;
    const options: SimOptions = { ...base, ...mutant.options, seed };
    const result = await runSimulation(
      { ...options, mutant: mutant.spec.name },
      { mutant: mutant.spec, keepTrace: false },
    );
    if (result.violations.length === 0) continue;
    runs++;
    const baseline = await runSimulation(options, { keepTrace: false });
    if (baseline.violations.length > 0) {
      confounded.push(seed);
      continue;
    }
    const invariants = [...new Set(result.violations.map((v) => v.invariant))];
    return { mutant, detected: true, result, invariants, runs, confounded };
  }
  return { mutant, detected: false, result: undefined, invariants: [], runs, confounded };
}
