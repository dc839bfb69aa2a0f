/**
 * The acceptance suite every Storage adapter must pass (see the contract in storage.ts).
 * Adapter test files call describeStorageContract; each test opens fresh storage and the
 * suite closes it afterwards, so tests never share state.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DbError, ErrorCode } from '../shared/index.js';
import type { DocRow, ReadTx, Storage, WriteTx } from './storage.js';

export type OpenStorage = () => Promise<Storage> | Storage;
/** Opens again the store behind `closed` (already closed), for adapters that persist. */
export type ReopenStorage = (closed: Storage) => Promise<Storage> | Storage;

const bytes = (...xs: number[]): Uint8Array => new Uint8Array(xs);

function doc(collection: string, id: string, seq: number, state: Uint8Array = bytes(seq & 0xff)): DocRow {
  return { collection, id, seq, state };
}

/** Rows as `collection/id@seq`, the shape most assertions compare. */
function labels(rows: readonly (DocRow | undefined)[]): (string | undefined)[] {
  return rows.map((r) => (r === undefined ? undefined : `${r.collection}/${r.id}@${r.seq}`));
}

/** A promise plus the function that resolves it, to hold a transaction open. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open = (): void => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

/**
 * Yields `n` macrotasks so that anything not actually blocked gets to run. Not a sleep: the
 * tests only use it to show that something is still waiting. setTimeout(0) rather than
 * setImmediate so the suite also runs in browsers.
 */
async function turns(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setTimeout(resolve, 0));
}

async function everything(tx: ReadTx): Promise<unknown> {
  return {
    meta: await tx.getMeta('m'),
    feed: labels(await tx.feed(0, 1000)),
    links: await tx.linkedThrough(0, 1000),
    checkpoints: await tx.listCheckpoints(),
    list: labels(await tx.listDocs('c', undefined, 1000)),
  };
}

