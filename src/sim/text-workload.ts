/**
 * The text workload: clients type into and delete from text documents at random replicas,
 * through `replica.text()` handles, each edit committed at once (`flush`) with its commit
 * captured like any client write. Every character typed is unique in the run, so the final
 * check can say of each one whether it must, may or must not be in the converged text:
 *
 *   must       typed in an acknowledged commit and deleted by none
 *   must not   deleted in an acknowledged commit, or never typed
 *   may        typed or deleted in a commit whose acknowledgement a crash cut off
 *
 * and that no character appears twice (an operation applied twice would show one twice).
 */
import type { Replica } from '../replication/index.js';
import type { TextHandle } from '../replication/text-docs.js';
import { textOf } from '../replication/text-docs.js';
import { decodeRecord, isTextState } from '../core/index.js';
import { isDbError } from '../shared/errors.js';
import type { Violation } from './checker.js';
import type { SeededRandom } from './prng.js';
import { between, chance } from './prng.js';
import type { SimStorage } from './sim-storage.js';
import { docKey } from './sim-storage.js';

export const TEXT_COLLECTION = 'texts';
/** The share of client operations that edit text in the mixed workload. */
export const TEXT_OP_SHARE = 0.12;
const TEXT_DOCS = 2;
/** Characters typed are taken from here on, one code unit each, never reused. */
const FIRST_CHAR = 0x4e00;

interface CharFate {
  typed: 'yes' | 'maybe';
  deleted: 'no' | 'yes' | 'maybe';
}

export interface TextCluster {
  readonly rng: SeededRandom;
  readonly stats: { textEdits: number };
  upReplicas(): number[];
  handle(replica: number): { replica: Replica; storage: SimStorage } | undefined;
  replicaId(replica: number): string;
  traceOp(text: string, keys: readonly string[], replicas: readonly number[]): void;
  violation(v: Omit<Violation, 'atMs'>): void;
}

/** What the text workload did, for the final check. */
export class TextHistory {
  readonly chars = new Map<string, Map<string, CharFate>>();
  private next = 0;
  edits = 0;
  private readonly handles = new WeakMap<Replica, Map<string, TextHandle>>();

  freshChars(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(FIRST_CHAR + this.next++);
    return s;
  }

  fates(key: string): Map<string, CharFate> {
    let m = this.chars.get(key);
    if (m === undefined) this.chars.set(key, (m = new Map()));
    return m;
  }

  /** The open handles of one replica object (its lifetime), by document id. */
  handlesOf(replica: Replica): ReadonlyMap<string, TextHandle> {
    return this.handles.get(replica) ?? new Map();
  }

  handleFor(replica: Replica, id: string): TextHandle {
    let m = this.handles.get(replica);
    if (m === undefined) this.handles.set(replica, (m = new Map()));
    let h = m.get(id);
    if (h === undefined) m.set(id, (h = replica.text(TEXT_COLLECTION, id)));
    return h;
  }
}

