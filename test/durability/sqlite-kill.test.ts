/**
 * SIGKILL durability of the SQLite adapter: a child commits one document per write and acks
 * each after write() resolves; we kill it at a seeded random moment, reopen the file and
 * require every acked document, intact, with no gaps. Rerun a failure with POLYARCH_SEED=<seed>.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { SeededRandom } from '../../src/env/index.js';
import { DbError, ErrorCode } from '../../src/shared/index.js';
import { openSqliteStorage } from '../../src/storage/sqlite/index.js';

const childPath = fileURLToPath(new URL('./writer-child.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'polyarch-kill-'));
const ROUNDS = 20;

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

interface Killed {
  lastAck: number;
  stderr: string;
  lockedWhileRunning: boolean;
}

/** Runs the writer on `file`, SIGKILLs it `delayMs` after its first ack, returns its last ack. */
function runAndKill(file: string, delayMs: number): Promise<Killed> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', childPath, file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let lastAck = 0;
    let pending = '';
    let stderr = '';
    let killTimer: ReturnType<typeof setTimeout> | undefined;
    let lockedWhileRunning = false;
    let failure: Error | undefined;
    const deadline = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`writer never acked within 15 s; stderr: ${stderr}`));
    }, 15_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) {
        const match = /^ack (\d+)$/.exec(line);
        if (match === null || Number(match[1]) !== lastAck + 1) {
          failure ??= new Error(`unexpected writer output after ack ${lastAck}: ${line}`);
          child.kill('SIGKILL');
          return;
        }
        lastAck += 1;
      }
      if (lastAck > 0 && killTimer === undefined) {
        clearTimeout(deadline);
        // While the writer runs, its exclusive lock must keep this process out.
        try {
          void openSqliteStorage(file).close();
        } catch (e) {
          lockedWhileRunning = e instanceof DbError && e.code === ErrorCode.invalidInput;
        }
        killTimer = setTimeout(() => child.kill('SIGKILL'), delayMs);
      }
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
    });
    child.on('error', reject);
    // 'close' rather than 'exit': every ack already in the pipe has been read by then.
    child.on('close', (code, signal) => {
      clearTimeout(deadline);
      if (failure !== undefined) {
        reject(failure);
        return;
      }
      if (signal !== 'SIGKILL') {
        reject(new Error(`writer exited by itself (code ${code}, signal ${signal}); stderr: ${stderr}`));
        return;
      }
      resolve({ lastAck, stderr, lockedWhileRunning });
    });
  });
}

describe('sqlite storage under SIGKILL', () => {
  it('keeps every write that was acknowledged before the process was killed', async () => {
    const seed = Number(process.env['POLYARCH_SEED'] ?? 0x5eed);
    console.log(`sqlite-kill seed ${seed} (rerun: POLYARCH_SEED=${seed} npx vitest run test/durability)`);
    const random = new SeededRandom(seed);
    const decoder = new TextDecoder();
    const survived: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const file = join(dir, `kill-${round}.db`);
      const delayMs = 50 + random.int(351);
      const { lastAck, lockedWhileRunning } = await runAndKill(file, delayMs);
      expect(lastAck).toBeGreaterThan(0);
      expect(lockedWhileRunning).toBe(true);

      const storage = openSqliteStorage(file);
      const rows = await storage.read((tx) => tx.feed(0, Number.MAX_SAFE_INTEGER));
      await storage.close();
      const context = `round ${round}, seed ${seed}, killed ${delayMs} ms after the first ack, last ack ${lastAck}`;
      // Writes are sequential and atomic: what survives is d1..dk, with k at least the last ack.
      expect(rows.length, context).toBeGreaterThanOrEqual(lastAck);
      rows.forEach((row, i) => {
        const n = i + 1;
        expect({ ...row, state: decoder.decode(row.state) }, context).toEqual({
          collection: 'c',
          id: `d${n}`,
          seq: n,
          state: `state of d${n}`,
        });
      });
      survived.push(`${lastAck}${rows.length > lastAck ? `+${rows.length - lastAck}` : ''}`);
    }
    // "+1": the write committed, the process died before printing its ack. Allowed.
    console.log(`sqlite-kill seed ${seed}: acked(+unacked) documents per round: ${survived.join(' ')}`);
  }, 90_000);
});
