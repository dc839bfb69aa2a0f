/**
 * Text documents in the replica (ADR 4): edits coalesced into one change per turn, replicated
 * by bytes and by sessions, subscribers told the changed ranges, only what a peer lacks shipped,
 * the stored history compacted, and bad input refused without changing anything.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { openReplica, memoryConnectionPair } from '../index.js';
import { dbErrorOfPromise } from '../../test/support/errors.js';
import { sync, syncAll } from '../../test/support/sdk-sync.js';
import type { Database, TextChange, TextEvent } from '../index.js';
import { decodeRecord, encodeRecord, encodeTextDelta, isTextState, textEntryInfo } from '../core/index.js';
import { decodeBundle, encodeBundle } from '../replication/bundle.js';
import { CausalContext } from '../core/index.js';

const opened: Database[] = [];

afterEach(async () => {
  for (const db of opened.splice(0)) await db.close();
});

async function open(id: string): Promise<Database> {
  const db = await openReplica({ storage: 'memory', id });
  opened.push(db);
  return db;
}

/** Applies a listener's changes to a copy of the text, as an editor would. */
function applyTo(text: string, changes: readonly TextChange[]): string {
  for (const c of changes) text = text.slice(0, c.pos) + c.inserted + text.slice(c.pos + c.deleted);
  return text;
}

async function textOf(db: Database, id: string): Promise<string> {
  const t = db.text('notes', id);
  await t.ready;
  const s = t.toString();
  await t.close();
  return s;
}

