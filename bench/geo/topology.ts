/**
 * Three datacenters on loopback: `polyarch serve` processes eu, us and ap, each inter-DC link
 * through its own fault proxy (one-way delay plus jitter), and for every datacenter's client
 * two ways in: its local leader at local latency (multi-leader) and eu at the inter-DC delay
 * (single-leader). Both exist at once, so the two modes share the build and the network.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Leader, freePort, until } from '../../test/support/leader-process.js';
import type { Status } from '../../test/support/leader-process.js';
import { startFaultProxy } from '../../test/support/fault-proxy.js';
import type { FaultProxy } from '../../test/support/fault-proxy.js';

export const DCS = ['eu', 'us', 'ap'] as const;
export type Dc = (typeof DCS)[number];
export type LinkName = 'eu-us' | 'eu-ap' | 'us-ap';

/** One-way delays in ms between datacenters. */
export type Delays = Record<LinkName, number>;

export interface TopologyOptions {
  root: string;
  delays: Delays;
  /** Jitter as a fraction of each delay (0.1: up to 10% more). */
  jitter: number;
  /** One-way delay between a client and its local leader. */
  localMs: number;
  /** Run dist/ (after a build) instead of the sources through tsx. */
  built: boolean;
}

export function linkOf(a: Dc, b: Dc): LinkName {
  const [x, y] = DCS.indexOf(a) < DCS.indexOf(b) ? [a, b] : [b, a];
  return `${x}-${y}` as LinkName;
}

/** The leader of the pair that dials the other (docs/operations.md: us dials eu, ap dials eu and us). */
const TARGET: Record<LinkName, Dc> = { 'eu-us': 'eu', 'eu-ap': 'eu', 'us-ap': 'us' };

export class GeoTopology {
  readonly leaders = new Map<Dc, Leader>();
  /** Inter-DC proxies, by link. */
  readonly links = new Map<LinkName, FaultProxy>();
  /** A client's way to its own leader. */
  readonly local = new Map<Dc, FaultProxy>();
  /** A client's way to eu, the single leader. */
  readonly toEu = new Map<Dc, FaultProxy>();

  private constructor(readonly options: TopologyOptions) {}

  static async start(options: TopologyOptions): Promise<GeoTopology> {
    const t = new GeoTopology(options);
    try {
      await t.init();
    } catch (e) {
      await t.close();
      throw e;
    }
    return t;
  }

  private async init(): Promise<void> {
    const o = this.options;
    const ports = new Map<Dc, number>();
    for (const dc of DCS) {
      let p = await freePort();
      while ([...ports.values()].includes(p)) p = await freePort();
      ports.set(dc, p);
    }
    const target = (dc: Dc) => ({ host: '127.0.0.1', port: ports.get(dc) as number });
    const proxy = async (to: Dc, ms: number): Promise<FaultProxy> => {
      const p = await startFaultProxy({ target: target(to) });
      p.setLatency({ ms, jitterMs: ms * o.jitter });
      return p;
    };
    for (const link of Object.keys(TARGET) as LinkName[])
      this.links.set(link, await proxy(TARGET[link], o.delays[link]));
    for (const dc of DCS) {
      this.local.set(dc, await proxy(dc, o.localMs));
      this.toEu.set(dc, await proxy('eu', dc === 'eu' ? o.localMs : o.delays[linkOf(dc, 'eu')]));
    }
    // Heartbeats fast enough that a killed peer is noticed within about a second.
    const config = path.join(o.root, 'geo-config.json');
    writeFileSync(config, JSON.stringify({ heartbeatMs: 500, deadAfterMs: 2000 }));
    const peersOf = (dc: Dc): string[] =>
      (Object.keys(TARGET) as LinkName[])
        .filter((l) => l.split('-').includes(dc) && TARGET[l] !== dc)
        .map((l) => (this.links.get(l) as FaultProxy).url());
    for (const dc of DCS) {
      this.leaders.set(
        dc,
        new Leader({
          id: dc,
          port: ports.get(dc) as number,
          data: path.join(o.root, dc),
          peers: peersOf(dc),
          built: o.built,
          extraArgs: ['--config', config],
        }),
      );
    }
    await Promise.all([...this.leaders.values()].map((l) => l.start()));
    await this.allLive();
  }

  leader(dc: Dc): Leader {
    return this.leaders.get(dc) as Leader;
  }

  link(name: LinkName): FaultProxy {
    return this.links.get(name) as FaultProxy;
  }

  /** The base URL a client of `dc` writes to, in each mode. */
  clientUrl(dc: Dc, mode: 'multi' | 'single'): string {
    return ((mode === 'multi' ? this.local : this.toEu).get(dc) as FaultProxy).url();
  }

  /** Waits until every leader sees both others live. */
  async allLive(timeoutMs = 60_000): Promise<void> {
    await until(
      'every inter-DC link to be live',
      async () => {
        const all = await Promise.all(DCS.map((dc) => this.leader(dc).status()));
        return all.every((s) => s.peers.length === 2 && s.peers.every((p) => p.state === 'live')) ? true : undefined;
      },
      timeoutMs,
      100,
    );
  }

  /** Waits until all three show the same digest with nothing pending; returns their statuses. */
  async converged(timeoutMs = 120_000): Promise<Status[]> {
    return until(
      'the three leaders to converge',
      async () => {
        const all = await Promise.all(DCS.map((dc) => this.leader(dc).status()));
        const same = new Set(all.map((s) => s.digest)).size === 1;
        return same && all.every((s) => s.peers.every((p) => p.lag.changes === 0)) ? all : undefined;
      },
      timeoutMs,
      100,
    );
  }

  async close(): Promise<void> {
    const proxies = [...this.links.values(), ...this.local.values(), ...this.toEu.values()];
    await Promise.all(
      [...this.leaders.values()].map(async (l) => {
        const child = l.child;
        if (child === undefined || l.exitCode !== null) return;
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await l.stop('SIGTERM').finally(() => clearTimeout(timer));
      }),
    );
    await Promise.all(proxies.map((p) => p.close()));
  }
}
