import { readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { seededEnv } from '../env/index.js';
import { startServer } from '../server/serve.js';
import type { RunningServer } from '../server/serve.js';
import type { ServerConfig } from '../server/config.js';
import { DbError } from '../shared/errors.js';
import type { WebSocketEventLike, WebSocketLike } from '../transport/browser/index.js';
import { openReplica } from './index.js';
import type { Database, SyncHandle, SyncStatus, SyncStatusDetail } from './index.js';
import { setDefaultWebSocket, syncUrl } from './sync.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function open(id: string, env?: ReturnType<typeof seededEnv>): Promise<Database> {
  const db = await openReplica({ id, storage: 'memory', ...(env === undefined ? {} : { env }) });
  cleanups.push(() => db.close());
  return db;
}

function thrown(fn: () => unknown): DbError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DbError);
    return e as DbError;
  }
  throw new Error('expected a throw');
}

/** Polls with a deadline (never a fixed sleep). */
async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 20_000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Lets pending promise callbacks and microtasks run (the handle's own timers are manual). */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 0));

/**
 * A WebSocket class whose sockets never reach a server: each fails like a refused dial
 * (an 'error', then a 'close' 1006) right after construction. Records every url dialled.
 */
function failingWebSocket(): { Ctor: new (url: string) => WebSocketLike; urls: string[] } {
  const urls: string[] = [];
  class FailingSocket implements WebSocketLike {
    binaryType = 'blob';
    readyState = 0;
    bufferedAmount = 0;
    private readonly listeners = new Map<string, ((event: WebSocketEventLike) => void)[]>();
    constructor(url: string) {
      urls.push(url);
      queueMicrotask(() => {
        this.emit('error', { type: 'error' });
        this.finish(1006);
      });
    }
    send(): void {
      throw new Error('not open');
    }
    close(code = 1005): void {
      queueMicrotask(() => this.finish(code));
    }
    addEventListener(type: string, listener: (event: WebSocketEventLike) => void): void {
      this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
    }
    private finish(code: number): void {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.emit('close', { type: 'close', code, reason: '' });
    }
    private emit(type: string, event: WebSocketEventLike): void {
      for (const l of this.listeners.get(type) ?? []) l(event);
    }
  }
  return { Ctor: FailingSocket, urls };
}

function record(handle: SyncHandle): { status: SyncStatus; detail: SyncStatusDetail | undefined }[] {
  const seen: { status: SyncStatus; detail: SyncStatusDetail | undefined }[] = [];
  handle.subscribe((status, detail) => seen.push({ status, detail }));
  return seen;
}

describe('db.sync: urls and options', () => {
  it('maps http(s) server urls to the /replicate websocket, keeps other paths, and adds the token', () => {
    expect(syncUrl('http://127.0.0.1:7070')).toBe('ws://127.0.0.1:7070/replicate');
    expect(syncUrl('https://db.example.com/')).toBe('wss://db.example.com/replicate');
    expect(syncUrl('wss://db.example.com/eu/replicate')).toBe('wss://db.example.com/eu/replicate');
    expect(syncUrl('http://h:1', 'a b&c')).toBe('ws://h:1/replicate?token=a+b%26c');
    expect(new URL(syncUrl('http://h:1', 'a b&c')).searchParams.get('token')).toBe('a b&c');
  });

  it('throws invalid_input synchronously for bad urls and options, and dials nothing', async () => {
    const db = await open('client');
    const { Ctor, urls } = failingWebSocket();
    const bad: [unknown, Record<string, unknown>][] = [
      ['', {}],
      ['not a url', {}],
      ['/replicate', {}],
      ['ftp://db.example.com', {}],
      ['file:///tmp/x', {}],
      ['mailto:someone@example.com', {}],
      ['http://h:1/#top', {}],
      [42, {}],
      ['http://h:1/?token=a', { token: 'b' }],
      ['http://h:1', { token: '' }],
      ['http://h:1', { token: 7 }],
      ['http://h:1', { heartbeatMs: -1 }],
      ['http://h:1', { heartbeatMs: 1000, deadAfterMs: 500 }],
      ['http://h:1', { minBackoffMs: 1000, maxBackoffMs: 10 }],
      ['http://h:1', { minBackoffMs: Number.NaN }],
      ['http://h:1', { cluster: 'no spaces' }],
      ['http://h:1', { WebSocket: 'ws' }],
    ];
    for (const [url, options] of bad) {
      const error = thrown(() => db.sync(url as string, { WebSocket: Ctor, ...options }));
      expect(error.code, `${String(url)} ${JSON.stringify(options)}`).toBe('invalid_input');
    }
    expect(thrown(() => db.sync('http://h:1', null as never)).code).toBe('invalid_input');
    expect(urls).toEqual([]);
  });

  it('asks for the ws package when the runtime has no WebSocket (Node 20), and fails on a closed database', async () => {
    expect((globalThis as { WebSocket?: unknown }).WebSocket).toBeUndefined();
    // Importing the server registered ws as the Node entry does; undo that for this test.
    setDefaultWebSocket(undefined);
    try {
      const db = await open('client');
      const error = thrown(() => db.sync('http://127.0.0.1:1'));
      expect(error.code).toBe('invalid_input');
      expect(error.message).toContain('"ws"');
      await db.close();
      expect(thrown(() => db.sync('http://127.0.0.1:1', { WebSocket })).code).toBe('closed');
    } finally {
      setDefaultWebSocket(WebSocket);
    }
  });
});

describe('db.sync: redialling', () => {
  it('backs off exponentially with jitter from the env, capped, and the same seed gives the same delays', async () => {
    const delaysFor = async (seed: number): Promise<number[]> => {
      const env = seededEnv(seed);
      const db = await open(`client-${seed}`, env);
      const { Ctor, urls } = failingWebSocket();
      const handle = db.sync('http://127.0.0.1:9/', { WebSocket: Ctor, minBackoffMs: 100, maxBackoffMs: 1000 });
      const seen = record(handle);
      const delays: number[] = [];
      for (let dial = 1; dial <= 7; dial++) {
        await settle();
        expect(handle.status).toBe('offline');
        expect(urls).toHaveLength(dial);
        const offline = seen.at(-1);
        expect(offline?.status).toBe('offline');
        expect(offline?.detail?.error?.code).toBe('unavailable');
        expect(handle.lastError).toBe(offline?.detail?.error);
        const delay = offline?.detail?.retryInMs as number;
        delays.push(delay);
        // Not a moment early: the dial waits for the whole delay.
        env.clock.advance(delay - 1);
        env.timers.runDue();
        expect(urls).toHaveLength(dial);
        env.clock.advance(1);
        env.timers.runDue();
        expect(urls).toHaveLength(dial + 1);
        expect(handle.status).toBe('connecting');
        expect(seen.at(-1)).toEqual({ status: 'connecting', detail: { attempt: dial + 1 } });
      }
      expect(urls.every((u) => u === 'ws://127.0.0.1:9/replicate')).toBe(true);
      await handle.close();
      return delays;
    };
    const delays = await delaysFor(7);
    const steps = [100, 200, 400, 800, 1000, 1000, 1000];
    for (const [i, step] of steps.entries()) {
      expect(delays[i]).toBeGreaterThanOrEqual(step / 2);
      expect(delays[i]).toBeLessThanOrEqual(step);
    }
    // Jitter: the capped delays are not all equal.
    expect(new Set(delays.slice(4)).size).toBeGreaterThan(1);
    expect(await delaysFor(7)).toEqual(delays);
  });

  it('reconnect() dials at once while offline, and close() stops redialling for good', async () => {
    const env = seededEnv(3);
    const db = await open('client', env);
    const { Ctor, urls } = failingWebSocket();
    const handle = db.sync('http://127.0.0.1:9', { WebSocket: Ctor, token: 'secret', minBackoffMs: 5000 });
    const seen = record(handle);
    await settle();
    expect(handle.status).toBe('offline');
    expect(urls).toEqual(['ws://127.0.0.1:9/replicate?token=secret']);
    expect(handle.url).toBe('ws://127.0.0.1:9/replicate');
    expect(handle.lastError?.message).not.toContain('secret');

    handle.reconnect();
    expect(handle.status).toBe('connecting');
    expect(urls).toHaveLength(2);
    // Already dialling: nothing more.
    handle.reconnect();
    expect(urls).toHaveLength(2);
    await settle();
    expect(handle.status).toBe('offline');

    await handle.close();
    expect(handle.status).toBe('closed');
    expect(seen.at(-1)?.status).toBe('closed');
    handle.reconnect();
    env.clock.advance(10 * 60_000);
    env.timers.runDue();
    await settle();
    expect(urls).toHaveLength(2);
    expect(handle.status).toBe('closed');
    // Closing twice is fine; closing the database after is too.
    await handle.close();
  });

  it('a throwing status listener does not stop the loop', async () => {
    const env = seededEnv(5);
    const db = await open('client', env);
    const { Ctor, urls } = failingWebSocket();
    const handle = db.sync('http://127.0.0.1:9', { WebSocket: Ctor });
    handle.subscribe(() => {
      throw new Error('listener bug');
    });
    const seen = record(handle);
    await settle();
    env.clock.advance(60_000);
    env.timers.runDue();
    await settle();
    expect(urls).toHaveLength(2);
    expect(seen.map((s) => s.status)).toEqual(['offline', 'connecting', 'offline']);
  });
});

describe('db.sync with a real server', () => {
  const config = (port: number): ServerConfig => ({
    id: 'srv',
    port,
    host: '127.0.0.1',
    data: ':memory:',
    peers: [],
    secret: undefined,
    cluster: 'default',
    logLevel: 'silent',
    heartbeatMs: 300,
    deadAfterMs: 1200,
    mergeFunctions: undefined,
  });

  async function serve(port = 0): Promise<RunningServer> {
    const server = await startServer(config(port));
    cleanups.push(() => server.close());
    return server;
  }

  const fast = { WebSocket, heartbeatMs: 300, minBackoffMs: 20, maxBackoffMs: 200 } as const;

  it('replicates both ways while online, survives a server restart, and converges', async () => {
    let server = await serve();
    const db = await open('client');
    // A token is accepted by a server without tokens.
    const handle = db.sync(server.url, { ...fast, token: 'not-checked-yet' });
    const seen = record(handle);
    await until('online', () => handle.status === 'online');
    expect(seen.find((s) => s.status === 'online')?.detail).toEqual({ peer: 'srv' });
    expect(handle.peer).toBe('srv');

    await db.collection('notes').put('from-client', { by: 'client' });
    await server.db.collection('notes').put('from-server', { by: 'server' });
    await until('both to hold both notes', () => db.status().digest === server.db.status().digest);
    expect((await db.collection('notes').get('from-server'))?.value).toEqual({ by: 'server' });
    expect((await server.db.collection('notes').get('from-client'))?.value).toEqual({ by: 'client' });

    // The server goes away; the client keeps writing locally.
    const port = server.port;
    await server.close();
    await until('offline', () => handle.status === 'offline');
    expect(handle.lastError?.code).toBe('unavailable');
    for (let i = 0; i < 5; i++) await db.collection('notes').put(`offline-${i}`, { i });
    expect(handle.status).not.toBe('online');

    // A new server on the same port (empty: its memory store went with the old one).
    server = await serve(port);
    handle.reconnect();
    await until('online again', () => handle.status === 'online');
    await server.db.collection('notes').put('after', { by: 'server' });
    await until('convergence', () => db.status().digest === server.db.status().digest);
    expect(db.status().docs).toBe(8);
    expect(server.db.status().docs).toBe(8);
    expect((await server.db.collection('notes').get('offline-4'))?.value).toEqual({ i: 4 });
    expect(seen.map((s) => s.status)).toContain('offline');
  });

  it('close() ends the session at the server, and closing the database closes its handles', async () => {
    const server = await serve();
    const db = await open('client');
    const a = db.sync(server.url, fast);
    await until('online', () => a.status === 'online');
    await until('a session at the server', () => server.peers.sessions() === 1);
    await a.close();
    expect(a.status).toBe('closed');
    await until('no session at the server', () => server.peers.sessions() === 0);

    const b = db.sync(server.url.replace('http:', 'ws:'), fast);
    await until('online', () => b.status === 'online');
    await db.close();
    expect(b.status).toBe('closed');
    await until('no session at the server', () => server.peers.sessions() === 0);
  });

  it('reports a refusal (wrong cluster) as lastError and keeps retrying', async () => {
    const server = await serve();
    const db = await open('client');
    const handle = db.sync(server.url, { ...fast, cluster: 'other' });
    const seen = record(handle);
    await until('two failed sessions', () => seen.filter((s) => s.status === 'offline').length >= 2);
    expect(handle.lastError?.details).toMatchObject({ reason: 'wrong_cluster' });
    expect(handle.lastError?.message).toContain('cluster');
  });
});

/** A WebSocket class whose sockets never open (a dial on a dead route): they end only when closed. */
function stallingWebSocket(): { Ctor: new (url: string) => WebSocketLike; urls: string[] } {
  const urls: string[] = [];
  class StallingSocket implements WebSocketLike {
    binaryType = 'blob';
    readyState = 0;
    bufferedAmount = 0;
    private readonly closeListeners: ((event: WebSocketEventLike) => void)[] = [];
    constructor(url: string) {
      urls.push(url);
    }
    send(): void {
      throw new Error('not open');
    }
    close(code = 1005): void {
      if (this.readyState === 3) return;
      this.readyState = 3;
      queueMicrotask(() => {
        for (const l of this.closeListeners) l({ type: 'close', code, reason: '' });
      });
    }
    addEventListener(type: string, listener: (event: WebSocketEventLike) => void): void {
      if (type === 'close') this.closeListeners.push(listener);
    }
  }
  return { Ctor: StallingSocket, urls };
}

describe('db.sync: pending changes and the syncing status', () => {
  const fast = { WebSocket, heartbeatMs: 300, minBackoffMs: 20, maxBackoffMs: 200, network: null } as const;

  async function serve(port = 0): Promise<RunningServer> {
    const server = await startServer({
      id: 'srv',
      port,
      host: '127.0.0.1',
      data: ':memory:',
      peers: [],
      secret: undefined,
      cluster: 'default',
      logLevel: 'silent',
      heartbeatMs: 300,
      deadAfterMs: 1200,
      mergeFunctions: undefined,
    });
    cleanups.push(() => server.close());
    return server;
  }

  it('a local write is syncing with its count until the server acknowledges it, then online', async () => {
    const server = await serve();
    const db = await open('client');
    const handle = db.sync(server.url, fast);
    await until('online', () => handle.status === 'online');
    expect(handle.pending).toBe(0);
    const seen = record(handle);

    await db.collection('events').put('e1', { title: 'one' });
    // Counted at the commit, before the server can have acknowledged it.
    expect(seen[0]).toEqual({ status: 'syncing', detail: { peer: 'srv', pending: 1 } });
    await until('online again', () => handle.status === 'online');
    expect(handle.pending).toBe(0);
    expect(seen.at(-1)).toEqual({ status: 'online', detail: { peer: 'srv' } });

    // An atomic batch of two documents is one change.
    seen.length = 0;
    await db.batch([
      { type: 'put', collection: 'events', id: 'e2', value: { title: 'two' } },
      { type: 'put', collection: 'events', id: 'e3', value: { title: 'three' } },
    ]);
    expect(seen[0]).toEqual({ status: 'syncing', detail: { peer: 'srv', pending: 1 } });
    await until('online again', () => handle.status === 'online');
    expect((await server.db.collection('events').get('e3'))?.value).toEqual({ title: 'three' });

    // A change from the server is not the client's to send: it never shows as syncing.
    const before = seen.length;
    await server.db.collection('events').put('e4', { title: 'from the server' });
    await until('e4 at the client', async () => (await db.collection('events').get('e4')) !== null);
    await db.collection('events').put('e5', { title: 'after' });
    await until('online again', () => handle.status === 'online');
    expect(seen.slice(before).map((s) => s.detail?.pending ?? 0)).toEqual([1, 0]);
  });

  it('counts writes made offline and changes stored before sync began, and reports them once a session opens', async () => {
    let server = await serve();
    const db = await open('client');
    for (let i = 0; i < 3; i++) await db.collection('notes').put(`before-${i}`, { i });
    const handle = db.sync(server.url, fast);
    const seen = record(handle);
    // Unknown until the server says what it lacks: not counted, and not online either.
    expect(handle.pending).toBe(0);
    await until('online', () => handle.status === 'online');
    const statuses = seen.map((s) => s.status);
    expect(statuses.indexOf('syncing')).toBeLessThan(statuses.indexOf('online'));
    expect(seen.find((s) => s.status === 'syncing')?.detail).toEqual({ peer: 'srv', pending: 3 });

    const port = server.port;
    await server.close();
    await until('offline', () => handle.status === 'offline');
    for (let i = 0; i < 4; i++) await db.collection('notes').put(`offline-${i}`, { i });
    expect(handle.pending).toBe(4);
    expect(handle.status).toBe('offline');

    // A new, empty server: it lacks everything, the 3 from before and the 4 made offline.
    server = await serve(port);
    seen.length = 0;
    handle.reconnect();
    await until('online again', () => handle.status === 'online');
    expect(seen.find((s) => s.status === 'syncing')?.detail?.pending).toBe(7);
    expect(handle.pending).toBe(0);
    expect(server.db.status().docs).toBe(7);
  });

  it("the network's offline event drops a live session at once and dials nothing until online", async () => {
    const server = await serve();
    const db = await open('client');
    const network = new EventTarget();
    const handle = db.sync(server.url, { ...fast, network });
    await until('online', () => handle.status === 'online');
    await until('a session at the server', () => server.peers.sessions() === 1);

    network.dispatchEvent(new Event('offline'));
    expect(handle.status).toBe('offline');
    expect(handle.lastError?.details).toMatchObject({ reason: 'offline' });
    await until('no session at the server', () => server.peers.sessions() === 0);
    await db.collection('notes').put('while-offline', { ok: true });
    expect(handle.pending).toBe(1);
    expect(handle.status).toBe('offline');

    network.dispatchEvent(new Event('online'));
    expect(handle.status).toBe('connecting');
    await until('online', () => handle.status === 'online');
    expect((await server.db.collection('notes').get('while-offline'))?.value).toEqual({ ok: true });
    await handle.close();
    // Closed: the events are no longer heard.
    network.dispatchEvent(new Event('online'));
    expect(handle.status).toBe('closed');
  });

  it('no redial while the network is down; online dials at once, even over a stalled dial', async () => {
    const env = seededEnv(11);
    const db = await open('client', env);
    const network = new EventTarget();
    const failing = failingWebSocket();
    const handle = db.sync('http://127.0.0.1:9', { WebSocket: failing.Ctor, network, minBackoffMs: 100 });
    await settle();
    expect(handle.status).toBe('offline');
    network.dispatchEvent(new Event('offline'));
    env.clock.advance(10 * 60_000);
    env.timers.runDue();
    await settle();
    expect(failing.urls).toHaveLength(1);
    expect(handle.status).toBe('offline');
    network.dispatchEvent(new Event('online'));
    expect(failing.urls).toHaveLength(2);
    await handle.close();

    const stalling = stallingWebSocket();
    const stalled = db.sync('http://127.0.0.1:9', { WebSocket: stalling.Ctor, network });
    expect(stalled.status).toBe('connecting');
    network.dispatchEvent(new Event('online'));
    expect(stalling.urls).toHaveLength(2);
    expect(stalled.status).toBe('connecting');
    // Offline while dialling: the dial is given up, and nothing more is dialled.
    network.dispatchEvent(new Event('offline'));
    expect(stalled.status).toBe('offline');
    env.clock.advance(10 * 60_000);
    env.timers.runDue();
    await settle();
    expect(stalling.urls).toHaveLength(2);
    await stalled.close();
  });

  it('refuses a network option without addEventListener', async () => {
    const db = await open('client');
    expect(thrown(() => db.sync('http://h:1', { network: {} as never })).code).toBe('invalid_input');
  });
});

describe('the browser entry', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const nodeOnly = new Set([...builtinModules, 'ws', 'better-sqlite3']);
  const nodeGlobals = new Set(['Buffer', 'process', 'require', '__dirname', '__filename', 'setImmediate', 'global']);

  /**
   * Every module reachable from `entry` through imports that survive compilation (type-only
   * ones are erased), and what each reaches that only Node has: built-in or Node-only
   * packages, and Node globals. Returns problems as "chain: what".
   */
  function nodeOnlyReachable(entry: string): { files: string[]; problems: string[] } {
    const chains = new Map<string, string[]>([[entry, [entry]]]);
    const queue = [entry];
    const problems: string[] = [];
    for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
      const chain = chains.get(file) as string[];
      const source = ts.createSourceFile(
        file,
        readFileSync(path.join(root, file), 'utf8'),
        ts.ScriptTarget.ES2022,
        true,
      );
      const specifiers: string[] = [];
      const visit = (node: ts.Node): void => {
        if (ts.isImportDeclaration(node) && node.importClause?.isTypeOnly !== true) {
          specifiers.push((node.moduleSpecifier as ts.StringLiteral).text);
        } else if (ts.isExportDeclaration(node) && !node.isTypeOnly && node.moduleSpecifier !== undefined) {
          specifiers.push((node.moduleSpecifier as ts.StringLiteral).text);
        } else if (
          ts.isCallExpression(node) &&
          node.expression.kind === ts.SyntaxKind.ImportKeyword &&
          node.arguments[0] !== undefined &&
          ts.isStringLiteral(node.arguments[0])
        ) {
          specifiers.push(node.arguments[0].text);
        } else if (ts.isIdentifier(node) && nodeGlobals.has(node.text)) {
          const p = node.parent;
          const isMemberName = ts.isPropertyAccessExpression(p) && p.name === node;
          const isKey = (ts.isPropertyAssignment(p) || ts.isPropertyDeclaration(p)) && p.name === node;
          if (!isMemberName && !isKey) problems.push(`${chain.join(' -> ')}: uses the Node global ${node.text}`);
        }
        ts.forEachChild(node, visit);
      };
      visit(source);
      for (const spec of specifiers) {
        if (spec.startsWith('.')) {
          const target = path.posix.join(path.posix.dirname(file), spec.replace(/\.js$/, '.ts'));
          if (!chains.has(target)) {
            chains.set(target, [...chain, target]);
            queue.push(target);
          }
          continue;
        }
        const bare = spec.startsWith('node:') ? spec.slice(5) : spec;
        const pkg = bare.startsWith('@') ? bare.split('/').slice(0, 2).join('/') : (bare.split('/')[0] as string);
        if (spec.startsWith('node:') || nodeOnly.has(pkg)) problems.push(`${chain.join(' -> ')}: imports ${spec}`);
      }
    }
    return { files: [...chains.keys()], problems };
  }

  it('reaches no Node built-in, ws or better-sqlite3 from src/client/index.ts', () => {
    const { files, problems } = nodeOnlyReachable('src/client/index.ts');
    // The walk really covers the SDK: the database, the sync loop and its transport, the env.
    expect(files).toEqual(
      expect.arrayContaining([
        'src/client/database.ts',
        'src/client/sync.ts',
        'src/transport/browser/browser-websocket-connection.ts',
        'src/env/real.ts',
      ]),
    );
    expect(problems).toEqual([]);
  });

  it('would notice: the Node entry reaches ws, the Node transport uses Buffer', () => {
    expect(nodeOnlyReachable('src/index.ts').problems).toContain('src/index.ts: imports ws');
    const { problems } = nodeOnlyReachable('src/transport/websocket/index.ts');
    expect(problems.some((p) => p.endsWith('uses the Node global Buffer'))).toBe(true);
  });
});
