/**
 * bench:compare run tiny, from the sources: it completes and every figure is a finite positive
 * number. Its speeds are not checked (a shared, noisy machine); the full run is for that.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { CompareResult } from '../../bench/compare/run.js';

const root = path.resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'polyarch-compare-smoke-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bench:compare', () => {
  // Five server processes on a shared 2-core machine: a run that misses is retried once (a
  // second failure fails the test), so CI does not hinge on one slow start.
  it(
    'compares polyarch and PouchDB on both storage pairs and writes finite, positive figures',
    { timeout: 120_000, retry: 1 },
    async () => {
      const out = path.join(dir, 'compare.json');
      const argv = ['--import', 'tsx', 'bench/compare.ts', '--source', '--docs', '500'];
      argv.push('--rate', '100', '--seconds', '2', '--warmup', '0', '--startup-runs', '0', '--out', out);
      // On failure the error carries the run's output (its progress lines and the stack).
      const run = await promisify(execFile)(process.execPath, argv, { cwd: root, timeout: 110_000 }).catch(
        (e: { message: string; stdout?: string }) => {
          throw new Error(`${e.message}\n${e.stdout ?? ''}`);
        },
      );
      expect(run.stdout).toContain('ratio = polyarch / PouchDB');
      const result = JSON.parse(readFileSync(out, 'utf8')) as CompareResult;
      expect(result.pairs.map((p) => p.storage)).toEqual(['durable', 'memory']);
      expect(result.rows).toHaveLength(14);
      for (const row of result.rows) {
        for (const n of [row.polyarch, row.pouchdb, row.ratio]) {
          expect(Number.isFinite(n) && n > 0, `${row.storage} ${row.figure}: ${n}`).toBe(true);
        }
      }
      for (const p of result.pairs) {
        expect(p.catchUp.polyarch.docs).toBe(500);
        expect(p.catchUp.pouchdb.docs).toBe(500);
        expect(p.live.polyarch.failed).toBe(0);
        expect(p.live.pouchdb.failed).toBe(0);
      }
    },
  );
});
