import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import type { WebSocket as ServerSocket } from 'ws';
import { realEnv } from '../../env/index.js';
import { DbError, isDbError } from '../../shared/index.js';
import type { CloseInfo, Connection } from '../connection.js';
import { wrapWebSocket } from '../websocket/index.js';
import { connectBrowserWebSocket } from './index.js';
import type { BrowserConnection, BrowserWebSocketOptions } from './index.js';
import { closeReason, parseCloseReason, redactUrl } from './browser-websocket-connection.js';

// The server side is the Node transport (what `polyarch serve` runs); the client side is the
// browser transport driven by ws's WHATWG-compatible WebSocket class.
interface Accepted {
  conn: Connection;
  ws: ServerSocket;
  socket: net.Socket;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const timers = realEnv().timers;

async function startServer(): Promise<{ url: string; port: number; next(): Promise<Accepted> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  const ready: Accepted[] = [];
  const waiting: ((a: Accepted) => void)[] = [];
  wss.on('connection', (ws, req) => {
    const accepted = { conn: wrapWebSocket(ws), ws, socket: req.socket };
    const waiter = waiting.shift();
    if (waiter === undefined) ready.push(accepted);
    else waiter(accepted);
  });
  await new Promise<void>((resolve) => wss.once('listening', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        wss.close(() => resolve());
      }),
  );
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/replicate`,
    port,
    next: () => {
      const a = ready.shift();
      return a === undefined ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve(a);
    },
  };
}

async function connect(url: string, options: BrowserWebSocketOptions = {}): Promise<BrowserConnection> {
  const conn = await connectBrowserWebSocket(url, { WebSocket, timers, ...options });
  cleanups.push(() => conn.close('closed', 'test over'));
  return conn;
}

async function pair(): Promise<[BrowserConnection, Accepted]> {
  const server = await startServer();
  const [client, accepted] = await Promise.all([connect(server.url), server.next()]);
  return [client, accepted];
}

function collect(conn: Connection): Uint8Array[] {
  const frames: Uint8Array[] = [];
  conn.onFrame((f) => frames.push(f));
  return frames;
}

function closed(conn: Connection): Promise<CloseInfo> {
  return new Promise((resolve) => conn.onClose(resolve));
}

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error('condition not met before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function rejection(promise: Promise<unknown>): Promise<DbError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(DbError);
    return e as DbError;
  }
  throw new Error('expected a rejection');
}

function frameOf(length: number, seed: number): Uint8Array {
  const frame = new Uint8Array(length);
  for (let i = 0; i < length; i++) frame[i] = (i * 31 + seed) & 0xff;
  return frame;
}

describe('browser websocket connection', () => {
  it('carries binary frames in order both ways, including empty and 1 MiB frames', async () => {
    const [client, server] = await pair();
    const atServer = collect(server.conn);
    const atClient = collect(client);
    const frames = [frameOf(0, 0), frameOf(1, 1), frameOf(1024 * 1024, 2), frameOf(0, 3)];
    for (let i = 0; i < 50; i++) frames.push(frameOf(i % 7, i));

    for (const f of frames) expect(client.send(f)).toBe(true);
    for (const f of frames) server.conn.send(f);
    await until(() => atServer.length === frames.length && atClient.length === frames.length);

    for (const [i, f] of frames.entries()) {
      expect(Buffer.from(f).equals(atServer[i] ?? new Uint8Array(1))).toBe(true);
      expect(Buffer.from(f).equals(atClient[i] ?? new Uint8Array(1))).toBe(true);
      expect(Object.getPrototypeOf(atClient[i])).toBe(Uint8Array.prototype);
    }
  });

  it('sends only the bytes of a view, and copies them so the caller may reuse its buffer', async () => {
    const [client, server] = await pair();
    const atServer = collect(server.conn);
    const buffer = frameOf(64, 4);
    client.send(buffer.subarray(8, 24));
    buffer.fill(0);
    await until(() => atServer.length === 1);
    expect(atServer[0]).toEqual(frameOf(64, 4).subarray(8, 24));
  });

  it('delivers our close code and message to a Node peer, and a Node peer’s to us', async () => {
    const [client, server] = await pair();
    const atServer = closed(server.conn);
    client.close('forbidden', 'no access to collection notes');
    expect(await atServer).toEqual({ code: 'forbidden', message: 'no access to collection notes' });
    expect(client.send(new Uint8Array([1]))).toBe(false);

    const [client2, server2] = await pair();
    const atClient: CloseInfo[] = [];
    client2.onClose((info) => atClient.push(info));
    server2.conn.close('unavailable', 'this leader is shutting down');
    await until(() => atClient.length > 0);
    expect(atClient).toEqual([{ code: 'unavailable', message: 'this leader is shutting down' }]);
    await client2.socketClosed;
    expect(atClient).toHaveLength(1);
  });

  it('delivers the frames a peer sent before closing, then the close', async () => {
    const [client, server] = await pair();
    const events: string[] = [];
    client.onFrame((f) => events.push(`frame ${f.length}`));
    client.onClose((info) => events.push(`close ${info.code}`));
    server.conn.send(new Uint8Array(1));
    server.conn.send(new Uint8Array(2));
    server.conn.close('closed', 'done');
    await until(() => events.length === 3);
    expect(events).toEqual(['frame 1', 'frame 2', 'close closed']);
  });

  it('keeps frames that arrive before any onFrame listener', async () => {
    const server = await startServer();
    const accepting = server.next().then((a) => {
      a.conn.send(new Uint8Array([1, 2, 3]));
      return a;
    });
    const client = await connect(server.url);
    await accepting;
    await until(() => (client as unknown as { backlog: unknown[] }).backlog.length === 1);
    const atClient = collect(client);
    await until(() => atClient.length === 1);
    expect(atClient[0]).toEqual(new Uint8Array([1, 2, 3]));
  });

  it('reports disconnected when the server drops the TCP socket', async () => {
    const [client, server] = await pair();
    const info = closed(client);
    server.socket.destroy();
    expect((await info).code).toBe('disconnected');
  });

  it('closes with protocol when a text message arrives', async () => {
    const [client, server] = await pair();
    const atClient = closed(client);
    const atServer = closed(server.conn);
    server.ws.send('not a frame');
    expect((await atClient).code).toBe('protocol');
    expect((await atServer).code).toBe('protocol');
  });

  it('rejects with unavailable when nothing listens, naming the refusal but not the token', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    const error = await rejection(
      connectBrowserWebSocket(`ws://127.0.0.1:${port}/replicate?token=secret`, { WebSocket, timers }),
    );
    expect(isDbError(error, 'unavailable')).toBe(true);
    expect(error.message).toContain('refused');
    expect(error.message).toContain(String(port));
    expect(error.message).not.toContain('secret');
  });

  it('rejects with unavailable when the server refuses the upgrade', async () => {
    const server = http.createServer();
    server.on('upgrade', (_req, socket: net.Socket) => {
      socket.end('HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { port } = server.address() as AddressInfo;
    const error = await rejection(connectBrowserWebSocket(`ws://127.0.0.1:${port}/replicate`, { WebSocket, timers }));
    expect(error.code).toBe('unavailable');
    expect(error.message).toContain('401');
  });

  it('rejects with unavailable when the handshake times out, and with closed when aborted', async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => sockets.push(s.on('error', () => {})));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          for (const s of sockets) s.destroy();
          server.close(() => resolve());
        }),
    );
    const { port } = server.address() as AddressInfo;
    const url = `ws://127.0.0.1:${port}/replicate`;

    const timedOut = await rejection(connectBrowserWebSocket(url, { WebSocket, timers, timeoutMs: 200 }));
    expect(timedOut.code).toBe('unavailable');
    expect(timedOut.message).toContain('timed out after 200 ms');

    const abort = new AbortController();
    const pending = connectBrowserWebSocket(url, { WebSocket, timers, signal: abort.signal });
    abort.abort();
    expect((await rejection(pending)).code).toBe('closed');
  });

  it('rejects a url the WebSocket class refuses, and a runtime without a WebSocket class, with invalid_input', async () => {
    expect((await rejection(connectBrowserWebSocket('ftp://example.com', { WebSocket, timers }))).code).toBe(
      'invalid_input',
    );
    // Node 20 has no global WebSocket.
    expect((globalThis as { WebSocket?: unknown }).WebSocket).toBeUndefined();
    expect((await rejection(connectBrowserWebSocket('ws://127.0.0.1:1/replicate'))).code).toBe('invalid_input');
  });

  it('cuts a long close reason at a character boundary, and parses what it wrote', () => {
    const message = 'é'.repeat(100);
    const reason = closeReason('protocol', message);
    expect(new TextEncoder().encode(reason).length).toBeLessThanOrEqual(123);
    expect(reason).not.toContain('\ufffd');
    const parsed = parseCloseReason(reason);
    expect(parsed.code).toBe('protocol');
    expect(message.startsWith(parsed.message)).toBe(true);
    expect(parseCloseReason('')).toEqual({ code: 'closed', message: '' });
    expect(redactUrl('wss://u:p@db.example.com/replicate?token=t')).toBe('wss://db.example.com/replicate');
  });
});
