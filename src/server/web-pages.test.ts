/**
 * The pages a leader serves: built files with their content types and a Content-Security-Policy,
 * `/` redirecting to them, the cluster for the pages, and a clear 404 when nothing was built.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openReplica } from '../index.js';
import type { Database } from '../index.js';
import { buildApp } from './app.js';
import type { WebPagesOptions } from './web-pages.js';

let built: string;
const open: { app: FastifyInstance; db: Database }[] = [];

beforeAll(() => {
  built = mkdtempSync(path.join(tmpdir(), 'polyarch-web-'));
  mkdirSync(path.join(built, 'editor'));
  mkdirSync(path.join(built, 'assets'));
  writeFileSync(path.join(built, 'index.html'), '<!doctype html><title>pages</title>');
  writeFileSync(path.join(built, 'editor', 'index.html'), '<!doctype html><title>editor</title>');
  writeFileSync(path.join(built, 'assets', 'editor-abc.js'), 'console.log(1);');
  writeFileSync(path.join(built, 'assets', 'style-abc.css'), 'body{}');
});

afterAll(() => rmSync(built, { recursive: true, force: true }));

afterEach(async () => {
  for (const { app, db } of open.splice(0)) {
    await app.close();
    await db.close();
  }
});

async function appWith(web: WebPagesOptions): Promise<FastifyInstance> {
  const db = await openReplica({ storage: 'memory', id: 'eu' });
  const { app } = buildApp({ db, web });
  open.push({ app, db });
  await app.ready();
  return app;
}

describe('the web pages of a leader', () => {
  it('serves the editor page with its content type and a Content-Security-Policy, and its assets', async () => {
    const app = await appWith({ dir: built });
    const page = await app.inject({ method: 'GET', url: '/web/editor/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(page.body).toContain('<title>editor</title>');
    const js = await app.inject({ method: 'GET', url: '/web/assets/editor-abc.js' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toMatch(/^(text|application)\/javascript/);
    const css = await app.inject({ method: 'GET', url: '/web/assets/style-abc.css' });
    expect(css.headers['content-type']).toMatch(/^text\/css/);
  });

  it('redirects / to the list of pages, and a page without its slash to the page', async () => {
    const app = await appWith({ dir: built });
    const root = await app.inject({ method: 'GET', url: '/' });
    expect(root.statusCode).toBe(302);
    expect(root.headers.location).toBe('/web/');
    expect((await app.inject({ method: 'GET', url: '/web' })).headers.location).toBe('/web/');
    const list = await app.inject({ method: 'GET', url: '/web/' });
    expect(list.statusCode).toBe(200);
    expect(list.body).toContain('<title>pages</title>');
    const editor = await app.inject({ method: 'GET', url: '/web/editor?doc=notes/a' });
    expect(editor.statusCode).toBe(301);
    expect(editor.headers.location).toBe('/web/editor/?doc=notes/a');
  });

  it('tells the pages which cluster to sync in', async () => {
    const app = await appWith({ dir: built, cluster: 'demo' });
    const res = await app.inject({ method: 'GET', url: '/web/config.json' });
    expect(res.json()).toEqual({ cluster: 'demo' });
  });

  it('answers a missing file with the API 404 and never serves outside the build', async () => {
    const app = await appWith({ dir: built });
    const missing = await app.inject({ method: 'GET', url: '/web/nope.js' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json()).toMatchObject({ error: 'not_found' });
    const escape = await app.inject({ method: 'GET', url: '/web/..%2f..%2fpackage.json' });
    expect([400, 403, 404]).toContain(escape.statusCode);
    expect(escape.body).not.toContain('"name"');
  });

  it('without a build, the pages answer a 404 saying to run npm run build, and the API still works', async () => {
    const app = await appWith({ dir: path.join(built, 'absent') });
    for (const url of ['/web/editor/', '/web/', '/web']) {
      const res = await app.inject({ method: 'GET', url });
      expect(res.statusCode).toBe(404);
      expect(res.json()).toMatchObject({ error: 'not_found' });
      expect(res.json().message).toContain('npm run build');
    }
    expect((await app.inject({ method: 'GET', url: '/status' })).statusCode).toBe(200);
  });
});