/** One edit (an insert of 1-4 fresh characters or a delete of 1-3) at replica `r`, committed at once. */
export async function runTextOp(c: TextCluster, texts: TextHistory, r: number): Promise<void> {
  const h = c.handle(r);
  if (h === undefined) return;
  const id = `t${c.rng.int(TEXT_DOCS)}`;
  const key = docKey(TEXT_COLLECTION, id);
  const name = c.replicaId(r);
  const t = texts.handleFor(h.replica, id);
  try {
    await t.ready;
  } catch (e) {
    if (c.handle(r)?.replica !== h.replica) return; // crashed while loading
    c.violation({
      invariant: 'internal',
      message: `${name} could not load ${key}: ${String(e)}`,
      keys: [key],
      replicas: [r],
    });
    return;
  }
  if (c.handle(r)?.replica !== h.replica) return;
  const fates = texts.fates(key);
  let touched: string[];
  let what: string;
  if (t.length > 0 && chance(c.rng, 0.3)) {
    const pos = c.rng.int(t.length);
    const len = Math.min(between(c.rng, 1, 3), t.length - pos);
    touched = [...t.toString().slice(pos, pos + len)];
    t.delete(pos, len);
    for (const ch of touched) {
      const f = fates.get(ch) as CharFate;
      if (f.deleted === 'no') f.deleted = 'maybe';
    }
    what = `${name} text ${key} delete ${pos}+${len}`;
  } else {
    const pos = c.rng.int(t.length + 1);
    const s = texts.freshChars(between(c.rng, 1, 4));
    touched = [...s];
    t.insert(pos, s);
    for (const ch of touched) fates.set(ch, { typed: 'maybe', deleted: 'no' });
    what = `${name} text ${key} insert ${pos} ${JSON.stringify(s)}`;
  }
  texts.edits++;
  const cap = h.storage.armWrite();
  let pending: Promise<void>;
  try {
    pending = t.flush();
  } finally {
    h.storage.disarm();
  }
  try {
    await pending;
  } catch (e) {
    const crashed = c.handle(r)?.replica !== h.replica;
    if (crashed && isDbError(e) && (e.code === 'closed' || e.code === 'unavailable')) {
      c.traceOp(`${what} -> ${e.code}`, [key], [r]);
      return;
    }
    c.violation({ invariant: 'internal', message: `${what} failed: ${String(e)}`, keys: [key], replicas: [r] });
    return;
  }
  if (cap.commit === undefined) {
    c.violation({
      invariant: 'internal',
      message: `${what}: acknowledged without a commit`,
      keys: [key],
      replicas: [r],
    });
    return;
  }
  c.stats.textEdits++;
  for (const ch of touched) {
    const f = fates.get(ch) as CharFate;
    if (f.deleted === 'maybe') f.deleted = 'yes';
    else f.typed = 'yes';
  }
  c.traceOp(what, [key], [r]);
}

/** The converged text of every document, checked against what was typed and deleted. */
export function checkTexts(
  texts: TextHistory,
  finals: readonly { index: number; id: string; states: ReadonlyMap<string, Uint8Array> }[],
  handles: readonly { index: number; key: string; text: string }[],
  report: (v: Omit<Violation, 'atMs'>) => void,
): void {
  // What an open handle shows is what its replica stores (every edit was committed).
  for (const h of handles) {
    const f = finals.find((x) => x.index === h.index);
    const bytes = f?.states.get(h.key);
    const state = bytes === undefined ? undefined : decodeRecord(bytes);
    const stored = state !== undefined && isTextState(state) ? textOf(state, f?.id ?? '') : '';
    if (stored !== h.text) {
      report({
        invariant: 'G3',
        message: `${f?.id ?? h.index}'s open handle on ${h.key} shows ${JSON.stringify(h.text)}, its store ${JSON.stringify(stored)}`,
        keys: [h.key],
        replicas: [h.index],
      });
    }
  }
  for (const [key, fates] of texts.chars) {
    const shown = new Map<string, string>();
    for (const f of finals) {
      const bytes = f.states.get(key);
      const state = bytes === undefined ? undefined : decodeRecord(bytes);
      shown.set(f.id, state !== undefined && isTextState(state) ? textOf(state, f.id) : '');
    }
    const distinct = new Set(shown.values());
    if (distinct.size > 1) {
      report({
        invariant: 'G5',
        message: `${key} shows different text at different replicas: ${[...shown].map(([r, s]) => `${r}=${JSON.stringify(s)}`).join(' ')}`,
        keys: [key],
        replicas: finals.map((f) => f.index),
      });
      continue;
    }
    const text = [...distinct][0] ?? '';
    const seen = new Set<string>();
    for (const ch of text) {
      const f = fates.get(ch);
      const problem =
        f === undefined
          ? 'was never typed'
          : seen.has(ch)
            ? 'shows twice'
            : f.deleted === 'yes'
              ? 'was deleted by an acknowledged edit'
              : undefined;
      seen.add(ch);
      if (problem !== undefined) {
        report({
          invariant: 'G1',
          message: `${key}: character U+${ch.charCodeAt(0).toString(16)} ${problem}; text ${JSON.stringify(text)}`,
          keys: [key],
          replicas: finals.map((f) => f.index),
        });
      }
    }
    for (const [ch, f] of fates) {
      if (f.typed === 'yes' && f.deleted === 'no' && !seen.has(ch)) {
        report({
          invariant: 'G1',
          message: `${key}: character U+${ch.charCodeAt(0).toString(16)}, typed in an acknowledged edit and deleted by none, is missing; text ${JSON.stringify(text)}`,
          keys: [key],
          replicas: finals.map((f) => f.index),
        });
      }
    }
  }
}