export function describeStorageContract(name: string, open: OpenStorage, reopen?: ReopenStorage): void {
  describe(`${name}: Storage contract`, () => {
    const opened: Storage[] = [];
    async function fresh(): Promise<Storage> {
      const s = await open();
      opened.push(s);
      return s;
    }
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((s) => s.close()));
    });

    it('a meta value round-trips, can be overwritten, and a missing key reads as undefined', async () => {
      const s = await fresh();
      await s.write((tx) => {
        tx.putMeta('replica', bytes(1, 2, 3));
        tx.putMeta('empty', bytes());
      });
      await s.write((tx) => tx.putMeta('replica', bytes(4)));
      const got = await s.read(async (tx) => [
        await tx.getMeta('replica'),
        await tx.getMeta('empty'),
        await tx.getMeta('nope'),
      ]);
      expect(got).toEqual([bytes(4), bytes(), undefined]);
    });

    it('returns stored bytes that deep-equal plain Uint8Arrays', async () => {
      const s = await fresh();
      await s.write((tx) => tx.putDoc(doc('c', 'a', 1, bytes(9, 8, 7))));
      const [row] = await s.read((tx) => tx.getDocs([{ collection: 'c', id: 'a' }]));
      expect(row?.state).toBeInstanceOf(Uint8Array);
      expect(row?.state).toEqual(new Uint8Array([9, 8, 7]));
      expect(row).toEqual({ collection: 'c', id: 'a', seq: 1, state: new Uint8Array([9, 8, 7]) });
    });

    it('keeps the committed bytes when the caller later mutates the arrays it passed in', async () => {
      const s = await fresh();
      const value = bytes(1, 1);
      const state = bytes(2, 2);
      await s.write((tx) => {
        tx.putMeta('m', value);
        tx.putDoc(doc('c', 'a', 1, state));
      });
      value.fill(0);
      state.fill(0);
      const [meta, [row]] = await s.read(
        async (tx) => [await tx.getMeta('m'), await tx.getDocs([{ collection: 'c', id: 'a' }])] as const,
      );
      expect(meta).toEqual(bytes(1, 1));
      expect(row?.state).toEqual(bytes(2, 2));
    });

    it('seqAfter names the seq of the n-th document after a seq, or of the last one', async () => {
      const s = await fresh();
      await s.write((tx) => {
        tx.putDoc(doc('c', 'a', 2));
        tx.putDoc(doc('c', 'b', 2));
        tx.putDoc(doc('c', 'c', 5));
        tx.putDoc(doc('c', 'd', 9));
      });
      const got = await s.read(async (tx) => [
        await tx.seqAfter(0, 1),
        await tx.seqAfter(0, 2),
        await tx.seqAfter(0, 3),
        await tx.seqAfter(2, 1),
        await tx.seqAfter(0, 100),
        await tx.seqAfter(9, 1),
        await tx.seqAfter(0, 0),
      ]);
      expect(got).toEqual([2, 2, 5, 5, 9, 0, 0]);
      const inTx = await s.write(async (tx) => {
        tx.putDoc(doc('c', 'e', 12));
        return tx.seqAfter(9, 1);
      });
      expect(inTx).toBe(12);
    });

    it('reads and writes hundreds of documents in one transaction, seeing its own writes', async () => {
      const s = await fresh();
      const keys = Array.from({ length: 300 }, (_, i) => ({ collection: i % 2 === 0 ? 'c' : 'd', id: `k${i}` }));
      const inTx = await s.write(async (tx) => {
        keys.forEach((k, i) => {
          if (i % 3 !== 0) tx.putDoc(doc(k.collection, k.id, i + 1));
        });
        const rows = await tx.getDocs(keys);
        tx.putDoc(doc('c', 'k0', 1000));
        return rows;
      });
      const expected = keys.map((k, i) => (i % 3 === 0 ? undefined : `${k.collection}/${k.id}@${i + 1}`));
      expect(labels(inTx)).toEqual(expected);
      const after = await s.read((tx) => tx.getDocs([...keys].reverse()));
      expected[0] = 'c/k0@1000';
      expect(labels(after)).toEqual([...expected].reverse());
      const feed = await s.read((tx) => tx.feed(0, 1000));
      expect(feed).toHaveLength(201);
    });

    it('getDocs answers in the order of the keys asked, with undefined for missing keys', async () => {
      const s = await fresh();
      await s.write((tx) => {
        tx.putDoc(doc('c', 'a', 1));
        tx.putDoc(doc('c', 'b', 2));
        tx.putDoc(doc('d', 'a', 3));
      });
      const rows = await s.read((tx) =>
        tx.getDocs([
          { collection: 'd', id: 'a' },
          { collection: 'c', id: 'zz' },
          { collection: 'c', id: 'b' },
          { collection: 'c', id: 'a' },
          { collection: 'e', id: 'a' },
          { collection: 'c', id: 'b' },
        ]),
      );
      expect(labels(rows)).toEqual(['d/a@3', undefined, 'c/b@2', 'c/a@1', undefined, 'c/b@2']);
      expect(await s.read((tx) => tx.getDocs([]))).toEqual([]);
    });

    it('a putDoc on an existing document replaces its seq and state and moves it in the feed', async () => {
      const s = await fresh();
      await s.write((tx) => {
        tx.putDoc(doc('c', 'a', 1));
        tx.putDoc(doc('c', 'b', 2));
      });
      await s.write((tx) => tx.putDoc(doc('c', 'a', 3, bytes(42))));
      const [rows, feed] = await s.read(
        async (tx) => [await tx.getDocs([{ collection: 'c', id: 'a' }]), await tx.feed(0, 10)] as const,
      );
      expect(rows).toEqual([doc('c', 'a', 3, bytes(42))]);
      expect(labels(feed)).toEqual(['c/b@2', 'c/a@3']);
      expect(labels(await s.read((tx) => tx.feed(2, 10)))).toEqual(['c/a@3']);
    });

    it('feed lists documents with seq above `after`, ascending by (seq, collection, id)', async () => {
      const s = await fresh();
      await s.write((tx) => {
        // Written out of order on purpose; several documents share seq 5.
        tx.putDoc(doc('c', 'z', 9));
        tx.putDoc(doc('d', 'a', 5));
        tx.putDoc(doc('c', 'b', 5));
        tx.putDoc(doc('c', 'a', 5));
        tx.putDoc(doc('b', 'q', 2));
        tx.putDoc(doc('c', 'B', 5));
      });
      const all = ['b/q@2', 'c/B@5', 'c/a@5', 'c/b@5', 'd/a@5', 'c/z@9'];
      expect(labels(await s.read((tx) => tx.feed(0, 100)))).toEqual(all);
      expect(labels(await s.read((tx) => tx.feed(2, 100)))).toEqual(all.slice(1));
      expect(labels(await s.read((tx) => tx.feed(4, 100)))).toEqual(all.slice(1));
      expect(labels(await s.read((tx) => tx.feed(5, 100)))).toEqual(['c/z@9']);
      expect(labels(await s.read((tx) => tx.feed(9, 100)))).toEqual([]);
    });

    it('feed stops at `limit` and pages through distinct seqs without gaps or repeats', async () => {
      const s = await fresh();
      await s.write((tx) => {
        for (let i = 1; i <= 25; i++) tx.putDoc(doc('c', `d${i}`, i * 2));
      });
      expect(await s.read((tx) => tx.feed(0, 0))).toEqual([]);
      expect(labels(await s.read((tx) => tx.feed(0, 3)))).toEqual(['c/d1@2', 'c/d2@4', 'c/d3@6']);
      const seen: number[] = [];
      for (let after = 0; ; ) {
        const page = await s.read((tx) => tx.feed(after, 7));
        if (page.length === 0) break;
        expect(page.length).toBeLessThanOrEqual(7);
        seen.push(...page.map((r) => r.seq));
        after = page[page.length - 1]?.seq ?? after;
      }
      expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => (i + 1) * 2));
    });

    it('feedRange excludes seq == after and includes seq == through', async () => {
      const s = await fresh();
      await s.write((tx) => {
        for (const seq of [1, 2, 3, 4, 5]) tx.putDoc(doc('c', `d${seq}`, seq));
        tx.putDoc(doc('b', 'x', 3));
      });
      expect(labels(await s.read((tx) => tx.feedRange(2, 4)))).toEqual(['b/x@3', 'c/d3@3', 'c/d4@4']);
      expect(labels(await s.read((tx) => tx.feedRange(0, 1)))).toEqual(['c/d1@1']);
      expect(await s.read((tx) => tx.feedRange(3, 3))).toEqual([]);
      expect(labels(await s.read((tx) => tx.feedRange(4, 100)))).toEqual(['c/d5@5']);
    });

    it('putLink keeps the largest `until` for a seq, within and across transactions', async () => {
      const s = await fresh();
      await s.write((tx) => {
        tx.putLink(5, 8);
        tx.putLink(5, 6);
      });
      expect(await s.read((tx) => tx.linkedThrough(4, 5))).toBe(8);
      await s.write((tx) => tx.putLink(5, 7));
      expect(await s.read((tx) => tx.linkedThrough(4, 5))).toBe(8);
      await s.write((tx) => tx.putLink(5, 12));
      expect(await s.read((tx) => tx.linkedThrough(4, 5))).toBe(12);
    });

    it('linkedThrough is the largest `until` of links with after < seq <= through, or 0', async () => {
      const s = await fresh();
      await s.write((tx) => {
        tx.putLink(2, 10);
        tx.putLink(4, 6);
        tx.putLink(7, 9);
      });
      const got = await s.read(async (tx) => [
        await tx.linkedThrough(0, 100),
        await tx.linkedThrough(2, 7), // excludes seq 2
        await tx.linkedThrough(1, 2), // includes seq 2
        await tx.linkedThrough(2, 4),
        await tx.linkedThrough(4, 6),
        await tx.linkedThrough(7, 100),
        await tx.linkedThrough(0, 1),
      ]);
      expect(got).toEqual([10, 9, 10, 6, 0, 0, 0]);
      const empty = await fresh();
      expect(await empty.read((tx) => tx.linkedThrough(0, 100))).toBe(0);
    });

    it('listDocs lists one collection ascending by id and pages with afterId', async () => {
      const s = await fresh();
      const ids = ['b', '9', 'a1', 'B', '10', 'a', 'a-b', 'Z'];
      await s.write((tx) => {
        ids.forEach((id, i) => tx.putDoc(doc('c', id, i + 1)));
        tx.putDoc(doc('cc', 'a', 100));
        tx.putDoc(doc('b', 'zz', 101));
      });
      const sorted = [...ids].sort();
      expect(sorted).toEqual(['10', '9', 'B', 'Z', 'a', 'a-b', 'a1', 'b']);
      const all = await s.read((tx) => tx.listDocs('c', undefined, 100));
      expect(all.map((r) => r.id)).toEqual(sorted);
      expect(all.every((r) => r.collection === 'c')).toBe(true);
      expect((await s.read((tx) => tx.listDocs('c', undefined, 3))).map((r) => r.id)).toEqual(['10', '9', 'B']);
      expect((await s.read((tx) => tx.listDocs('c', 'B', 2))).map((r) => r.id)).toEqual(['Z', 'a']);
      expect((await s.read((tx) => tx.listDocs('c', 'a0', 100))).map((r) => r.id)).toEqual(['a1', 'b']);
      expect(await s.read((tx) => tx.listDocs('c', 'b', 100))).toEqual([]);
      expect(await s.read((tx) => tx.listDocs('c', undefined, 0))).toEqual([]);
      expect(await s.read((tx) => tx.listDocs('nope', undefined, 10))).toEqual([]);
      expect(labels(await s.read((tx) => tx.listDocs('c', 'a-b', 1)))).toEqual(['c/a1@3']);
    });

    it('paging listDocs with afterId visits every document once, whatever characters ids hold', async () => {
      // Adapters may order astral characters against U+E000..U+FFFF differently (UTF-16 code
      // units vs code points); paging must be consistent with the adapter's own order.
      const s = await fresh();
      const ids = ['z', 'é', '\u{1F600}', '\uFFFD', '\uE000', 'a b', '日本', '\u{10FFFF}', 'A'];
      await s.write((tx) => ids.forEach((id, i) => tx.putDoc(doc('c', id, i + 1))));
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await s.read((tx) => tx.listDocs('c', after, 2));
        if (page.length === 0) break;
        seen.push(...page.map((r) => r.id));
        after = page[page.length - 1]?.id;
      }
      expect([...seen].sort()).toEqual([...ids].sort());
      expect(seen.slice(0, 5)).toEqual(['A', 'a b', 'z', 'é', '日本']);
    });

    it('a checkpoint reads as 0 until set, then round-trips, and the last set wins', async () => {
      const s = await fresh();
      expect(await s.read((tx) => tx.getCheckpoint('p1'))).toBe(0);
      expect(await s.read((tx) => tx.listCheckpoints())).toEqual([]);
      await s.write((tx) => {
        tx.setCheckpoint('p1', 10);
        tx.setCheckpoint('p2', 3);
      });
      await s.write((tx) => tx.setCheckpoint('p1', 7));
      expect(await s.read((tx) => tx.getCheckpoint('p1'))).toBe(7);
      expect(await s.read((tx) => tx.getCheckpoint('p3'))).toBe(0);
      const list = await s.read((tx) => tx.listCheckpoints());
      expect([...list].sort((a, b) => (a.peer < b.peer ? -1 : 1))).toEqual([
        { peer: 'p1', seq: 7 },
        { peer: 'p2', seq: 3 },
      ]);
    });

    it('read and write resolve with the value their callback returns', async () => {
      const s = await fresh();
      expect(await s.write(() => 'written')).toBe('written');
      expect(await s.write(async () => 42)).toBe(42);
      expect(await s.read(() => ({ ok: true }))).toEqual({ ok: true });
    });

    it('a write whose callback throws changes nothing and rethrows the same error', async () => {
      const s = await fresh();
      await s.write((tx) => {
        tx.putMeta('m', bytes(1));
        tx.putDoc(doc('c', 'a', 1));
        tx.putLink(1, 2);
        tx.setCheckpoint('p', 1);
      });
      const before = await s.read(everything);
      const boom = new Error('boom');
      await expect(
        s.write(async (tx) => {
          tx.putMeta('m', bytes(2));
          tx.putDoc(doc('c', 'a', 5));
          tx.putDoc(doc('c', 'new', 6));
          tx.putLink(1, 9);
          tx.putLink(6, 9);
          tx.setCheckpoint('p', 5);
          tx.setCheckpoint('q', 5);
          await Promise.resolve();
          throw boom;
        }),
      ).rejects.toBe(boom);
      await expect(
        s.write((tx) => {
          tx.putDoc(doc('c', 'sync', 7));
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(await s.read(everything)).toEqual(before);
      // The store is still usable afterwards.
      await s.write((tx) => tx.putDoc(doc('c', 'b', 2)));
      expect(labels(await s.read((tx) => tx.feed(0, 10)))).toEqual(['c/a@1', 'c/b@2']);
    });

    it('reads inside a write see the transaction’s own staged changes', async () => {
      const s = await fresh();
      await s.write((tx) => {
        tx.putMeta('m', bytes(1));
        tx.putDoc(doc('c', 'a', 1));
        tx.putDoc(doc('c', 'b', 2));
        tx.putDoc(doc('c', 'd', 3));
        tx.putLink(2, 3);
        tx.setCheckpoint('p', 1);
      });
      const seen = await s.write(async (tx) => {
        tx.putMeta('m', bytes(2));
        tx.putDoc(doc('c', 'a', 4, bytes(44))); // replaces a committed row: moves to the end
        tx.putDoc(doc('c', 'c', 5));
        tx.putDoc(doc('e', 'x', 3));
        tx.putLink(2, 5);
        tx.putLink(4, 5);
        tx.setCheckpoint('p', 4);
        tx.setCheckpoint('q', 2);
        return {
          meta: await tx.getMeta('m'),
          docs: await tx.getDocs([
            { collection: 'c', id: 'a' },
            { collection: 'c', id: 'c' },
          ]),
          feed: labels(await tx.feed(0, 100)),
          feedLimited: labels(await tx.feed(1, 3)),
          range: labels(await tx.feedRange(2, 4)),
          linked: [await tx.linkedThrough(0, 10), await tx.linkedThrough(3, 4)],
          list: labels(await tx.listDocs('c', undefined, 100)),
          listAfter: labels(await tx.listDocs('c', 'a', 2)),
          checkpoint: await tx.getCheckpoint('p'),
          checkpoints: [...(await tx.listCheckpoints())].sort((a, b) => (a.peer < b.peer ? -1 : 1)),
        };
      });
      expect(seen).toEqual({
        meta: bytes(2),
        docs: [doc('c', 'a', 4, bytes(44)), doc('c', 'c', 5)],
        feed: ['c/b@2', 'c/d@3', 'e/x@3', 'c/a@4', 'c/c@5'],
        feedLimited: ['c/b@2', 'c/d@3', 'e/x@3'],
        range: ['c/d@3', 'e/x@3', 'c/a@4'],
        linked: [5, 5],
        list: ['c/a@4', 'c/b@2', 'c/c@5', 'c/d@3'],
        listAfter: ['c/b@2', 'c/c@5'],
        checkpoint: 4,
        checkpoints: [
          { peer: 'p', seq: 4 },
          { peer: 'q', seq: 2 },
        ],
      });
      // And the same is what got committed.
      expect(labels(await s.read((tx) => tx.feed(0, 100)))).toEqual(seen.feed);
    });

    it('a read issued while a write is in progress waits for it and sees only committed state', async () => {
      const s = await fresh();
      await s.write((tx) => tx.putDoc(doc('c', 'a', 1)));
      const events: string[] = [];
      const hold = gate();
      const writing = s.write(async (tx) => {
        tx.putDoc(doc('c', 'a', 2));
        tx.putDoc(doc('c', 'b', 3));
        events.push('write staged');
        await hold.opened;
        events.push('write done');
      });
      const reading = s.read(async (tx) => {
        events.push('read');
        return labels(await tx.feed(0, 10));
      });
      try {
        await turns();
        expect(events).toEqual(['write staged']);
      } finally {
        hold.open(); // even on failure, or afterEach's close() would wait forever
      }
      await writing;
      expect(await reading).toEqual(['c/a@2', 'c/b@3']);
      expect(events).toEqual(['write staged', 'write done', 'read']);
    });

    it('a read issued while a write is in progress that then fails sees the state before the write', async () => {
      const s = await fresh();
      await s.write((tx) => tx.putDoc(doc('c', 'a', 1)));
      const hold = gate();
      const writing = s.write(async (tx) => {
        tx.putDoc(doc('c', 'a', 2));
        tx.putDoc(doc('c', 'b', 3));
        await hold.opened;
        throw new Error('abandoned');
      });
      const reading = s.read(async (tx) => labels(await tx.feed(0, 10)));
      await turns();
      hold.open();
      await expect(writing).rejects.toThrow('abandoned');
      expect(await reading).toEqual(['c/a@1']);
    });

    it('transactions run one at a time, in call order, even when earlier ones await longer', async () => {
      const s = await fresh();
      const events: string[] = [];
      let active = 0;
      const all: Promise<unknown>[] = [];
      for (let i = 0; i < 12; i++) {
        const body = async (tx: ReadTx): Promise<void> => {
          active++;
          expect(active).toBe(1);
          events.push(`start ${i}`);
          // Earlier transactions wait longer, so any overlap would reorder the log.
          for (let k = 0; k < 12 - i; k++) await tx.getMeta('m');
          await turns(1);
          events.push(`end ${i}`);
          active--;
        };
        all.push(
          i % 3 === 0
            ? s.read(body)
            : s.write(async (tx) => {
                tx.putMeta('m', bytes(i));
                await body(tx);
              }),
        );
      }
      await Promise.all(all);
      expect(events).toEqual(Array.from({ length: 12 }, (_, i) => [`start ${i}`, `end ${i}`]).flat());
      expect(await s.read((tx) => tx.getMeta('m'))).toEqual(bytes(11));
    });

    it('a failed transaction does not stop the ones queued after it', async () => {
      const s = await fresh();
      const failing = s.read(() => {
        throw new Error('read failed');
      });
      const next = s.write((tx) => tx.putMeta('m', bytes(1)));
      await expect(failing).rejects.toThrow('read failed');
      await next;
      expect(await s.read((tx) => tx.getMeta('m'))).toEqual(bytes(1));
    });

    it('a transaction object used after its callback settled throws', async () => {
      const s = await fresh();
      let kept: WriteTx | undefined;
      await s.write((tx) => {
        kept = tx;
      });
      const stale = kept as WriteTx;
      const used = Promise.resolve().then(() => stale.getMeta('m'));
      await expect(used).rejects.toThrow();
      expect(() => stale.putMeta('m', bytes(1))).toThrow();
      expect(await s.read((tx) => tx.getMeta('m'))).toBeUndefined();
    });

    it('close waits for queued transactions, then read and write fail with a DbError coded closed', async () => {
      const s = await fresh();
      const hold = gate();
      const writing = s.write(async (tx) => {
        await hold.opened;
        tx.putMeta('m', bytes(1));
        return 'committed';
      });
      const closing = s.close();
      hold.open();
      expect(await writing).toBe('committed');
      await closing;
      for (const attempt of [s.read((tx) => tx.getMeta('m')), s.write((tx) => tx.putMeta('m', bytes(2)))]) {
        const error: unknown = await attempt.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(DbError);
        expect((error as DbError).code).toBe(ErrorCode.closed);
      }
      await s.close(); // closing twice is harmless
    });

    it('listMeta lists the keys holding a prefix, ascending, and nothing outside it', async () => {
      const s = await fresh();
      await s.write((tx) => {
        for (const key of ['q/b', 'r', 'q/a', 'q', 'qa', 'p/z', 'q/c', 'q/a/1', 'q0'])
          tx.putMeta(key, bytes(key.length));
      });
      const keys = (rows: { key: string }[]): string[] => rows.map((r) => r.key);
      const got = await s.read(async (tx) => ({
        slash: await tx.listMeta('q/', undefined, 100),
        q: keys(await tx.listMeta('q', undefined, 100)),
        all: keys(await tx.listMeta('', undefined, 100)),
        none: await tx.listMeta('s', undefined, 100),
        exact: keys(await tx.listMeta('q/a/1', undefined, 100)),
      }));
      expect(got.slash).toEqual([
        { key: 'q/a', value: bytes(3) },
        { key: 'q/a/1', value: bytes(5) },
        { key: 'q/b', value: bytes(3) },
        { key: 'q/c', value: bytes(3) },
      ]);
      expect(got.q).toEqual(['q', 'q/a', 'q/a/1', 'q/b', 'q/c', 'q0', 'qa']);
      expect(got.all).toEqual(['p/z', 'q', 'q/a', 'q/a/1', 'q/b', 'q/c', 'q0', 'qa', 'r']);
      expect(got.none).toEqual([]);
      expect(got.exact).toEqual(['q/a/1']);
    });

    it('listMeta pages with afterKey and limit, visiting every key once', async () => {
      const s = await fresh();
      const pad = (n: number): string => String(n).padStart(4, '0');
      await s.write((tx) => {
        tx.putMeta('tq/a', bytes(0));
        for (let i = 24; i >= 0; i--) tx.putMeta(`tq/x/${pad(i)}`, bytes(i));
        tx.putMeta('tq/y/0000', bytes(0));
      });
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await s.read((tx) => tx.listMeta('tq/x/', after, 7));
        expect(page.length).toBeLessThanOrEqual(7);
        seen.push(...page.map((r) => r.key));
        if (page.length < 7) break;
        after = page[page.length - 1]?.key;
      }
      expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => `tq/x/${pad(i)}`));
      const edges = await s.read(async (tx) => ({
        below: (await tx.listMeta('tq/x/', 'a', 2)).map((r) => r.key),
        between: (await tx.listMeta('tq/x/', 'tq/x/0003x', 2)).map((r) => r.key),
        last: await tx.listMeta('tq/x/', `tq/x/${pad(24)}`, 5),
        above: await tx.listMeta('tq/x/', 'tq/z', 5),
        zero: await tx.listMeta('tq/', undefined, 0),
      }));
      expect(edges).toEqual({
        below: ['tq/x/0000', 'tq/x/0001'],
        between: ['tq/x/0004', 'tq/x/0005'],
        last: [],
        above: [],
        zero: [],
      });
    });

    it('deleteMeta removes a key for getMeta and listMeta; deleting an absent key is harmless', async () => {
      const s = await fresh();
      await s.write((tx) => {
        for (const key of ['k/1', 'k/2', 'k/3']) tx.putMeta(key, bytes(1));
      });
      await s.write((tx) => {
        tx.deleteMeta('k/2');
        tx.deleteMeta('k/absent');
        tx.deleteMeta('never');
      });
      const got = await s.read(async (tx) => ({
        gone: await tx.getMeta('k/2'),
        list: (await tx.listMeta('k/', undefined, 10)).map((r) => r.key),
      }));
      expect(got).toEqual({ gone: undefined, list: ['k/1', 'k/3'] });
      // A deleted key can be written again.
      await s.write((tx) => tx.putMeta('k/2', bytes(9)));
      expect(await s.read((tx) => tx.listMeta('k/', 'k/1', 1))).toEqual([{ key: 'k/2', value: bytes(9) }]);
    });

    it('listMeta inside a write sees the transaction’s staged puts and deletes', async () => {
      const s = await fresh();
      await s.write((tx) => {
        for (const key of ['o/1', 'o/3', 'o/5', 'o/7']) tx.putMeta(key, bytes(Number(key.slice(2))));
      });
      const seen = await s.write(async (tx) => {
        tx.deleteMeta('o/1');
        tx.deleteMeta('o/5');
        tx.putMeta('o/4', bytes(4));
        tx.putMeta('o/3', bytes(33)); // replaces a committed value
        tx.putMeta('o/9', bytes(9));
        tx.putMeta('o/8', bytes(8));
        tx.deleteMeta('o/8'); // staged, then deleted in the same transaction
        tx.deleteMeta('o/7');
        tx.putMeta('o/7', bytes(77)); // deleted, then put again
        const keys = async (after: string | undefined, limit: number): Promise<string[]> =>
          (await tx.listMeta('o/', after, limit)).map((r) => r.key);
        return {
          all: await tx.listMeta('o/', undefined, 100),
          first2: await keys(undefined, 2),
          after3: await keys('o/3', 2),
          one: await tx.getMeta('o/1'),
          eight: await tx.getMeta('o/8'),
        };
      });
      const expected = [
        { key: 'o/3', value: bytes(33) },
        { key: 'o/4', value: bytes(4) },
        { key: 'o/7', value: bytes(77) },
        { key: 'o/9', value: bytes(9) },
      ];
      expect(seen).toEqual({
        all: expected,
        first2: ['o/3', 'o/4'],
        after3: ['o/4', 'o/7'],
        one: undefined,
        eight: undefined,
      });
      // And the same is what got committed.
      expect(await s.read((tx) => tx.listMeta('o/', undefined, 100))).toEqual(expected);
    });

    it('a write that throws keeps its meta deletes and puts out of the store', async () => {
      const s = await fresh();
      await s.write((tx) => {
        tx.putMeta('d/1', bytes(1));
        tx.putMeta('d/2', bytes(2));
      });
      const boom = new Error('boom');
      await expect(
        s.write(async (tx) => {
          tx.deleteMeta('d/1');
          tx.putMeta('d/3', bytes(3));
          expect((await tx.listMeta('d/', undefined, 10)).map((r) => r.key)).toEqual(['d/2', 'd/3']);
          throw boom;
        }),
      ).rejects.toBe(boom);
      expect(await s.read((tx) => tx.listMeta('d/', undefined, 10))).toEqual([
        { key: 'd/1', value: bytes(1) },
        { key: 'd/2', value: bytes(2) },
      ]);
    });

    if (reopen !== undefined) {
      it('meta deletes survive close and reopen', async () => {
        const s = await fresh();
        await s.write((tx) => {
          for (let i = 0; i < 5; i++) tx.putMeta(`z/${i}`, bytes(i));
        });
        await s.write((tx) => {
          tx.deleteMeta('z/1');
          tx.deleteMeta('z/3');
        });
        await s.close();
        const again = await reopen(s);
        opened.push(again);
        expect(await again.read((tx) => tx.listMeta('z/', undefined, 10))).toEqual([
          { key: 'z/0', value: bytes(0) },
          { key: 'z/2', value: bytes(2) },
          { key: 'z/4', value: bytes(4) },
        ]);
      });

      it('committed data survives close and reopen', async () => {
        const s = await fresh();
        await s.write((tx) => {
          tx.putMeta('m', bytes(7, 7));
          for (let i = 1; i <= 50; i++) tx.putDoc(doc(i % 2 === 0 ? 'even' : 'odd', `d${i}`, i, bytes(i, i)));
          tx.putLink(3, 9);
          tx.setCheckpoint('peer', 12);
        });
        await s.write((tx) => tx.putDoc(doc('odd', 'd1', 51, bytes(1, 1, 1))));
        const before = await s.read(async (tx) => ({
          meta: await tx.getMeta('m'),
          feed: await tx.feed(0, 1000),
          odd: await tx.listDocs('odd', undefined, 1000),
          linked: await tx.linkedThrough(0, 100),
          checkpoints: await tx.listCheckpoints(),
        }));
        await s.close();
        const again = await reopen(s);
        opened.push(again);
        const after = await again.read(async (tx) => ({
          meta: await tx.getMeta('m'),
          feed: await tx.feed(0, 1000),
          odd: await tx.listDocs('odd', undefined, 1000),
          linked: await tx.linkedThrough(0, 100),
          checkpoints: await tx.listCheckpoints(),
        }));
        expect(after).toEqual(before);
        expect(after.feed).toHaveLength(50);
        expect(after.linked).toBe(9);
      });
    }
  });
}
