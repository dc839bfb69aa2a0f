/**
 * The polyarch command for people and scripts, against a real leader: human output by
 * default, JSON with --json, clear messages and non-zero exit codes on errors.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openReplica } from '../../src/index.js';
import { resolveConfig } from '../../src/server/config.js';
import { startServer } from '../../src/server/serve.js';
import type { RunningServer } from '../../src/server/serve.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const cli = path.join(root, 'src/cli/main.ts');

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['--import', 'tsx', cli, ...args],
      { cwd: root, timeout: 30_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

let server: RunningServer;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'polyarch-cli-'));
  server = await startServer(resolveConfig({ id: 'eu', port: 0, data: path.join(dir, 'eu'), logLevel: 'silent' }));
});

afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('polyarch put, get, del, conflicts, status', () => {
  it('writes and reads a document, for people and for scripts', async () => {
    const put = await run(['put', 'events', 'standup', '{"at":"09:30"}', '--url', server.url]);
    expect(put.code, put.stderr).toBe(0);
    expect(put.stdout).toMatch(/^wrote events\/standup {2}version \S+/);
    const get = await run(['get', 'events', 'standup', '--url', server.url]);
    expect(get.stdout).toContain('standup = {"at":"09:30"}');
    const json = await run(['get', 'events', 'standup', '--url', server.url, '--json']);
    const doc = JSON.parse(json.stdout) as { value: unknown; version: string };
    expect(doc.value).toEqual({ at: '09:30' });
    // A stale version is refused with a clear message and exit code 1.
    await run(['put', 'events', 'standup', '{"at":"10:00"}', '--url', server.url]);
    const stale = await run([
      'put',
      'events',
      'standup',
      '{"at":"11:00"}',
      '--url',
      server.url,
      '--if-match',
      doc.version,
    ]);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/409 conflict/);
    const del = await run(['del', 'events', 'standup', '--url', server.url, '--json']);
    expect(del.code).toBe(0);
    expect(JSON.parse(del.stdout)).toMatchObject({ id: 'standup' });
  });

  it('reports errors with a message and a non-zero exit code', async () => {
    const missing = await run(['get', 'events', 'nope', '--url', server.url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/404 not_found/);
    const badJson = await run(['put', 'events', 'x', '{not json', '--url', server.url]);
    expect(badJson.code).toBe(2);
    expect(badJson.stderr).toMatch(/not JSON/);
    const unreachable = await run(['status', '--url', 'http://127.0.0.1:1']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/cannot reach/);
    const usage = await run(['get', 'events']);
    expect(usage.code).toBe(2);
  });

  it('shows the status and lists conflicts', async () => {
    const status = await run(['status', '--url', server.url]);
    expect(status.stdout).toMatch(/^replica eu {2}seq \d+/);
    const conflicts = await run(['conflicts', '--url', server.url, '--json']);
    expect(JSON.parse(conflicts.stdout)).toEqual({ results: [] });
  });

  it('serve refuses a bad setting with a message naming it and exit code 2', async () => {
    const noId = await run(['serve', '--port', '0', '--data', ':memory:']);
    expect(noId.code).toBe(2);
    expect(noId.stderr).toMatch(/--id is required/);
    const file = path.join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ id: 'x', port: 0, data: ':memory:', colour: 'red' }));
    const unknown = await run(['serve', '--config', file]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown setting "colour"/);
  });
});

describe('polyarch patch, config and conflicts', () => {
  it("config sets and shows a collection's settings, and refuses bad ones", async () => {
    const [set, map] = await Promise.all([
      run(['config', 'hits', '{"kind":"counter"}', '--url', server.url]),
      run([
        'config',
        'notes',
        '{"kind":"map","policy":"keep","fields":{"/status":{"policy":"lww"}}}',
        '--url',
        server.url,
        '--json',
      ]),
    ]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toBe('hits: kind counter, policy keep\n');
    expect(map.code, map.stderr).toBe(0);
    expect(JSON.parse(map.stdout)).toEqual({
      collection: 'notes',
      kind: 'map',
      policy: 'keep',
      fields: { '/status': { policy: 'lww' } },
      replicated: true,
    });
    const [show, bad] = await Promise.all([
      run(['config', 'notes', '--url', server.url]),
      run(['config', 'hits', '{"kind":"record","policy":"merge"}', '--url', server.url]),
    ]);
    expect(show.code, show.stderr).toBe(0);
    expect(show.stdout).toBe('notes: kind map, policy keep  fields {"/status":{"policy":"lww"}}\n');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/400 invalid_input: .*merge/);
    // Nothing changed.
    expect(server.db.collection('hits').config()).toEqual({ kind: 'counter', policy: 'keep', replicated: true });
  });

  it('patch applies operations, and a bad op exits non-zero with the reason and changes nothing', async () => {
    const [inc, json] = await Promise.all([
      run(['patch', 'hits', 'h1', '[{"op":"increment","path":"","by":2}]', '--url', server.url]),
      run([
        'patch',
        'notes',
        'n1',
        '[{"op":"set","path":"/title","value":"hi"},{"op":"increment","path":"/views","by":3}]',
        '--url',
        server.url,
        '--json',
      ]),
    ]);
    expect(inc.code, inc.stderr).toBe(0);
    expect(inc.stdout).toMatch(/^patched hits\/h1 {2}version \S+\n$/);
    expect(json.code, json.stderr).toBe(0);
    const written = JSON.parse(json.stdout) as { id: string; version: string };
    expect(written).toEqual({ id: 'n1', version: expect.any(String) as unknown });
    expect((await server.db.collection('hits').get('h1'))?.value).toBe(2);
    expect((await server.db.collection('notes').get('n1'))?.value).toEqual({ title: 'hi', views: 3 });
    // Another write makes the version read above stale.
    await server.db.collection('notes').patch('n1', [{ op: 'set', path: '/title', value: 'late' }]);

    const seq = server.db.status().seq;
    const [badOp, notArray, stale] = await Promise.all([
      run(['patch', 'hits', 'h1', '[{"op":"increment","path":"","by":1.5}]', '--url', server.url]),
      run(['patch', 'hits', 'h1', '{"op":"increment"}', '--url', server.url]),
      run([
        'patch',
        'notes',
        'n1',
        '[{"op":"set","path":"/title","value":"later"}]',
        '--url',
        server.url,
        '--if-match',
        written.version,
      ]),
    ]);
    expect(badOp.code).toBe(1);
    expect(badOp.stderr).toMatch(/400 invalid_input: ops\[0\]: increment needs "by"/);
    expect(notArray.code).toBe(2);
    expect(notArray.stderr).toMatch(/ops must be a JSON array/);
    expect(stale.code).toBe(1);
    expect(stale.stderr).toMatch(/409 conflict/);
    expect(server.db.status().seq).toBe(seq);
    expect((await server.db.collection('hits').get('h1'))?.value).toBe(2);
    expect((await server.db.collection('notes').get('n1'))?.value).toEqual({ title: 'late', views: 3 });
  });

  it('conflicts lists documents with concurrent writes, for people and for scripts', async () => {
    // Another leader, embedded, writes the same record and the same map field concurrently.
    const other = await openReplica({ id: 'us', storage: 'memory' });
    try {
      await other.applyChanges(await server.db.changesSince(other.vector()));
      await server.db.collection('todos').put('t1', { by: 'eu' });
      await server.db.collection('notes').patch('n2', [{ op: 'set', path: '/title', value: 'eu' }]);
      await new Promise((r) => setTimeout(r, 5));
      await other.collection('todos').put('t1', { by: 'us' });
      await other.collection('notes').patch('n2', [{ op: 'set', path: '/title', value: 'us' }]);
      await server.db.applyChanges(await other.changesSince(server.db.vector()));
    } finally {
      await other.close();
    }
    const [human, json] = await Promise.all([
      run(['conflicts', '--url', server.url]),
      run(['conflicts', '--url', server.url, '--json', '--collection', 'notes']),
    ]);
    expect(human.code, human.stderr).toBe(0);
    const lines = human.stdout.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe('todos/t1 = {"by":"us"}');
    expect(lines[1]).toMatch(/^ {2}conflict: \{"by":"eu"\} {2}from eu, \S+$/);
    expect(lines[2]).toBe('notes/n2 = {"title":"us"}');
    expect(lines[3]).toMatch(/^ {2}conflict: \/title: "eu" {2}from eu, \S+$/);

    expect(json.code, json.stderr).toBe(0);
    const body = JSON.parse(json.stdout) as { results: { collection: string; id: string; conflicts: unknown[] }[] };
    expect(body.results.map((r) => `${r.collection}/${r.id}`)).toEqual(['notes/n2']);
    expect(body.results[0]?.conflicts).toEqual([
      expect.objectContaining({ path: '/title', value: 'eu', deleted: false, origin: 'eu' }),
    ]);
  });
});

describe('polyarch post, nextval, and constraint entries in conflicts and status', () => {
  it('takes sequence numbers, and says so when none is configured', async () => {
    await server.db.sequence('ticket').configure({ allocator: 'eu', blockSize: 10 });
    const first = await run(['nextval', 'ticket', '--url', server.url]);
    const second = await run(['nextval', 'ticket', '--url', server.url, '--json']);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout.trim()).toBe('1');
    expect(JSON.parse(second.stdout)).toEqual({ name: 'ticket', value: 2 });
    const unknown = await run(['nextval', 'nope', '--url', server.url]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/404 not_found/);
  });

  it('lists a unique value two leaders accepted apart, and counts it in status', async () => {
    await server.db.collection('members').configure({ unique: ['email'] });
    const other = await openReplica({ id: 'ap', storage: 'memory' });
    try {
      await other.applyChanges(await server.db.changesSince(other.vector()));
      await server.db.collection('members').put('m2', { email: 'x@y' });
      await other.collection('members').put('m1', { email: 'x@y' });
      await server.db.applyChanges(await other.changesSince(server.db.vector()));
    } finally {
      await other.close();
    }
    const [human, status] = await Promise.all([
      run(['conflicts', '--url', server.url, '--collection', 'members']),
      run(['status', '--url', server.url]),
    ]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout.trim()).toBe('members/m2: unique email "x@y" is kept by members/m1');
    expect(status.stdout).toMatch(/ violations 1$/m);
    // A local duplicate is refused with the reason and exit code 1; nothing is written.
    const dup = await run(['post', 'members', '{"email":"x@y"}', '--url', server.url]);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/409 constraint_violation/);
  });

  it('lists triggers and drops one that no handler runs', async () => {
    const old = server.db.on('change', () => new Promise(() => {}), { name: 'old-mailer', collection: 'mail' });
    await old.ready;
    old.close(); // as a trigger the config no longer names
    await server.db.collection('mail').put('m1', { to: 'a@b' });
    await expect.poll(() => old.status().pending).toBe(1);
    const listed = await run(['triggers', '--url', server.url]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout.trim()).toBe('old-mailer  origin  mail  not attached  pending 1  failures 0');
    const dropped = await run(['triggers', '--drop', 'old-mailer', '--url', server.url]);
    expect(dropped.stdout.trim()).toBe('dropped trigger old-mailer and its 1 undelivered events');
    expect(server.db.triggerStatus()).toEqual([]);
    const again = await run(['triggers', '--drop', 'old-mailer', '--url', server.url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/404 not_found/);
  });
});
