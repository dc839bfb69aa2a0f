export { ManualNetwork, memoryConnectionPair, microtaskScheduler } from './memory-connection.js';
export type { Scheduler } from './memory-connection.js';
