import { describe, expect, it } from 'vitest';
import { decodeTimeId, checkDocId, TIME_ID_COUNTER_MAX } from '../core/index.js';
import { SeededRandom, seededEnv } from '../env/index.js';
import { openMemoryStorage } from '../storage/memory/index.js';
import type { Storage } from '../storage/index.js';
import { Replica } from './replica.js';

/** A storage whose close() is a no-op, to reopen the same memory store in one test. */
function keepOpen(s: Storage): Storage {
  return { name: s.name, read: (fn) => s.read(fn), write: (fn) => s.write(fn), close: async () => {} };
}

describe('Replica.newId', () => {
  it('makes valid document ids of this replica that sort in the order they were made', async () => {
    const env = seededEnv(1);
    const r = await Replica.open({ id: 'eu-1', storage: openMemoryStorage(), env });
    const a = r.newId();
    const b = r.newId();
    env.clock.advance(5);
    const c = r.newId();
    expect([a, b, c].every((id) => checkDocId(id) === id)).toBe(true);
    expect(a < b && b < c).toBe(true);
    expect(decodeTimeId(a)).toEqual({ ms: env.clock.ms - 5, counter: 0, replica: 'eu-1', incarnation: 1 });
    expect(decodeTimeId(b)?.counter).toBe(1);
    expect(decodeTimeId(c)).toMatchObject({ ms: env.clock.ms, counter: 0 });
    await r.put('invoices', a, { total: 5 });
    expect((await r.get('invoices', a))?.value).toEqual({ total: 5 });
  });

  it('moves to the next millisecond when the counter of one millisecond is used up', async () => {
    const env = seededEnv(1);
    const r = await Replica.open({ id: 'a', storage: openMemoryStorage(), env });
    let prev = '';
    for (let i = 0; i <= TIME_ID_COUNTER_MAX + 2; i++) {
      const id = r.newId();
      expect(id > prev).toBe(true);
      prev = id;
    }
    expect(decodeTimeId(prev)).toMatchObject({ ms: env.clock.ms + 1, counter: 1 });
  });

  it('follows the HLC when a peer pulled it ahead of the wall clock', async () => {
    const env = seededEnv(1);
    const ahead = seededEnv(2, env.clock.ms + 30_000);
    const a = await Replica.open({ id: 'a', storage: openMemoryStorage(), env });
    const b = await Replica.open({ id: 'b', storage: openMemoryStorage(), env: ahead });
    await b.put('c', 'x', 1);
    const batch = await b.readBatch(0, 100, a.context());
    await a.applyRemote(batch.changes, { context: batch.context });
    expect(decodeTimeId(a.newId())?.ms).toBe(ahead.clock.ms);
  });

  it('never repeats an id: 10,000 ids at three replicas, a clock going backwards and a restart', async () => {
    const env = seededEnv(7);
    const rng = new SeededRandom(99);
    const stores = ['eu', 'us', 'ap'].map(() => keepOpen(openMemoryStorage()));
    const replicas = await Promise.all(
      ['eu', 'us', 'ap'].map((id, i) => Replica.open({ id, storage: stores[i] as Storage, env })),
    );
    const seen = new Set<string>();
    const lastOf = new Map<string, string>();
    for (let i = 0; i < 10_000; i++) {
      if (i === 4000) {
        // Replica 1 crashes and restarts while the clock has gone back: it reaches again the
        // milliseconds (and counters) it used before, and only its incarnation differs.
        env.clock.advance(-30);
        await (replicas[1] as Replica).close();
        replicas[1] = await Replica.open({ id: 'us', storage: stores[1] as Storage, env });
        lastOf.delete('us');
      }
      const roll = rng.next();
      if (roll < 0.3) env.clock.advance(rng.int(3));
      else if (roll < 0.33) env.clock.advance(-rng.int(50)); // an NTP step backwards
      const r = replicas[rng.int(3)] as Replica;
      const id = r.newId();
      expect(seen.has(id), id).toBe(false);
      seen.add(id);
      const prev = lastOf.get(r.id);
      if (prev !== undefined) expect(id > prev, `${prev} then ${id}`).toBe(true);
      lastOf.set(r.id, id);
    }
    expect(seen.size).toBe(10_000);
    const incarnations = new Set(
      [...seen].filter((id) => id.includes('.us.')).map((id) => decodeTimeId(id)?.incarnation),
    );
    expect(incarnations).toEqual(new Set([1, 2]));
  });

  it('gives each open of a store a new incarnation, so a restart with the clock set back never repeats an id', async () => {
    const env = seededEnv(3);
    const store = keepOpen(openMemoryStorage());
    const first = await Replica.open({ id: 'a', storage: store, env });
    const before = first.newId();
    await first.close();
    const second = await Replica.open({ id: 'a', storage: store, env });
    const after = second.newId();
    // Same clock, nothing committed: the same time and counter, told apart by the incarnation.
    expect(decodeTimeId(after)).toMatchObject({ ms: decodeTimeId(before)?.ms, counter: 0, incarnation: 2 });
    expect(after).not.toBe(before);
  });

  it('fails once the replica is closed', async () => {
    const r = await Replica.open({ id: 'a', storage: openMemoryStorage(), env: seededEnv(1) });
    await r.close();
    expect(() => r.newId()).toThrow(/closed/);
  });
});
