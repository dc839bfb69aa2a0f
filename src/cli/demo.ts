/**
 * The in-process demo: three leaders (eu, us, ap) take concurrent writes while apart, then
 * sync in a ring over in-memory sessions, and show the conflicts they kept and their equal
 * digests. The networked demo (servers, browsers) replaces this once the server exists.
 */
import { openReplica, memoryConnectionPair } from '../index.js';
import type { Database } from '../index.js';

type Print = (line: string) => void;

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('the demo replicas did not converge in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function runDemo(print: Print = console.log): Promise<{ digests: string[]; conflicts: number }> {
  const names = ['eu', 'us', 'ap'] as const;
  const dbs: Database[] = await Promise.all(names.map((id) => openReplica({ id, storage: 'memory' })));
  const [eu, us, ap] = dbs as [Database, Database, Database];

  print('Three leaders, eu, us and ap, each accepting writes while cut off from the others:');
  await eu.collection('events').put('standup', { title: 'Standup', at: '09:30', room: 'Paris' });
  await us.collection('events').put('standup', { title: 'Standup', at: '10:00', room: 'Boston' });
  await ap.collection('events').put('retro', { title: 'Retro', at: '16:00' });
  await eu.batch([
    { type: 'put', collection: 'accounts', id: 'alice', value: { balance: 50 } },
    { type: 'put', collection: 'accounts', id: 'bob', value: { balance: 150 } },
  ]);
  await us.collection('events').put('lunch', { title: 'Lunch', at: '12:00' });
  await ap.collection('events').put('lunch', { title: 'Team lunch', at: '12:30' });
  for (const db of dbs) print(`  ${db.id}: ${db.status().docs} documents, seq ${db.status().seq}`);

  print('\nNow they sync in a ring: eu <-> us <-> ap <-> eu.');
  const sessions = [
    [eu, us],
    [us, ap],
    [ap, eu],
  ].map(([a, b]) => {
    const [x, y] = memoryConnectionPair();
    return [(a as Database).connect(x), (b as Database).connect(y)] as const;
  });
  await waitUntil(
    () => new Set(dbs.map((d) => d.status().digest)).size === 1 && sessions.every(([s, t]) => s.idle && t.idle),
    10_000,
  );

  print('\nConflicts detected with version vectors (kept, not guessed from clocks):');
  for (const id of ['standup', 'lunch']) {
    const doc = await eu.collection('events').get(id);
    if (doc === null) continue;
    print(`  events/${id}: winner ${JSON.stringify(doc.value)} from ${doc.origin}`);
    for (const c of doc.conflicts) print(`    conflict: ${JSON.stringify(c.value)} from ${c.origin}`);
  }

  const standup = await us.collection('events').get('standup');
  if (standup !== null) {
    await us
      .collection('events')
      .put('standup', { title: 'Standup', at: '09:45', room: 'Paris + Boston' }, { version: standup.version });
    print('\nus resolves events/standup by writing with the version it read; the resolution replicates.');
    await waitUntil(() => new Set(dbs.map((d) => d.status().digest)).size === 1, 10_000);
  }

  print('\nFinal state:');
  for (const db of dbs) {
    const s = db.status();
    print(`  ${db.id}: ${s.docs} documents, ${s.conflicts} in conflict, digest ${s.digest.slice(0, 16)}...`);
  }
  const digests = dbs.map((d) => d.status().digest);
  print(new Set(digests).size === 1 ? '\nAll three digests are equal: the leaders converged.' : '\nDigests differ!');
  for (const [s, t] of sessions) {
    s.close();
    t.close();
  }
  const conflicts = eu.status().conflicts;
  await Promise.all(dbs.map((d) => d.close()));
  return { digests, conflicts };
}
