/**
 * The HTTP error table of docs/http-api.md against a real `polyarch serve` process (DESIGN.md
 * G7): every error status the server can produce today comes over real HTTP with a JSON body
 * `{ error, message }`, and changes nothing. Then graceful shutdown: SIGTERM while a longpoll
 * is waiting answers it and exits 0 within a few seconds.
 * (401 and 403 need client tokens, and 503 a shutdown in progress: not produced here.)
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { Cluster, putOk } from './harness.js';
import type { Leader, Status } from './harness.js';

const cluster = new Cluster('http');
let leader: Leader;
/** Versions made in setup: v1 then v2 of notes/existing. */
let v1: string;
let v2: string;
let before: Pick<Status, 'seq' | 'digest' | 'docs'>;

const snapshot = async (): Promise<Pick<Status, 'seq' | 'digest' | 'docs'>> => {
  const s = await leader.status();
  return { seq: s.seq, digest: s.digest, docs: s.docs };
};

beforeAll(async () => {
  [leader] = (await cluster.start([{ id: 'solo' }])) as [Leader];
  v1 = await putOk(leader, 'notes', 'existing', { v: 1 });
  v2 = await putOk(leader, 'notes', 'existing', { v: 2 }, { 'if-match': v1 });
  before = await snapshot();
});

afterAll(async () => {
  await cluster.teardown();
});

interface Case {
  method: 'GET' | 'PUT' | 'DELETE' | 'POST';
  path: string;
  headers?: Record<string, string>;
  /** A string is sent as is; anything else as JSON. */
  body?: unknown;
  status: number;
  error: string;
  /** Something the message must say. */
  says?: RegExp;
}

const JSON_CT = { 'content-type': 'application/json' };
const MiB = 1024 * 1024;

