export { connectBrowserWebSocket } from './browser-websocket-connection.js';
export type {
  BrowserConnection,
  BrowserWebSocketOptions,
  WebSocketConstructor,
  WebSocketEventLike,
  WebSocketLike,
} from './browser-websocket-connection.js';
