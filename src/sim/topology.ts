/** Replication topologies for the simulator, as undirected links between replica indexes. */
import type { SeededRandom } from './prng.js';
import { chance, shuffled } from './prng.js';

export type Link = readonly [number, number];

export const TOPOLOGIES = ['all-to-all', 'star', 'ring', 'line', 'random'] as const;
export type Topology = (typeof TOPOLOGIES)[number];

export function isTopology(name: string): name is Topology {
  return (TOPOLOGIES as readonly string[]).includes(name);
}

/** The links of `topology` over `n` replicas; `random` is a random connected graph. */
export function topologyLinks(topology: Topology, n: number, rng: SeededRandom): Link[] {
  const links: Link[] = [];
  switch (topology) {
    case 'all-to-all':
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) links.push([i, j]);
      return links;
    case 'star':
      for (let i = 1; i < n; i++) links.push([0, i]);
      return links;
    case 'ring':
      for (let i = 0; i < n; i++) links.push(ordered(i, (i + 1) % n));
      return n === 2 ? links.slice(0, 1) : links;
    case 'line':
      for (let i = 1; i < n; i++) links.push([i - 1, i]);
      return links;
    case 'random': {
      // A random spanning tree keeps the graph connected; extra edges make cycles.
      const order = shuffled(
        rng,
        Array.from({ length: n }, (_, i) => i),
      );
      const have = new Set<string>();
      for (let k = 1; k < n; k++) {
        const l = ordered(order[k] as number, order[rng.int(k)] as number);
        links.push(l);
        have.add(`${l[0]}-${l[1]}`);
      }
      for (let i = 0; i < n; i++)
        for (let j = i + 1; j < n; j++) {
          if (!have.has(`${i}-${j}`) && chance(rng, 0.25)) links.push([i, j]);
        }
      return links.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
    }
  }
}

function ordered(a: number, b: number): Link {
  return a < b ? [a, b] : [b, a];
}
