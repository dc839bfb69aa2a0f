import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import type { CloseInfo, Connection } from '../connection.js';
import { DbError, isDbError } from '../../shared/index.js';
import { connectWebSocket, wrapWebSocket } from './index.js';
import { closeReason, parseCloseReason } from './websocket-connection.js';

interface Accepted {
  conn: Connection;
  ws: WebSocket;
  socket: net.Socket;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A ws server on 127.0.0.1:0 that wraps each connection synchronously, as the contract asks. */
async function startServer(): Promise<{ url: string; next(): Promise<Accepted> }> {
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
    url: `ws://127.0.0.1:${port}/sync`,
    next: () => {
      const a = ready.shift();
      return a === undefined ? new Promise((resolve) => waiting.push(resolve)) : Promise.resolve(a);
    },
  };
}

async function connect(url: string, options: Parameters<typeof connectWebSocket>[1] = {}): Promise<Connection> {
  const conn = await connectWebSocket(url, options);
  cleanups.push(() => conn.close('closed', 'test over'));
  return conn;
}

/** A pair of connected ends: [client, server]. */
async function pair(options: Parameters<typeof connectWebSocket>[1] = {}): Promise<[Connection, Accepted]> {
  const server = await startServer();
  const [client, accepted] = await Promise.all([connect(server.url, options), server.next()]);
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

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error('condition not met before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A port that nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
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

describe('websocket connection', () => {
  it('carries frames in order both ways, including empty and 1 MiB frames', async () => {
    const [client, server] = await pair();
    const atServer = collect(server.conn);
    const atClient = collect(client);
    const frames = [frameOf(0, 0), frameOf(1, 1), frameOf(1024 * 1024, 2), frameOf(0, 3)];
    for (let i = 0; i < 100; i++) frames.push(frameOf(i % 7, i));

    for (const f of frames) client.send(f);
    for (const f of frames) server.conn.send(f);
    await until(() => atServer.length === frames.length && atClient.length === frames.length);

    // Buffer.equals: a deep toEqual over a 1 MiB array takes seconds.
    for (const [i, f] of frames.entries()) {
      expect(Buffer.from(f).equals(atServer[i] ?? new Uint8Array(1))).toBe(true);
      expect(Buffer.from(f).equals(atClient[i] ?? new Uint8Array(1))).toBe(true);
      expect(Object.getPrototypeOf(atClient[i])).toBe(Uint8Array.prototype);
    }
  });

  it('copies a frame on send, so the caller may reuse its buffer', async () => {
    const [client, server] = await pair();
    const atClient = collect(client);
    const buffer = frameOf(4096, 9);
    server.conn.send(buffer);
    buffer.fill(0);
    await until(() => atClient.length === 1);
    expect(atClient[0]).toEqual(frameOf(4096, 9));
  });

  it('keeps a frame sent before any onFrame listener until one is registered', async () => {
    const server = await startServer();
    const accepting = server.next().then((a) => {
      a.conn.send(new Uint8Array([1, 2, 3]));
      return a;
    });
    const client = await connect(server.url);
    await accepting;
    await new Promise((resolve) => setTimeout(resolve, 50));
    const atClient = collect(client);
    await until(() => atClient.length === 1);
    expect(atClient[0]).toEqual(new Uint8Array([1, 2, 3]));
  });

  it('delivers the close code and message to the other side, and fires onClose once per end', async () => {
    const [client, server] = await pair();
    const atClient: CloseInfo[] = [];
    const atServer: CloseInfo[] = [];
    client.onClose((info) => atClient.push(info));
    server.conn.onClose((info) => atServer.push(info));

    server.conn.close('forbidden', 'replica r2 may not sync collection notes');
    expect(atServer).toEqual([{ code: 'forbidden', message: 'replica r2 may not sync collection notes' }]);
    await until(() => atClient.length > 0);
    expect(atClient).toEqual([{ code: 'forbidden', message: 'replica r2 may not sync collection notes' }]);
    expect(client.send(new Uint8Array([1]))).toBe(false);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(atClient).toHaveLength(1);
    expect(atServer).toHaveLength(1);
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

  it('truncates a long close message to the 123-byte limit at a character boundary', async () => {
    const [client, server] = await pair();
    const message = 'é'.repeat(100);
    const reason = closeReason('protocol', message);
    expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(123);
    expect(reason).not.toContain('\ufffd');

    const atClient = closed(client);
    server.conn.close('protocol', message);
    const info = await atClient;
    expect(info.code).toBe('protocol');
    expect(message.startsWith(info.message)).toBe(true);
    expect(info.message.length).toBeGreaterThan(50);
    expect(parseCloseReason('')).toEqual({ code: 'closed', message: '' });
  });

  it('ignores a second close, and calls an onClose registered after close at once', async () => {
    const [client, server] = await pair();
    const atServer: CloseInfo[] = [];
    server.conn.onClose((info) => atServer.push(info));
    client.close('closed', 'first');
    client.close('closed', 'second');
    await until(() => atServer.length > 0);
    expect(atServer).toEqual([{ code: 'closed', message: 'first' }]);

    const late: CloseInfo[] = [];
    client.onClose((info) => late.push(info));
    server.conn.onClose((info) => late.push(info));
    expect(late).toEqual([
      { code: 'closed', message: 'first' },
      { code: 'closed', message: 'first' },
    ]);
    server.conn.close('closed', 'after the peer closed');
    expect(atServer).toHaveLength(1);
  });

  it('reports disconnected when the server terminates the websocket', async () => {
    const [client, server] = await pair();
    const info = closed(client);
    server.ws.terminate();
    expect((await info).code).toBe('disconnected');
    expect((await info).message).not.toBe('');
  });

  it('reports disconnected when the server destroys the TCP socket', async () => {
    const [client, server] = await pair();
    const info = closed(client);
    server.socket.destroy();
    expect(await info).toMatchObject({ code: 'disconnected' });
  });

  it('closes with protocol when a text message arrives', async () => {
    const [client, server] = await pair();
    const atClient = closed(client);
    const atServer = closed(server.conn);
    server.ws.send('not a frame');
    expect((await atClient).code).toBe('protocol');
    expect((await atServer).code).toBe('protocol');
  });

  it('rejects fast with unavailable when nothing listens on the port', async () => {
    const port = await closedPort();
    const started = performance.now();
    const error = await rejection(connectWebSocket(`ws://127.0.0.1:${port}/sync`));
    expect(performance.now() - started).toBeLessThan(2000);
    expect(isDbError(error, 'unavailable')).toBe(true);
    expect(error.message).toContain('refused');
    expect(error.message).toContain(String(port));
  });

  it('rejects with the status and message of a server that answers 401 JSON', async () => {
    const server = http.createServer();
    server.on('upgrade', (_req, socket: net.Socket) => {
      const body = JSON.stringify({ error: 'unauthorized', message: 'bad token for replica r1' });
      socket.end(
        'HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n' +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { port } = server.address() as AddressInfo;

    const error = await rejection(
      connectWebSocket(`ws://127.0.0.1:${port}/sync?token=secret`, { headers: { authorization: 'Bearer x' } }),
    );
    expect(error.code).toBe('unavailable');
    expect(error.message).toContain('401');
    expect(error.message).toContain('unauthorized');
    expect(error.message).toContain('bad token for replica r1');
    expect(error.message).not.toContain('secret');
    expect(error.details).toMatchObject({ status: 401, error: 'unauthorized', message: 'bad token for replica r1' });
  });

  it('rejects with unavailable when the handshake times out', async () => {
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

    const started = performance.now();
    const error = await rejection(connectWebSocket(`ws://127.0.0.1:${port}/sync`, { timeoutMs: 200 }));
    expect(performance.now() - started).toBeGreaterThanOrEqual(190);
    expect(error.code).toBe('unavailable');
    expect(error.message).toContain('timed out after 200 ms');
  });

  it('returns false from send under backpressure, and true again once drained', async () => {
    const [client, server] = await pair({ highWaterBytes: 256 * 1024 });
    // The server reads nothing until its first onFrame; pause it anyway to say so.
    server.ws.pause();
    const frame = frameOf(64 * 1024, 5);
    let sent = 0;
    let accepted = true;
    while (accepted && sent < 4096) {
      accepted = client.send(frame);
      sent++;
    }
    expect(accepted).toBe(false);

    let received = 0;
    server.conn.onFrame(() => received++);
    server.ws.resume();
    await until(() => received === sent, 20_000);
    expect(client.send(frame)).toBe(true);
  });
});
