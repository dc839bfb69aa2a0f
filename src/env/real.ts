/** The real environment: the only module that reads the wall clock, timers and crypto. */
import type { Env, Logger, LogLevel } from './env.js';

const levels: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function consoleLogger(minLevel: LogLevel = 'info'): Logger {
  return {
    log(level, msg, fields) {
      if (levels[level] < levels[minLevel]) return;
      const line = JSON.stringify({ level, msg, ...fields });
      if (level === 'error' || level === 'warn') console.error(line);
      else console.log(line);
    },
  };
}

export function realEnv(options: { logger?: Logger } = {}): Env {
  return {
    clock: { nowMs: () => Date.now() },
    timers: {
      setTimeout(fn, ms) {
        const handle = setTimeout(fn, ms);
        return { cancel: () => clearTimeout(handle) };
      },
    },
    random: {
      next: () => Math.random(),
      bytes(n) {
        const out = new Uint8Array(n);
        globalThis.crypto.getRandomValues(out);
        return out;
      },
    },
    logger: options.logger ?? { log() {} },
  };
}
