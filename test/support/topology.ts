/** Builders for replication topologies, as lists of undirected links between replica indexes. */

export type Link = readonly [number, number];

export const allToAll = (n: number): Link[] => {
  const links: Link[] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) links.push([i, j]);
  return links;
};
export const ring = (n: number): Link[] => Array.from({ length: n }, (_, i) => [i, (i + 1) % n] as const);
export const star = (n: number): Link[] => Array.from({ length: n - 1 }, (_, i) => [0, i + 1] as const);
export const line = (n: number): Link[] => Array.from({ length: n - 1 }, (_, i) => [i, i + 1] as const);

export const topologies = { 'all-to-all': allToAll, ring, star, line } as const;
export type TopologyName = keyof typeof topologies;
