/**
 * Webhook delivery against a real HTTP server on 127.0.0.1: what is sent (method, headers,
 * body), which answers acknowledge (2xx) and which reject (other statuses, no answer within
 * the timeout, nobody listening), and that failure messages never carry header values or
 * URL credentials.
 */
import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeUrl, webhookHandler } from './webhook-trigger.js';

interface Received {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A receiver whose answer the test picks per request; `null` never answers. */
let answer: (res: ServerResponse) => void = (res) => res.writeHead(200).end();
const received: Received[] = [];
const held: ServerResponse[] = [];
let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      received.push({ method: req.method, url: req.url, headers: req.headers, body });
      answer(res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const res of held) res.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const event = {
  key: 'eu:42',
  trigger: 'mailer',
  collection: 'invoices',
  id: 'inv-1',
  origin: 'eu',
  seq: 7,
  time: '2026-11-29T05:00:00.000Z',
  deleted: false,
  value: { total: 12.5, lines: ['a', 'b'], note: 'é' },
  attempt: 1,
};

function target(extra: { headers?: Record<string, string>; timeoutMs?: number; path?: string } = {}) {
  return {
    url: `${base}${extra.path ?? '/hooks/mail'}`,
    headers: extra.headers ?? {},
    timeoutMs: extra.timeoutMs ?? 5000,
  };
}

describe('webhook delivery', () => {
  it('POSTs the event as JSON with the idempotency key, the trigger name and the configured headers', async () => {
    answer = (res) => res.writeHead(200).end('ok');
    received.length = 0;
    await webhookHandler('mailer', target({ headers: { authorization: 'Bearer s3cret', 'x-team': 'billing' } }))(event);
    expect(received).toHaveLength(1);
    const [r] = received;
    expect(r?.method).toBe('POST');
    expect(r?.url).toBe('/hooks/mail');
    expect(r?.headers['content-type']).toBe('application/json');
    expect(r?.headers['idempotency-key']).toBe('eu:42');
    expect(r?.headers['x-polyarch-trigger']).toBe('mailer');
    expect(r?.headers['authorization']).toBe('Bearer s3cret');
    expect(r?.headers['x-team']).toBe('billing');
    expect(JSON.parse(r?.body ?? '')).toEqual(event);
  });

  it('any 2xx acknowledges', async () => {
    for (const status of [200, 201, 202, 204, 299]) {
      answer = (res) => res.writeHead(status).end();
      await expect(webhookHandler('t', target())(event)).resolves.toBeUndefined();
    }
  });

  it('another status rejects, naming the status and the host, never a secret of the URL or headers', async () => {
    for (const status of [500, 503, 404, 400, 302, 418]) {
      answer = (res) => res.writeHead(status, status === 302 ? { location: '/elsewhere' } : {}).end('nope');
      const url = `${base}/hooks/path-secret?token=qs-secret`;
      const handler = webhookHandler('t', { url, headers: { authorization: 'Bearer hdr-secret' }, timeoutMs: 5000 });
      const error = await handler(event).then(
        () => expect.unreachable(`${status} must reject`),
        (e: unknown) => e as Error,
      );
      expect(error.message).toMatch(new RegExp(`^POST ${base}/\\.\\.\\. answered ${status}`));
      for (const secret of ['path-secret', 'qs-secret', 'hdr-secret']) expect(error.message).not.toContain(secret);
    }
  });

  it('sends credentials of the URL as Basic authorization, unless an authorization header is configured', async () => {
    answer = (res) => res.writeHead(204).end();
    received.length = 0;
    const url = `http://hook%20user:pa55@127.0.0.1:${new URL(base).port}/in`;
    await webhookHandler('t', { url, headers: {}, timeoutMs: 5000 })(event);
    await webhookHandler('t', { url, headers: { authorization: 'Bearer x' }, timeoutMs: 5000 })(event);
    expect(received.map((r) => [r.url, r.headers['authorization']])).toEqual([
      ['/in', `Basic ${Buffer.from('hook user:pa55').toString('base64')}`],
      ['/in', 'Bearer x'],
    ]);
  });

  it('no answer within the timeout rejects', async () => {
    answer = (res) => held.push(res);
    const error = await webhookHandler(
      't',
      target({ timeoutMs: 100 }),
    )(event).then(
      () => expect.unreachable('a held request must reject'),
      (e: unknown) => e as Error,
    );
    expect(error.message).toBe(`POST ${base}/...: no answer within 100 ms`);
  });

  it('a server that is not there rejects', async () => {
    const gone = createServer();
    await new Promise<void>((resolve) => gone.listen(0, '127.0.0.1', resolve));
    const port = (gone.address() as AddressInfo).port;
    await new Promise((resolve) => gone.close(resolve));
    const handler = webhookHandler('t', { url: `http://127.0.0.1:${port}/x`, headers: {}, timeoutMs: 5000 });
    await expect(handler(event)).rejects.toThrow(`POST http://127.0.0.1:${port}/...: request failed (ECONNREFUSED)`);
  });

  it('describes a URL by its origin only', () => {
    expect(describeUrl('https://u:p@hooks.example:8443/a/b?k=v#f')).toBe('https://hooks.example:8443/...');
    expect(describeUrl('http://hooks.example/')).toBe('http://hooks.example');
  });
});
