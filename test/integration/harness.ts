/**
 * Shared pieces of the multi-process integration tests: a Cluster that owns a temp dir, the
 * leaders (real `polyarch serve` processes) and anything else to close (fault proxies), and
 * tears all of it down even when a test failed; plus small HTTP helpers. Not a test file.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Leader, freePort, until } from '../support/leader-process.js';
import type { Doc, Status } from '../support/leader-process.js';

export { Leader, converged, freePort, until } from '../support/leader-process.js';
export type { Doc, Status } from '../support/leader-process.js';

/** Heartbeats for tests: a stalled link is noticed in about a second instead of six. */
export const FAST_HEARTBEAT = { heartbeatMs: 300, deadAfterMs: 1200 } as const;

export interface LeaderSpec {
  id: string;
  /** Peer URLs, or the ids of leaders of this cluster (resolved to their URLs). */
  peers?: string[];
  secret?: string;
  /** Use FAST_HEARTBEAT through a --config file (default true). */
  fastHeartbeat?: boolean;
  extraArgs?: string[];
}

export class Cluster {
  readonly dir: string;
  readonly leaders = new Map<string, Leader>();
  private readonly closers: (() => Promise<unknown>)[] = [];
  private readonly configFile: string;

  constructor(name: string) {
    this.dir = mkdtempSync(path.join(tmpdir(), `polyarch-it-${name}-`));
    this.configFile = path.join(this.dir, 'fast-heartbeat.json');
    writeFileSync(this.configFile, JSON.stringify(FAST_HEARTBEAT));
  }

  /** Reserves a port for each id, so leaders can name each other before any starts. */
  async ports(ids: readonly string[]): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const id of ids) {
      let port = await freePort();
      while ([...out.values()].includes(port)) port = await freePort();
      out.set(id, port);
    }
    return out;
  }

  /** Defines a leader (not started) with its own data dir under the cluster's temp dir. */
  define(spec: LeaderSpec, port: number): Leader {
    const extraArgs = [
      ...(spec.fastHeartbeat === false ? [] : ['--config', this.configFile]),
      ...(spec.extraArgs ?? []),
    ];
    const leader = new Leader({
      id: spec.id,
      port,
      data: path.join(this.dir, spec.id),
      peers: (spec.peers ?? []).map((p) => this.leaders.get(p)?.url ?? p),
      ...(spec.secret === undefined ? {} : { secret: spec.secret }),
      extraArgs,
    });
    this.leaders.set(spec.id, leader);
    return leader;
  }

  /**
   * Defines and starts leaders in parallel. A spec's peers may name leaders of the same call:
   * ports are reserved first, so each URL is known before any process starts.
   */
  async start(specs: readonly LeaderSpec[]): Promise<Leader[]> {
    const ports = await this.ports(specs.map((s) => s.id));
    const urlOf = (p: string): string => {
      const port = ports.get(p);
      return port === undefined ? (this.leaders.get(p)?.url ?? p) : `http://127.0.0.1:${port}`;
    };
    const leaders = specs.map((s) =>
      this.define({ ...s, peers: (s.peers ?? []).map(urlOf) }, ports.get(s.id) as number),
    );
    await Promise.all(leaders.map((l) => l.start()));
    return leaders;
  }

  get(id: string): Leader {
    const l = this.leaders.get(id);
    if (l === undefined) throw new Error(`no leader ${id}`);
    return l;
  }

  all(): Leader[] {
    return [...this.leaders.values()];
  }

  /** Registers something to close at teardown (a proxy, a socket). */
  onTeardown(close: () => Promise<unknown>): void {
    this.closers.push(close);
  }

  /** The last lines of every leader's output, for a failure message. */
  logs(chars = 3000): string {
    return this.all()
      .map((l) => `----- ${l.options.id} (exit ${String(l.exitCode)}) -----\n${l.output.slice(-chars)}`)
      .join('\n');
  }

  /** Stops every leader (SIGTERM, then SIGKILL after 5 s), closes what was registered, removes the temp dir. */
  async teardown(): Promise<void> {
    const errors: unknown[] = [];
    await Promise.all(
      this.closers.splice(0).map((c) =>
        c().catch((e: unknown) => {
          errors.push(e);
        }),
      ),
    );
    await Promise.all(this.all().map((l) => stopLeader(l).catch((e: unknown) => errors.push(e))));
    rmSync(this.dir, { recursive: true, force: true });
    if (errors.length > 0) throw new AggregateError(errors, 'teardown failed');
  }
}

/** SIGTERM and wait for the exit; SIGKILL if it has not exited after `graceMs`. */
export async function stopLeader(l: Leader, graceMs = 5000): Promise<number> {
  const child = l.child;
  if (child === undefined || l.exitCode !== null) return l.exitCode ?? 0;
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    return await l.stop('SIGTERM');
  } finally {
    clearTimeout(timer);
  }
}

/** PUT that must be acknowledged (201); returns the new version. */
export async function putOk(
  l: Leader,
  collection: string,
  id: string,
  value: unknown,
  headers: Record<string, string> = {},
): Promise<string> {
  const res = await l.put(collection, id, value, headers);
  const body = (await res.json()) as { version?: string; error?: string; message?: string };
  if (res.status !== 201 || body.version === undefined) {
    throw new Error(`PUT ${collection}/${id} at ${l.options.id}: ${res.status} ${JSON.stringify(body)}`);
  }
  return body.version;
}

/** GET that must find the document. */
export async function getOk(l: Leader, collection: string, id: string): Promise<Doc> {
  const doc = await l.get(collection, id);
  if (doc === null) throw new Error(`${collection}/${id} is absent at ${l.options.id}`);
  return doc;
}

/** Every live document of a collection, following the list's pages. */
export async function listAll(l: Leader, collection: string): Promise<Map<string, Doc>> {
  const out = new Map<string, Doc>();
  let after: string | null = null;
  for (;;) {
    const q: string = after === null ? '?limit=1000' : `?limit=1000&after=${encodeURIComponent(after)}`;
    const res = await fetch(`${l.url}/db/${encodeURIComponent(collection)}${q}`);
    if (!res.ok) throw new Error(`list ${collection} at ${l.options.id}: ${res.status} ${await res.text()}`);
    const page = (await res.json()) as { results: Doc[]; next: string | null };
    for (const d of page.results) out.set(d.id, d);
    if (page.next === null || page.results.length === 0) return out;
    after = page.next;
  }
}

/** The value of an unlabelled metric in GET /metrics (0 when absent). */
export async function metric(l: Leader, name: string): Promise<number> {
  const res = await fetch(`${l.url}/metrics`);
  const text = await res.text();
  for (const line of text.split('\n')) {
    const [key, value] = line.split(' ');
    if (key === name && value !== undefined) return Number(value);
  }
  return 0;
}

/** Waits until `leader` sees every listed peer id in state `live`. */
export async function peersLive(leader: Leader, peerIds: readonly string[], timeoutMs = 20_000): Promise<Status> {
  return until(
    `${leader.options.id} to see ${peerIds.join(', ')} live`,
    async () => {
      const s = await leader.status();
      return peerIds.every((id) => s.peers.some((p) => p.id === id && p.state === 'live')) ? s : undefined;
    },
    timeoutMs,
  );
}

/** The sibling values of a document (winner and conflicts), as canonical JSON strings, sorted. */
export function siblingValues(doc: Doc): string[] {
  return [doc.value, ...doc.conflicts.filter((c) => !c.deleted).map((c) => c.value)]
    .map((v) => JSON.stringify(v))
    .sort();
}
