/**
 * The browser pages of a leader (web/, built by Vite into dist/web): `/` redirects to the list
 * of pages and `/web/...` serves the built files with a Content-Security-Policy. Without a
 * build, the pages answer a 404 that says how to build them; nothing else depends on them, and
 * a missing or broken build never stops the leader.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { ErrorCode } from '../shared/errors.js';

/**
 * dist/web of this package. This module is src/server/web-pages.ts in a clone (run through
 * tsx) and dist/server/web-pages.js once built or installed: both sit two levels below the
 * package root.
 */
export const DEFAULT_WEB_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/web');

/**
 * Scripts and styles from this origin only (CodeMirror sets inline styles, hence
 * 'unsafe-inline' for styles alone); WebSockets to any leader, since `?leader=` may name
 * another one.
 */
export const WEB_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self' ws: wss:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export interface WebPagesOptions {
  /** The built pages (default dist/web of this package); null serves none. */
  dir?: string | null;
  /** The cluster name the pages pass when they sync (served as /web/config.json). */
  cluster?: string;
}

/** True when `dir` holds a build of the pages. */
export function hasWebBuild(dir: string | null): dir is string {
  return dir !== null && existsSync(path.join(dir, 'index.html'));
}

export function registerWebPages(app: FastifyInstance, options: WebPagesOptions = {}): void {
  const dir = options.dir === undefined ? DEFAULT_WEB_DIR : options.dir;
  const cluster = options.cluster ?? 'default';

  app.get('/', async (_request, reply) => reply.redirect('/web/'));
  // What a page needs to sync with the leader that served it.
  app.get('/web/config.json', async () => ({ cluster }));

  if (!hasWebBuild(dir)) {
    const notBuilt = async (_request: unknown, reply: FastifyReply) =>
      reply.code(404).send({
        error: ErrorCode.notFound,
        message: `the web pages are not built (no ${dir ?? 'web directory'}): run \`npm run build\` in the polyarch package`,
      });
    app.get('/web', notBuilt);
    app.get('/web/*', notBuilt);
    return;
  }

  app.get('/web', async (_request, reply) => reply.redirect('/web/'));
  app.register(fastifyStatic, {
    root: dir,
    prefix: '/web/',
    // /web/editor -> /web/editor/, so the page's relative asset urls resolve.
    redirect: true,
    index: ['index.html'],
    dotfiles: 'ignore',
    setHeaders: (reply, file) => {
      reply.header('x-content-type-options', 'nosniff');
      if (file.endsWith('.html')) {
        reply.header('content-security-policy', WEB_CSP);
        // Pages change with each build; the hashed assets beside them do not.
        reply.header('cache-control', 'no-cache');
      }
    },
  });
}
