export type { Clock, Env, Logger, LogLevel, Random, TimerHandle, Timers } from './env.js';
export { silentLogger } from './env.js';
export { realEnv, consoleLogger } from './real.js';
export { SeededRandom, ManualClock, ManualTimers, seededEnv } from './seeded.js';
