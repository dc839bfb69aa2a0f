export * from './errors.js';
export * from './assert.js';
export type * from './ids.js';
