/**
 * What every page reads the same way: its elements, the leader to sync with and the cluster.
 * URL parameters: `leader` (host:port or a ws(s):// or http(s):// url; default the server that
 * served the page) and `cluster` (default: the serving leader's, from ../config.json).
 */

export function element<T extends HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`the page lacks #${id}`);
  return el as T;
}

/** The leader's url from `?leader=`, or the server that served this page. */
export function leaderOf(params: URLSearchParams): string {
  const leader = params.get('leader') ?? location.host;
  if (/^(ws|wss|http|https):\/\//.test(leader)) return leader;
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${leader}`;
}

/** The cluster from `?cluster=`, else the serving leader's, else 'default'. */
export async function clusterOf(params: URLSearchParams): Promise<string> {
  const given = params.get('cluster');
  if (given !== null) return given;
  try {
    const res = await fetch(new URL('../config.json', location.href));
    const body = (await res.json()) as { cluster?: unknown };
    if (res.ok && typeof body.cluster === 'string') return body.cluster;
  } catch {
    // Offline, or served by something other than a leader: the default cluster.
  }
  return 'default';
}