describe('replica.text', () => {
  it('coalesces the edits of one turn into one change and commits them durably', async () => {
    const a = await open('a');
    const t = a.text('notes', 'n1');
    await t.ready;
    const before = a.status().seq;
    for (let i = 0; i < 100; i++) t.insert(i, 'x');
    expect(t.toString()).toBe('x'.repeat(100));
    expect(a.status().seq).toBe(before);
    await t.flush();
    expect(a.status().seq).toBe(before + 1);
    expect((await a.collection('notes').get('n1'))?.value).toBe('x'.repeat(100));
  });

  it('replicates through changesSince and applyChanges, both ways, to equal text', async () => {
    const a = await open('a');
    const b = await open('b');
    const ta = a.text('notes', 'n1');
    await ta.ready;
    ta.insert(0, 'hello world');
    await sync(a, b);
    const tb = b.text('notes', 'n1');
    await tb.ready;
    expect(tb.toString()).toBe('hello world');
    ta.insert(5, ','); // concurrent edits
    tb.insert(11, '!');
    tb.delete(0, 1);
    tb.insert(0, 'H');
    await syncAll([a, b]);
    expect(ta.toString()).toBe('Hello, world!');
    expect(tb.toString()).toBe('Hello, world!');
    expect(a.status().digest).toBe(b.status().digest);
  });

  it('tells subscribers the ranges each change touched, local and remote', async () => {
    const a = await open('a');
    const b = await open('b');
    const ta = a.text('notes', 'n1');
    const tb = b.text('notes', 'n1');
    await Promise.all([ta.ready, tb.ready]);
    let mirror = '';
    const origins: string[] = [];
    tb.subscribe((e: TextEvent) => {
      origins.push(e.origin);
      mirror = applyTo(mirror, e.changes);
    });
    ta.insert(0, 'abcdef');
    ta.delete(1, 2);
    await sync(a, b);
    tb.insert(0, '>');
    ta.insert(4, 'Z');
    await sync(a, b);
    expect(mirror).toBe(tb.toString());
    expect(mirror).toBe('>adefZ');
    expect(origins).toContain('local');
    expect(origins).toContain('remote');
  });

  it('converges under sessions: two replicas typing at once over a live connection', async () => {
    const a = await open('a');
    const b = await open('b');
    const [ca, cb] = memoryConnectionPair();
    a.connect(ca);
    b.connect(cb);
    const ta = a.text('notes', 'live');
    const tb = b.text('notes', 'live');
    await Promise.all([ta.ready, tb.ready]);
    for (let i = 0; i < 50; i++) {
      ta.insert(Math.min(i, ta.length), 'a');
      tb.insert(0, 'b');
      await new Promise((r) => setTimeout(r, 1));
    }
    await ta.flush();
    await tb.flush();
    for (let i = 0; i < 100 && (ta.toString() !== tb.toString() || ta.length < 100); i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(ta.length).toBe(100);
    expect(ta.toString()).toBe(tb.toString());
    expect(ta.toString().replace(/b/g, '')).toBe('a'.repeat(50));
  });

  it('ships a peer only the changes it lacks, and compacts the stored history', async () => {
    const a = await open('a');
    const b = await open('b');
    const t = a.text('notes', 'big');
    await t.ready;
    t.insert(0, 'x'.repeat(20_000));
    await t.flush();
    await sync(a, b);
    for (let i = 0; i < 300; i++) {
      t.insert(i, 'y');
      await t.flush();
    }
    await sync(a, b);
    t.insert(0, 'z');
    await t.flush();
    const bytes = await a.changesSince(b.vector());
    expect(bytes.length).toBeLessThan(500);
    await b.applyChanges(bytes);
    expect(await textOf(b, 'big')).toBe(t.toString());
    const state = decodeRecord(encodeRecord((await stateOf(a, 'big'))!));
    expect(isTextState(state)).toBe(true);
    // 302 changes, held in far fewer entries: snapshots subsume the deltas they contain.
    expect(state.siblings.length).toBeLessThan(300);
    expect(state.siblings.some((s) => textEntryInfo(s).kind === 'snapshot')).toBe(true);
    expect(a.status().digest).toBe(b.status().digest);
  });

  it('refuses JSON writes to a text document, and text on a JSON document', async () => {
    const a = await open('a');
    const t = a.text('notes', 'n1');
    await t.ready;
    t.insert(0, 'text');
    await t.flush();
    const seq = a.status().seq;
    expect((await dbErrorOfPromise(a.collection('notes').put('n1', { x: 1 }))).code).toBe('conflict');
    expect((await dbErrorOfPromise(a.collection('notes').delete('n1'))).code).toBe('conflict');
    expect(a.status().seq).toBe(seq);
    await a.collection('notes').put('json', { x: 1 });
    const j = a.text('notes', 'json');
    expect((await dbErrorOfPromise(j.ready)).code).toBe('conflict');
    expect(() => j.insert(0, 'x')).toThrow(/failed to load/);
    expect(() => t.insert(99, 'x')).toThrow();
    expect(() => t.delete(0, 99)).toThrow();
    expect(() => a.text('Bad Name!', 'x')).toThrow();
    expect(t.toString()).toBe('text');
  });

  it('refuses a change whose text payload lies about its operations, applying nothing', async () => {
    const a = await open('a');
    const b = await open('b');
    const t = a.text('notes', 'n1');
    await t.ready;
    t.insert(0, 'hello');
    await t.flush();
    const { basis, batch } = decodeBundle(await a.changesSince({}));
    const doc = batch.changes[0]!.docs[0]!;
    const state = decodeRecord(doc.state);
    const entry = state.siblings[0]!;
    const info = textEntryInfo(entry);
    // Claims operations [0, 9) while holding [0, 5).
    const forged =
      info.kind === 'delta'
        ? { ...entry, value: encodeTextDelta(0, 9, info.payload) }
        : { ...entry, value: encodeTextDelta(0, 9, new Uint8Array([0x44, 0, 0])) };
    const bad = encodeBundle({
      basis: basis ?? new CausalContext(),
      batch: {
        ...batch,
        changes: [{ docs: [{ ...doc, state: encodeRecord({ siblings: [forged], context: state.context }) }] }],
      },
    });
    expect((await dbErrorOfPromise(b.applyChanges(bad))).code).toBe('protocol');
    expect(b.status().docs).toBe(0);
  });

  it('keeps committed text across a restart of a SQLite replica', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'polyarch-text-'));
    try {
      const file = join(dir, 'a.db');
      const { openReplica: openNode } = await import('../index.js');
      const a = await openNode({ storage: file, id: 'a' });
      const t = a.text('notes', 'n1');
      await t.ready;
      t.insert(0, 'persist me');
      await a.close(); // commits what is pending
      const again = await openNode({ storage: file, id: 'a' });
      opened.push(again);
      const t2 = again.text('notes', 'n1');
      await t2.ready;
      expect(t2.toString()).toBe('persist me');
      t2.insert(10, '!');
      await t2.flush();
      expect((await again.collection('notes').get('n1'))?.value).toBe('persist me!');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('property: three replicas editing at random and syncing in random orders reach one text', async () => {
    const edit = fc.record({
      who: fc.integer({ min: 0, max: 2 }),
      at: fc.nat(),
      del: fc.nat({ max: 3 }),
      text: fc.string({ maxLength: 4 }),
    });
    const step = fc.oneof(
      edit.map((e) => ({ kind: 'edit' as const, ...e })),
      fc.record({ from: fc.integer({ min: 0, max: 2 }), to: fc.integer({ min: 0, max: 2 }) }).map((s) => ({
        kind: 'sync' as const,
        ...s,
      })),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 40 }), async (steps) => {
        const dbs = await Promise.all(['p', 'q', 'r'].map((id) => openReplica({ storage: 'memory', id })));
        try {
          const ts = dbs.map((d) => d.text('notes', 'doc'));
          await Promise.all(ts.map((t) => t.ready));
          for (const s of steps) {
            if (s.kind === 'edit') {
              const t = ts[s.who]!;
              const at = s.at % (t.length + 1);
              const del = Math.min(s.del, t.length - at);
              if (del > 0) t.delete(at, del);
              if (s.text.length > 0) t.insert(at, s.text);
              if (s.at % 2 === 0) await t.flush();
            } else if (s.from !== s.to) await sync(dbs[s.from]!, dbs[s.to]!);
          }
          await syncAll(dbs);
          const texts = new Set(ts.map((t) => t.toString()));
          expect(texts.size).toBe(1);
          expect(new Set(dbs.map((d) => d.status().digest)).size).toBe(1);
        } finally {
          for (const d of dbs) await d.close();
        }
      }),
      { numRuns: 40 },
    );
  });
});

async function stateOf(db: Database, id: string) {
  return (db as unknown as { replica: { getState(c: string, i: string): Promise<unknown> } }).replica.getState(
    'notes',
    id,
  ) as Promise<ReturnType<typeof decodeRecord> | undefined>;
}
