/**
 * A seeded environment for tests and the simulator: a manual clock, manual timers and a
 * deterministic PRNG (sfc32). Same seed, same sequence, on every platform.
 */
import type { Clock, Env, Random, TimerHandle, Timers } from './env.js';
import { silentLogger } from './env.js';

export class SeededRandom implements Random {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = seed >>> 0;
    for (let i = 0; i < 15; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.nextU32() & 0xff;
    return out;
  }
}

export class ManualClock implements Clock {
  constructor(public ms = 1_700_000_000_000) {}
  nowMs(): number {
    return this.ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}

export class ManualTimers implements Timers {
  private queue: { at: number; id: number; fn: () => void }[] = [];
  private nextId = 0;
  constructor(private readonly clock: ManualClock) {}

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const entry = { at: this.clock.ms + ms, id: this.nextId++, fn };
    this.queue.push(entry);
    return { cancel: () => (this.queue = this.queue.filter((e) => e !== entry)) };
  }

  /** Runs every timer due by `clock.ms`, in deadline order. */
  runDue(): number {
    let ran = 0;
    for (;;) {
      this.queue.sort((x, y) => x.at - y.at || x.id - y.id);
      const head = this.queue[0];
      if (head === undefined || head.at > this.clock.ms) return ran;
      this.queue.shift();
      head.fn();
      ran++;
    }
  }
}

export function seededEnv(
  seed: number,
  startMs = 1_700_000_000_000,
): Env & { clock: ManualClock; random: SeededRandom; timers: ManualTimers } {
  const clock = new ManualClock(startMs);
  return { clock, timers: new ManualTimers(clock), random: new SeededRandom(seed), logger: silentLogger };
}
