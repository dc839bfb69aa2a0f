import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import type { CloseInfo } from '../../src/transport/index.js';
import { connectWebSocket, wrapWebSocket } from '../../src/transport/websocket/index.js';
import { startFaultProxy } from './fault-proxy.js';
import type { FaultProxy } from './fault-proxy.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Echo {
  port: number;
  /** Server-side sockets, in order of arrival. */
  sockets: Socket[];
}

/** A TCP echo server on 127.0.0.1:0. */
async function startEcho(): Promise<Echo> {
  const sockets: Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.on('error', () => {});
    socket.on('data', (chunk) => socket.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as AddressInfo).port, sockets };
}

async function proxyTo(echo: Echo): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: echo.port } });
  cleanups.push(() => proxy.close());
  return proxy;
}

interface Client {
  socket: Socket;
  /** Everything received so far. */
  received(): Buffer;
  closed: Promise<void>;
}

async function connect(port: number): Promise<Client> {
  const socket = net.connect({ host: '127.0.0.1', port });
  socket.on('error', () => {});
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  cleanups.push(() => {
    socket.destroy();
  });
  return { socket, received: () => Buffer.concat(chunks), closed };
}

async function until(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error('condition not met before the deadline');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function within<T>(promise: Promise<T>, timeoutMs: number): Promise<T> {
  return Promise.race([
    promise,
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`not settled within ${timeoutMs} ms`)), timeoutMs)),
  ]);
}

/** Writes, then checks that no echo comes back for `ms` and the socket stays open. */
async function expectStalled(client: Client, ms = 300): Promise<void> {
  const before = client.received().length;
  client.socket.write('are you there?');
  await new Promise((resolve) => setTimeout(resolve, ms));
  expect(client.received().length).toBe(before);
  expect(client.socket.destroyed).toBe(false);
  expect(client.socket.readyState).toBe('open');
}

async function expectEcho(client: Client, text = 'hello'): Promise<void> {
  const before = client.received().length;
  client.socket.write(text);
  await until(() => client.received().length >= before + text.length);
  expect(client.received().subarray(before).toString()).toBe(text);
}

function bytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

describe('fault proxy', () => {
  it('passes bytes through unchanged and in order', async () => {
    const proxy = await proxyTo(await startEcho());
    const client = await connect(proxy.port);
    const data = bytes(2 * 1024 * 1024, 7);
    for (let at = 0; at < data.length; at += 65_536) client.socket.write(data.subarray(at, at + 65_536));
    await until(() => client.received().length >= data.length, 20_000);
    expect(client.received().equals(data)).toBe(true);
    expect(proxy.stats()).toEqual({ connections: 1, bytesForwarded: 2 * data.length });
    expect(proxy.url('/sync')).toBe(`http://127.0.0.1:${proxy.port}/sync`);
  });

  it('adds at least the configured latency each way, and keeps order under jitter', async () => {
    const proxy = await proxyTo(await startEcho());
    const client = await connect(proxy.port);
    proxy.setLatency({ ms: 60, jitterMs: 20 });

    const started = performance.now();
    await expectEcho(client, 'ping');
    const roundTripMs = performance.now() - started;
    expect(roundTripMs).toBeGreaterThanOrEqual(120);
    expect(roundTripMs).toBeLessThan(5000);

    // Separate chunks each get their own jittered delay, yet none overtakes another.
    const parts = Array.from({ length: 30 }, (_, i) => `<${i}>`);
    for (const part of parts) {
      client.socket.write(part);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const expected = 'ping' + parts.join('');
    await until(() => client.received().length >= expected.length);
    expect(client.received().toString()).toBe(expected);
  });

  it('cut closes both sides of every connection', async () => {
    const echo = await startEcho();
    const proxy = await proxyTo(echo);
    const client = await connect(proxy.port);
    await expectEcho(client);
    const serverSide = echo.sockets[0];
    expect(serverSide).toBeDefined();
    const serverClosed = new Promise<void>((resolve) => serverSide?.once('close', () => resolve()));

    proxy.cut();
    await within(Promise.all([client.closed, serverClosed]), 5000);
    expect(proxy.stats().connections).toBe(0);
  });

  it('partition stalls existing and new connections without closing them', async () => {
    const echo = await startEcho();
    const proxy = await proxyTo(echo);
    const old = await connect(proxy.port);
    await expectEcho(old);

    proxy.partition();
    await expectStalled(old);
    // The other direction too: what the server pushes does not arrive either.
    const before = old.received().length;
    echo.sockets[0]?.write('pushed during the partition');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(old.received().length).toBe(before);
    const fresh = await connect(proxy.port);
    await expectStalled(fresh);
    expect(echo.sockets).toHaveLength(1);
    expect(proxy.stats().connections).toBe(2);

    proxy.heal();
    await within(Promise.all([old.closed, fresh.closed]), 5000);
    const after = await connect(proxy.port);
    await expectEcho(after);
  });

  it('drops connections at random while dropping, and not after stopDropping', async () => {
    const proxy = await proxyTo(await startEcho());
    const doomed = await connect(proxy.port);
    proxy.dropConnectionsRandomly({ probabilityPerSecond: 0.5, random: () => 0 });
    await within(doomed.closed, 5000);

    proxy.stopDropping();
    const survivor = await connect(proxy.port);
    await new Promise((resolve) => setTimeout(resolve, 300));
    await expectEcho(survivor);
  });

  it('close stops listening and closes open connections', async () => {
    const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: (await startEcho()).port } });
    const client = await connect(proxy.port);
    await expectEcho(client);
    await within(proxy.close(), 5000);
    await within(client.closed, 5000);
    await expect(connect(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('carries a websocket connection, which reports disconnected when the link is cut', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    wss.on('connection', (ws) => {
      const conn = wrapWebSocket(ws);
      conn.onFrame((frame) => conn.send(frame));
    });
    await new Promise<void>((resolve) => wss.once('listening', resolve));
    cleanups.push(() => new Promise<void>((resolve) => wss.close(() => resolve())));
    const proxy = await startFaultProxy({ target: { host: '127.0.0.1', port: (wss.address() as AddressInfo).port } });
    cleanups.push(() => proxy.close());
    proxy.setLatency({ ms: 10 });

    const conn = await connectWebSocket(proxy.url('/sync'));
    const frames: Uint8Array[] = [];
    conn.onFrame((frame) => frames.push(frame));
    const closed = new Promise<CloseInfo>((resolve) => conn.onClose(resolve));
    conn.send(new Uint8Array([1, 2, 3]));
    await until(() => frames.length === 1);
    expect(frames[0]).toEqual(new Uint8Array([1, 2, 3]));

    proxy.cut();
    expect(await within(closed, 5000)).toMatchObject({ code: 'disconnected' });
  });
});
