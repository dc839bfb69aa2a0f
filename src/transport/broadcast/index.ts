/**
 * Connections between the tabs of one origin over a BroadcastChannel (see broadcast-endpoint.ts).
 * Browser-safe: no Node built-ins.
 */
export { BroadcastEndpoint } from './broadcast-endpoint.js';
export type { BroadcastChannelConstructor, BroadcastChannelLike } from './broadcast-endpoint.js';
