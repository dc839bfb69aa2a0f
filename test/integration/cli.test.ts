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
