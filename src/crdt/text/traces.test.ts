import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { TextDoc, type TextChange } from './index.js';

type Patch = [number, number, string];
interface Trace {
  endContent: string;
  txns: { patches: Patch[] }[];
}

const traceDir = fileURLToPath(new URL('../../../test/fixtures/traces/', import.meta.url));
const load = (name: string): Trace =>
  JSON.parse(gunzipSync(readFileSync(`${traceDir}${name}.json.gz`)).toString()) as Trace;

function replay(doc: TextDoc, txns: readonly { patches: Patch[] }[], clamp = false): void {
  for (const txn of txns) {
    for (const [p, d, ins] of txn.patches) {
      const pos = clamp ? Math.min(p, doc.length) : p;
      const del = clamp ? Math.min(d, doc.length - pos) : d;
      if (del > 0) doc.delete(pos, del);
      if (ins.length > 0) doc.insert(pos, ins);
    }
  }
}

function patch(text: string, changes: readonly TextChange[]): string {
  for (const c of changes) text = text.slice(0, c.pos) + c.inserted + text.slice(c.pos + c.deleted);
  return text;
}

describe.each(['automerge-paper', 'seph-blog1'])('the %s editing trace', (name) => {
  const trace = load(name);

  it('replays to exactly its end content, and survives encode, decode and merge into an empty doc', () => {
    const doc = new TextDoc('author');
    replay(doc, trace.txns);
    expect(doc.toString()).toBe(trace.endContent);
    const bytes = doc.encode();
    const loaded = TextDoc.decode(bytes, 'reader');
    expect(loaded.toString()).toBe(trace.endContent);
    expect(loaded.encode()).toEqual(bytes);
    const empty = new TextDoc('other');
    expect(empty.applyChanges(bytes)).toEqual([{ pos: 0, deleted: 0, inserted: trace.endContent }]);
    // The whole history as a delta, integrated op by op, gives the same document.
    const merged = new TextDoc('third');
    merged.insert(0, '\u0001');
    const changes = merged.applyChanges(doc.encodeSince(new Map([['nobody', 1]])));
    expect(patch('\u0001', changes)).toBe(merged.toString());
    merged.delete(merged.toString().indexOf('\u0001'), 1);
    expect(merged.toString()).toBe(trace.endContent);
  });

  it('split between two replicas typing concurrently and exchanging deltas now and then, converges', () => {
    const q = Math.floor(trace.txns.length / 4);
    const a = new TextDoc('a');
    const b = new TextDoc('b');
    const partA = trace.txns.slice(0, q);
    const partB = trace.txns.slice(q, 2 * q);
    const step = 2000;
    for (let i = 0; i < q; i += step) {
      replay(a, partA.slice(i, i + step), true);
      replay(b, partB.slice(i, i + step), true);
      if ((i / step) % 3 === 2) {
        const textA = a.toString();
        const textB = b.toString();
        const va = a.version();
        const ca = a.applyChanges(b.encodeSince(va));
        const cb = b.applyChanges(a.encodeSince(b.version()));
        expect(patch(textA, ca)).toBe(a.toString());
        expect(patch(textB, cb)).toBe(b.toString());
        expect(a.toString()).toBe(b.toString());
      }
    }
    a.applyChanges(b.encodeSince(a.version()));
    b.applyChanges(a.encodeSince(b.version()));
    expect(a.toString()).toBe(b.toString());
    expect([...a.version()].sort()).toEqual([...b.version()].sort());
    const copy = TextDoc.decode(a.encode(), 'c');
    expect(copy.toString()).toBe(b.toString());
  });
});
