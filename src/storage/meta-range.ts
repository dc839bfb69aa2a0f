/**
 * A range of metadata keys as a write transaction sees it, for the adapters that stage writes
 * in memory until the commit (memory, IndexedDB): the staged puts and deletes (null) laid over
 * the committed entries. Keys compare as UTF-16 strings, as those adapters order them.
 */

export interface MetaEntry {
  readonly key: string;
  readonly value: Uint8Array;
}

/**
 * `committed`: the committed entries of the range in key order, at least `limit` of them plus
 * one for each staged key in the range (each may hide one); fewer only when the range ends.
 */
export function overlayMetaRange(
  committed: readonly MetaEntry[],
  staged: ReadonlyMap<string, Uint8Array | null>,
  inRange: (key: string) => boolean,
  limit: number,
): MetaEntry[] {
  const out = committed.filter((e) => !staged.has(e.key));
  for (const [key, value] of staged) if (value !== null && inRange(key)) out.push({ key, value });
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).slice(0, limit);
}

/** How many staged keys fall in the range: how many more committed entries a page must read. */
export function stagedInRange(staged: ReadonlyMap<string, unknown>, inRange: (key: string) => boolean): number {
  let n = 0;
  for (const key of staged.keys()) if (inRange(key)) n++;
  return n;
}