const cases: Record<string, () => Case> = {
  // 400 invalid_json
  'a PUT whose body is not JSON': () => ({
    method: 'PUT',
    path: '/db/notes/a',
    headers: JSON_CT,
    body: '{"a":',
    status: 400,
    error: 'invalid_json',
  }),
  'a PUT with an empty JSON body': () => ({
    method: 'PUT',
    path: '/db/notes/a',
    headers: JSON_CT,
    body: '',
    status: 400,
    error: 'invalid_json',
  }),
  'a batch whose body is not JSON': () => ({
    method: 'POST',
    path: '/db/_batch',
    headers: JSON_CT,
    body: '{"ops": [',
    status: 400,
    error: 'invalid_json',
  }),
  // 400 invalid_name
  'a collection starting with a digit': () => ({
    method: 'PUT',
    path: '/db/9lives/a',
    headers: JSON_CT,
    body: 1,
    status: 400,
    error: 'invalid_name',
    says: /collection/,
  }),
  'a collection of 65 characters': () => ({
    method: 'GET',
    path: `/db/${'c'.repeat(65)}/a`,
    status: 400,
    error: 'invalid_name',
  }),
  'a reserved document id': () => ({
    method: 'PUT',
    path: '/db/notes/_hidden',
    headers: JSON_CT,
    body: 1,
    status: 400,
    error: 'invalid_name',
    says: /reserved/,
  }),
  'a document id with a control character': () => ({
    method: 'PUT',
    path: '/db/notes/bad%07id',
    headers: JSON_CT,
    body: 1,
    status: 400,
    error: 'invalid_name',
  }),
  'a document id of 257 characters': () => ({
    method: 'GET',
    path: `/db/notes/${'i'.repeat(257)}`,
    status: 400,
    error: 'invalid_name',
  }),
  'a path parameter far over any limit': () => ({
    method: 'GET',
    path: `/db/notes/${'%C3%A9'.repeat(1000)}`,
    status: 400,
    error: 'invalid_name',
  }),
  'a batch op naming an invalid collection': () => ({
    method: 'POST',
    path: '/db/_batch',
    headers: JSON_CT,
    body: { ops: [{ op: 'put', collection: '-x', id: 'a', value: 1 }] },
    status: 400,
    error: 'invalid_name',
  }),
  // 400 invalid_input
  'a negative since': () => ({ method: 'GET', path: '/changes?since=-1', status: 400, error: 'invalid_input' }),
  'an unknown query parameter': () => ({
    method: 'GET',
    path: '/changes?bogus=1',
    status: 400,
    error: 'invalid_input',
  }),
  'an unknown feed': () => ({ method: 'GET', path: '/changes?feed=websocket', status: 400, error: 'invalid_input' }),
  'a list limit of 0': () => ({ method: 'GET', path: '/db/notes?limit=0', status: 400, error: 'invalid_input' }),
  'If-None-Match other than *': () => ({
    method: 'PUT',
    path: '/db/notes/a',
    headers: { ...JSON_CT, 'if-none-match': '"abc"' },
    body: 1,
    status: 400,
    error: 'invalid_input',
  }),
  'a batch op with a numeric id': () => ({
    method: 'POST',
    path: '/db/_batch',
    headers: JSON_CT,
    body: { ops: [{ op: 'put', collection: 'notes', id: 5, value: 1 }] },
    status: 400,
    error: 'invalid_input',
  }),
  'a batch op of an unknown kind': () => ({
    method: 'POST',
    path: '/db/_batch',
    headers: JSON_CT,
    body: { ops: [{ op: 'merge', collection: 'notes', id: 'a', value: 1 }] },
    status: 400,
    error: 'invalid_input',
  }),
  'a batch put without a value': () => ({
    method: 'POST',
    path: '/db/_batch',
    headers: JSON_CT,
    body: { ops: [{ op: 'put', collection: 'notes', id: 'a' }] },
    status: 400,
    error: 'invalid_input',
  }),
  'a batch with an unknown field': () => ({
    method: 'POST',
    path: '/db/_batch',
    headers: JSON_CT,
    body: { ops: [], atomic: false },
    status: 400,
    error: 'invalid_input',
  }),
  // 400 bad_version
  'an If-Match that is not a version': () => ({
    method: 'PUT',
    path: '/db/notes/existing',
    headers: { ...JSON_CT, 'if-match': 'not-a-version' },
    body: 3,
    status: 400,
    error: 'bad_version',
  }),
  'If-Match: *': () => ({
    method: 'PUT',
    path: '/db/notes/existing',
    headers: { ...JSON_CT, 'if-match': '*' },
    body: 3,
    status: 400,
    error: 'bad_version',
  }),
  'a DELETE with an If-Match that is not a version': () => ({
    method: 'DELETE',
    path: '/db/notes/existing',
    headers: { 'if-match': '"garbage"' },
    status: 400,
    error: 'bad_version',
  }),
  // 404 not_found
  'a GET of an absent document': () => ({ method: 'GET', path: '/db/notes/missing', status: 404, error: 'not_found' }),
  'a DELETE of an absent document': () => ({
    method: 'DELETE',
    path: '/db/notes/missing',
    status: 404,
    error: 'not_found',
  }),
  'an unknown route': () => ({
    method: 'GET',
    path: '/nope/nothing',
    status: 404,
    error: 'not_found',
    says: /no route/,
  }),
  'a method a route does not take': () => ({
    method: 'POST',
    path: '/status',
    headers: JSON_CT,
    body: {},
    status: 404,
    error: 'not_found',
  }),
  // 409 conflict
  'a PUT with a version that was overwritten': () => ({
    method: 'PUT',
    path: '/db/notes/existing',
    headers: { ...JSON_CT, 'if-match': `"${v1}"` },
    body: { v: 'stale' },
    status: 409,
    error: 'conflict',
  }),
  'a DELETE with a version that was overwritten': () => ({
    method: 'DELETE',
    path: '/db/notes/existing',
    headers: { 'if-match': v1 },
    status: 409,
    error: 'conflict',
  }),
  'a batch with a version that was overwritten': () => ({
    method: 'POST',
    path: '/db/_batch',
    headers: JSON_CT,
    body: {
      ops: [
        { op: 'put', collection: 'notes', id: 'fresh', value: 1 },
        { op: 'put', collection: 'notes', id: 'existing', value: 2, version: v1 },
      ],
    },
    status: 409,
    error: 'conflict',
    says: /existing/,
  }),
  // 412 precondition_failed
  'If-None-Match: * on an existing document': () => ({
    method: 'PUT',
    path: '/db/notes/existing',
    headers: { ...JSON_CT, 'if-none-match': '*' },
    body: { v: 'create?' },
    status: 412,
    error: 'precondition_failed',
  }),
  // 413 too_large
  'a body over the request limit': () => ({
    method: 'PUT',
    path: '/db/notes/big',
    headers: JSON_CT,
    body: JSON.stringify('x'.repeat(2 * MiB)),
    status: 413,
    error: 'too_large',
  }),
  'a document over 1 MiB in a body under the request limit': () => ({
    method: 'PUT',
    path: '/db/notes/big',
    headers: JSON_CT,
    body: JSON.stringify('x'.repeat(MiB + 16)),
    status: 413,
    error: 'too_large',
  }),
  'a batch of more than 10,000 operations': () => ({
    method: 'POST',
    path: '/db/_batch',
    headers: JSON_CT,
    body: {
      ops: Array.from({ length: 10_001 }, (_, i) => ({ op: 'put', collection: 'notes', id: `b${i}`, value: i })),
    },
    status: 413,
    error: 'too_large',
  }),
  // 415 unsupported_media_type
  'a PUT of text/plain': () => ({
    method: 'PUT',
    path: '/db/notes/a',
    headers: { 'content-type': 'text/plain' },
    body: '{"a":1}',
    status: 415,
    error: 'unsupported_media_type',
  }),
  'a batch of form data': () => ({
    method: 'POST',
    path: '/db/_batch',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'ops=1',
    status: 415,
    error: 'unsupported_media_type',
  }),
};

