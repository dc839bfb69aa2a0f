export { connectWebSocket, wrapWebSocket } from './websocket-connection.js';
export type { ConnectWebSocketOptions, WrapWebSocketOptions } from './websocket-connection.js';
