/** Editing traces (josephg/editing-traces format) and their replay through an adapter. */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import type { TextAdapter } from './adapters.js';

/** One edit, applied like `splice` on the text: at `pos` delete `deleted` characters, then insert `inserted`. */
export type Patch = [pos: number, deleted: number, inserted: string];

export interface Trace {
  name: string;
  /** Transactions, each a list of patches applied in order. */
  txns: Patch[][];
  endContent: string;
  /** Number of patches over all transactions. */
  edits: number;
}

export const TRACES = ['automerge-paper', 'seph-blog1'] as const;

export function tracePath(name: string): string {
  return new URL(`../../test/fixtures/traces/${name}.json.gz`, import.meta.url).pathname;
}

/**
 * Loads a trace. With `limit`, keeps only the first `limit` transactions, and computes the
 * expected text by replaying them on a plain string (only sensible for small limits).
 */
export function loadTrace(name: string, limit?: number): Trace {
  const raw = JSON.parse(gunzipSync(readFileSync(tracePath(name))).toString('utf8')) as {
    startContent?: string;
    endContent: string;
    txns: { patches: Patch[] }[];
  };
  if ((raw.startContent ?? '') !== '') throw new Error(`${name}: traces with a start content are not supported`);
  let txns = raw.txns.map((t) => t.patches);
  let endContent = raw.endContent;
  if (limit !== undefined && limit < txns.length) {
    txns = txns.slice(0, limit);
    endContent = replayString(txns);
  }
  return { name, txns, endContent, edits: txns.reduce((n, t) => n + t.length, 0) };
}

/** Reference replay on a plain string: quadratic, for short prefixes only. */
export function replayString(txns: Patch[][]): string {
  let s = '';
  for (const t of txns) for (const [pos, del, ins] of t) s = s.slice(0, pos) + ins + s.slice(pos + del);
  return s;
}

/** Replays transactions into `doc` as local edits. */
export function replay<D>(a: TextAdapter<D>, doc: D, txns: Patch[][]): void {
  for (const t of txns) {
    for (const [pos, del, ins] of t) {
      if (del > 0) a.delete(doc, pos, del);
      if (ins.length > 0) a.insert(doc, pos, ins);
    }
  }
}

/**
 * Replays transactions into `doc`, clamping positions and deletions to the text that `doc`
 * holds (starting from `length` characters): for a replica replaying a stretch of a trace that
 * does not start from the text the trace had there. Returns the length afterwards.
 */
export function replayClamped<D>(a: TextAdapter<D>, doc: D, txns: Patch[][], length: number): number {
  let len = length;
  for (const t of txns) {
    for (const [p, d, ins] of t) {
      const pos = Math.min(p, len);
      const del = Math.min(d, len - pos);
      if (del > 0) a.delete(doc, pos, del);
      if (ins.length > 0) a.insert(doc, pos, ins);
      len += ins.length - del;
    }
  }
  return len;
}