/**
 * One request over node:http. A server may answer (413) before it has read a large body and
 * close the connection; the client's write then fails with EPIPE or a reset, after the answer
 * arrived (fetch reports that as a failure; here the answer wins) or before the client could
 * read it. In that second case the request is sent again: every case here is refused without a
 * change, so a repeat is safe, and the race rarely happens twice.
 */
async function send(
  url: string,
  o: { method: string; headers: Record<string, string>; body?: string },
): Promise<{ status: number; contentType: string; text: string }> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await sendOnce(url, o);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (attempt >= 5 || (code !== 'EPIPE' && code !== 'ECONNRESET')) throw e;
    }
  }
}

function sendOnce(
  url: string,
  o: { method: string; headers: Record<string, string>; body?: string },
): Promise<{ status: number; contentType: string; text: string }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = http.request(url, { method: o.method, headers: o.headers }, (res) => {
      answered = true;
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          contentType: String(res.headers['content-type'] ?? ''),
          text: Buffer.concat(chunks).toString('utf8'),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    req.end(o.body);
  });
}

describe('HTTP errors over real HTTP', () => {
  it.each(Object.entries(cases))('%s', async (_name, make) => {
    onTestFailed(() => console.error(cluster.logs()));
    const c = make();
    const res = await send(`${leader.url}${c.path}`, {
      method: c.method,
      headers: c.headers ?? {},
      ...(c.body === undefined ? {} : { body: typeof c.body === 'string' ? c.body : JSON.stringify(c.body) }),
    });
    const text = res.text;
    expect({ status: res.status, text }).toMatchObject({ status: c.status });
    expect(res.contentType).toMatch(/^application\/json/);
    const body = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(body).sort()).toEqual(['error', 'message']);
    expect(body['error']).toBe(c.error);
    expect(typeof body['message']).toBe('string');
    expect((body['message'] as string).length).toBeGreaterThan(0);
    if (c.says !== undefined) expect(body['message']).toMatch(c.says);
  });

  it('changed nothing with all those requests, and the document is intact', async () => {
    expect(await snapshot()).toEqual(before);
    const res = await fetch(`${leader.url}/db/notes/existing`);
    expect(res.status).toBe(200);
    expect(res.headers.get('etag')).toBe(`"${v2}"`);
    expect(((await res.json()) as { value: unknown }).value).toEqual({ v: 2 });
    for (const id of ['a', 'big', 'fresh', 'b0']) expect(await leader.get('notes', id)).toBeNull();
  });
});

describe('graceful shutdown', () => {
  it('answers a waiting longpoll and exits 0 on SIGTERM', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    const { seq } = await leader.status();
    const started = Date.now();
    const longpoll = fetch(`${leader.url}/changes?feed=longpoll&since=${seq}&timeout=30000`);
    // A round trip on another connection: by the time it answers, the server has read the
    // longpoll request (it was sent first, to the same single-threaded process).
    await leader.status();
    expect(await Promise.race([longpoll.then(() => 'answered'), leader.status().then(() => 'waiting')])).toBe(
      'waiting',
    );

    const child = leader.child;
    if (child === undefined) throw new Error('the leader is not running');
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    const code = await Promise.race([
      exited,
      new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 5000)),
    ]);
    expect(code).toBe(0);
    const res = await longpoll;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ results: [], last_seq: seq });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(leader.output).not.toMatch(/"level":(50|60)/);
  });
});
