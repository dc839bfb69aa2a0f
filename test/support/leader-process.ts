/**
 * Real `polyarch serve` processes for integration tests and benchmarks: spawn, wait until
 * ready, query over HTTP, kill with a signal, restart on the same store. Everything on
 * loopback; every wait has a deadline.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(root, 'src/cli/main.ts');
const builtCli = path.join(root, 'dist/cli/main.js');

export interface LeaderOptions {
  id: string;
  port: number;
  data: string;
  peers?: string[];
  secret?: string;
  cluster?: string;
  extraArgs?: string[];
  env?: Record<string, string>;
  /** Run the compiled CLI (dist/, after `npm run build`) instead of the sources through tsx. */
  built?: boolean;
}

/** A free TCP port on 127.0.0.1 (there is a small race until the caller binds it). */
/**
 * A port no one is listening on, for a leader started next. Taken at random below the
 * ephemeral range (Linux: 32768-60999), from which the OS picks the local ports of outgoing
 * connections and of `listen(0)`: a port from there could be taken by a test's client socket
 * between this check and the leader's bind, which happened with several test files at once.
 */
export async function freePort(): Promise<number> {
  for (let tries = 0; ; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
    if (tries > 50) throw new Error('no free port found in 20000-31999');
  }
}

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000,
  everyMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`,
      );
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export class Leader {
  child: ChildProcess | undefined;
  output = '';
  exitCode: number | null = null;

  constructor(readonly options: LeaderOptions) {}

  get url(): string {
    return `http://127.0.0.1:${this.options.port}`;
  }

  args(): string[] {
    const o = this.options;
    const args = ['serve', '--id', o.id, '--port', String(o.port), '--data', o.data, '--log-level', 'warn'];
    for (const p of o.peers ?? []) args.push('--peer', p);
    if (o.secret !== undefined) args.push('--secret', o.secret);
    if (o.cluster !== undefined) args.push('--cluster', o.cluster);
    return [...args, ...(o.extraArgs ?? [])];
  }

  /** Starts the process and waits until it answers /status. */
  async start(): Promise<this> {
    this.exitCode = null;
    const argv = this.options.built === true ? [builtCli, ...this.args()] : ['--import', 'tsx', cli, ...this.args()];
    const child = spawn(process.execPath, argv, {
      cwd: root,
      env: { ...process.env, ...this.options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.on('exit', (code) => (this.exitCode = code ?? -1));
    await until(`${this.options.id} to answer /status`, async () => {
      if (this.exitCode !== null)
        throw new Error(`${this.options.id} exited with ${this.exitCode}: ${this.output.slice(-2000)}`);
      const res = await fetch(`${this.url}/status`);
      // A leader that requires client tokens answers 401 once it is up.
      return res.ok || res.status === 401 ? true : undefined;
    });
    return this;
  }

  /** Sends `signal` and waits for the process to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
    const child = this.child;
    if (child === undefined || this.exitCode !== null) return this.exitCode ?? 0;
    const exited = new Promise<number>((resolve) => child.once('exit', (code) => resolve(code ?? -1)));
    child.kill(signal);
    const code = await exited;
    this.child = undefined;
    return code;
  }

  async status(): Promise<Status> {
    const res = await fetch(`${this.url}/status`);
    if (!res.ok) throw new Error(`status ${res.status}`);
    return (await res.json()) as Status;
  }

  async put(collection: string, id: string, value: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(`${this.url}/db/${encodeURIComponent(collection)}/${encodeURIComponent(id)}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(value),
    });
  }

  async get(collection: string, id: string): Promise<Doc | null> {
    const res = await fetch(`${this.url}/db/${encodeURIComponent(collection)}/${encodeURIComponent(id)}`);
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`GET ${collection}/${id}: ${res.status}`);
    return (await res.json()) as Doc;
  }
}

export interface Status {
  replica: string;
  seq: number;
  digest: string;
  docs: number;
  conflicts: number;
  vector: Record<string, unknown>;
  peers: {
    id: string | null;
    url: string | null;
    direction: string;
    state: string;
    lag: { changes: number; ms: number };
    lastError: string | null;
  }[];
}

export interface Doc {
  id: string;
  value: unknown;
  version: string;
  origin: string;
  conflicts: { value: unknown; deleted: boolean; origin: string }[];
}

/** Waits until every leader shows the same digest and no peer lags. */
export async function converged(leaders: readonly Leader[], timeoutMs = 30_000): Promise<Status[]> {
  return until(
    'the leaders to converge',
    async () => {
      const all = await Promise.all(leaders.map((l) => l.status()));
      const same = new Set(all.map((s) => s.digest)).size === 1;
      const quiet = all.every((s) => s.peers.every((p) => p.lag.changes === 0));
      return same && quiet ? all : undefined;
    },
    timeoutMs,
    100,
  );
}
