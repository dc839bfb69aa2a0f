export * from './json-pointer.js';
export * from './canonical-json.js';
export * from './kinds.js';
export * from './view.js';
export * from './ops.js';
