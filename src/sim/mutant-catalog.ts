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
  compareForWinner,
  contextToken,
  decodeRecord,
  dotToken,
  encodeRecord,
  fromUtf8,
  hlcToIso,
  latestHlc,
} from '../core/index.js';
import type { JsonValue, Sibling } from '../core/index.js';
import type { DocView, OutgoingBatch, Replica } from '../replication/index.js';
import type { Invariant } from './checker.js';
import { chance } from './prng.js';
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
      if (firsts.length > 0) await applyRemote(firsts, {});
      return applyRemote(changes, options);
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
