/** In-process sync of SDK replicas through bytes, as tests of conflict handling need it. */
import type { Database } from '../../src/index.js';

/** Sends `to` everything `from` holds that `to` lacks; returns how many documents changed at `to`. */
export async function sync(from: Database, to: Database): Promise<number> {
  return (await to.applyChanges(await from.changesSince(to.vector()))).recorded;
}

/** Every replica sends to every other until nothing changes, background work included. */
export async function syncAll(dbs: readonly Database[]): Promise<void> {
  for (let round = 0; round < 20; round++) {
    let changed = 0;
    for (const a of dbs) for (const b of dbs) if (a !== b) changed += await sync(a, b);
    for (const d of dbs) await d.settled();
    if (changed === 0) return;
  }
  throw new Error('replicas did not quiesce in 20 rounds');
}
