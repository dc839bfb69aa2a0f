/**
 * The environment a replica runs in: time, timers, randomness and logging, injected so the
 * same core runs in Node, in a browser and in the deterministic simulator.
 * Only realEnv() (env/real.ts) may touch Date, timers and crypto.
 */

export interface Clock {
  /** Milliseconds since the Unix epoch; may jump or skew (the simulator makes it do so). */
  nowMs(): number;
}

export interface TimerHandle {
  cancel(): void;
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): TimerHandle;
}

export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** Cryptographically strong bytes where the platform has them (ids, challenges). */
  bytes(n: number): Uint8Array;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void;
}

export interface Env {
  clock: Clock;
  timers: Timers;
  random: Random;
  logger: Logger;
}

export const silentLogger: Logger = { log() {} };
