/**
 * Two SDK replicas type into one text document concurrently, each synced with a different
 * `polyarch serve` leader (the leaders peer with each other), then merge through the servers:
 * both show the same text, holding every character either typed, each typist's runs unbroken.
 * The leaders also serve the text to HTTP readers as a string.
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { openReplica } from '../../src/index.js';
import type { Database, SyncHandle } from '../../src/index.js';
import { Cluster, getOk, peersLive, until } from './harness.js';
import type { Leader } from './harness.js';

const cluster = new Cluster('text-server');
let eu: Leader;
let us: Leader;
let alice: Database;
let bob: Database;
const handles: SyncHandle[] = [];

const FAST = { heartbeatMs: 300, deadAfterMs: 1200, minBackoffMs: 50, maxBackoffMs: 500 };

beforeAll(async () => {
  [eu, us] = (await cluster.start([{ id: 'eu' }, { id: 'us', peers: ['eu'] }])) as [Leader, Leader];
  await peersLive(us, ['eu']);
  alice = await openReplica({ id: 'alice', storage: 'memory' });
  bob = await openReplica({ id: 'bob', storage: 'memory' });
  cluster.onTeardown(() => alice.close());
  cluster.onTeardown(() => bob.close());
  handles.push(alice.sync(eu.url, FAST), bob.sync(us.url, FAST));
});

afterAll(async () => {
  await cluster.teardown();
});

describe('text through real servers', () => {
  it('merges two replicas typing at once into one text', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    await until('both clients online', () => handles.every((h) => h.status === 'online'), 30_000);
    const a = alice.text('notes', 'shared');
    const b = bob.text('notes', 'shared');
    await Promise.all([a.ready, b.ready]);
    a.insert(0, 'Title\n');
    await until('bob to see the title', () => b.toString() === 'Title\n', 30_000, 20);
    // Both type at the end of the title line at once, one keystroke per turn.
    const typedA = 'alice types this sentence. ';
    const typedB = 'bob writes another one! ';
    for (let i = 0; i < Math.max(typedA.length, typedB.length); i++) {
      if (i < typedA.length) a.insert(6 + i, typedA[i] as string);
      if (i < typedB.length) b.insert(b.length, typedB[i] as string);
      await new Promise((r) => setTimeout(r, 2));
    }
    await Promise.all([a.flush(), b.flush()]);
    await until(
      'both texts to converge',
      () => a.toString() === b.toString() && a.length === 6 + typedA.length + typedB.length,
      30_000,
      50,
    );
    const text = a.toString();
    expect(text.startsWith('Title\n')).toBe(true);
    // Runs typed concurrently at one spot stay contiguous (FugueMax does not interleave).
    expect(text).toContain(typedA);
    expect(text).toContain(typedB);
    await until(
      'the leaders to serve the merged text',
      async () =>
        (await getOk(eu, 'notes', 'shared')).value === text && (await getOk(us, 'notes', 'shared')).value === text,
      30_000,
      100,
    );
    await until(
      'all digests to agree',
      async () => {
        const [se, su] = await Promise.all([eu.status(), us.status()]);
        return se.digest === su.digest && se.digest === alice.status().digest && su.digest === bob.status().digest;
      },
      30_000,
      100,
    );
  });
});
