/**
 * A Connection over a standard (WHATWG) WebSocket: the browser's global, or any class with the
 * same API (`ws`'s WebSocket in Node tests). One binary message per frame; our close code and
 * message ride in the close reason, as in transport/websocket. Ships to browsers: no Node
 * built-ins, no `ws`, no ambient timers (the handshake timeout uses injected Timers).
 */
import type { CloseInfo, Connection } from '../connection.js';
import type { Timers } from '../../env/env.js';
import { DbError, ErrorCode } from '../../shared/errors.js';

/** The application close code (4000-4999 are private use) that says "the reason is ours". */
const POLYARCH_CLOSE_CODE = 4000;
/** RFC 6455: a close frame's payload is at most 125 bytes, 2 of them the status code. */
const CLOSE_REASON_BYTES_MAX = 123;
const DEFAULT_HIGH_WATER_BYTES = 8 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
/** WebSocket.readyState values, fixed by the standard (not every class exposes the constants). */
const OPEN = 1;

/**
 * The part of the WHATWG WebSocket API this transport uses. The browser's `WebSocket` and the
 * `ws` package's `WebSocket` class both fit it.
 */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open' | 'message' | 'error' | 'close', listener: (event: WebSocketEventLike) => void): void;
}

/**
 * The fields of the events we read (message: data; close: code, reason; error: message and,
 * from `ws`, error). Typed loosely: each WebSocket class has its own event classes.
 */
export interface WebSocketEventLike {
  readonly type?: string;
  readonly data?: unknown;
  readonly code?: number;
  readonly reason?: string;
  readonly message?: unknown;
  readonly error?: unknown;
}

/** A WebSocket class: `globalThis.WebSocket` in browsers, `WebSocket` from `ws` in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface BrowserWebSocketOptions {
  /** The WebSocket class (default `globalThis.WebSocket`). */
  WebSocket?: WebSocketConstructor;
  /** The opening handshake must finish within this (default 5000 ms); needs `timers`. */
  timeoutMs?: number;
  /** Timers for the handshake timeout (an Env's); without them the handshake is unbounded. */
  timers?: Timers;
  /** Aborting gives up the handshake (the promise rejects with code `closed`). */
  signal?: AbortSignal;
  /** send() returns false once the socket buffers more than this (default 8 MiB). */
  highWaterBytes?: number;
}

class BrowserWebSocketConnection implements Connection {
  private readonly frameListeners: ((frame: Uint8Array) => void)[] = [];
  private closeListeners: ((info: CloseInfo) => void)[] = [];
  /** Set once, when this end learns it is closed (by us or by the peer); never unset. */
  private closeInfo: CloseInfo | undefined;
  /** The socket's last error, to explain an abnormal close that follows it. */
  private lastError: string | undefined;
  /**
   * Frames that arrived before the first onFrame listener, or before the flush it scheduled.
   * A browser WebSocket cannot pause reading, so this is unbounded; the SDK attaches its
   * listener in the same turn the socket opens, so it stays empty there.
   */
  private backlog: Uint8Array[] = [];
  private opened = false;
  private readonly openWaiters: { resolve(): void; reject(info: CloseInfo): void }[] = [];
  /** Resolves when the WebSocket itself reports 'close' (after our close, once its handshake ends). */
  readonly socketClosed: Promise<void>;

  constructor(
    private readonly ws: WebSocketLike,
    private readonly highWaterBytes: number,
  ) {
    let socketClosed!: () => void;
    this.socketClosed = new Promise((resolve) => (socketClosed = resolve));
    ws.binaryType = 'arraybuffer';
    ws.addEventListener('open', () => {
      this.opened = true;
      for (const w of this.openWaiters.splice(0)) w.resolve();
    });
    // Every failure is an 'error' then a 'close'; the error only explains the close.
    ws.addEventListener('error', (event) => {
      this.lastError = errorText(event);
    });
    ws.addEventListener('message', (event) => this.received(event.data));
    ws.addEventListener('close', (event) => {
      socketClosed();
      const info = closeInfoFrom(event.code ?? 1006, event.reason ?? '', this.lastError);
      for (const w of this.openWaiters.splice(0)) w.reject(info);
      this.peerClosed(info);
    });
  }

  /** Resolves once the socket is open; rejects with the close info if it closes first. */
  whenOpen(): Promise<void> {
    if (this.opened) return Promise.resolve();
    const info = this.closeInfo;
    if (info !== undefined) return Promise.reject(info);
    return new Promise((resolve, reject) => this.openWaiters.push({ resolve, reject }));
  }

  send(frame: Uint8Array): boolean {
    if (this.closeInfo !== undefined || this.ws.readyState !== OPEN) return false;
    // Copy: the caller may reuse its buffer at once (as with the memory transport), and not
    // every WebSocket class copies before send returns.
    this.ws.send(frame.slice());
    return this.ws.bufferedAmount <= this.highWaterBytes;
  }

  close(code: string, message: string): void {
    if (this.closeInfo !== undefined) return;
    try {
      this.ws.close(POLYARCH_CLOSE_CODE, closeReason(code, message));
    } catch {
      // Only an invalid code or reason throws, and closeReason makes both valid; a plain
      // close still ends the socket (the peer then sees 'closed' without our reason).
      this.ws.close();
    }
    // Frames not yet handed over are dropped, as the memory transport drops frames that
    // reach an end after it closed.
    this.backlog = [];
    const info = { code, message };
    for (const w of this.openWaiters.splice(0)) w.reject(info);
    this.finish(info);
  }

  onFrame(listener: (frame: Uint8Array) => void): void {
    this.frameListeners.push(listener);
    // Hand the backlog over in a microtask, not inside onFrame: the caller may still be
    // wiring itself up. No socket event can run before a microtask, so order holds.
    if (this.frameListeners.length === 1 && this.backlog.length > 0) queueMicrotask(() => this.flushBacklog());
  }

  onClose(listener: (info: CloseInfo) => void): void {
    if (this.closeInfo !== undefined) listener(this.closeInfo);
    else this.closeListeners.push(listener);
  }

  private received(data: unknown): void {
    // Frames reaching an end after it closed are dropped, as in the memory transport.
    if (this.closeInfo !== undefined) return;
    let frame: Uint8Array;
    if (data instanceof ArrayBuffer) frame = new Uint8Array(data);
    else if (ArrayBuffer.isView(data)) frame = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    else if (typeof data === 'string') {
      this.close(ErrorCode.protocol, 'received a text message: polyarch frames are binary');
      return;
    } else {
      // A Blob: the class ignored binaryType = 'arraybuffer', and a Blob reads only asynchronously.
      this.close(ErrorCode.protocol, 'received a binary message that is not an ArrayBuffer');
      return;
    }
    if (this.frameListeners.length === 0 || this.backlog.length > 0) {
      this.backlog.push(frame);
      return;
    }
    for (const listener of this.frameListeners) listener(frame);
  }

  private flushBacklog(): void {
    if (this.frameListeners.length === 0) return;
    // A listener may close this end, which empties the backlog: take frames one at a time.
    while (this.closeInfo === undefined) {
      const frame = this.backlog.shift();
      if (frame === undefined) break;
      for (const listener of this.frameListeners) listener(frame);
    }
  }

  private peerClosed(info: CloseInfo): void {
    // Frames the peer sent before closing come before its close, as on the wire.
    this.flushBacklog();
    this.backlog = [];
    this.finish(info);
  }

  private finish(info: CloseInfo): void {
    if (this.closeInfo !== undefined) return;
    this.closeInfo = info;
    const listeners = this.closeListeners;
    this.closeListeners = [];
    for (const listener of listeners) listener(info);
  }
}

/** A Connection over a standard WebSocket, plus when its socket has really closed. */
export interface BrowserConnection extends Connection {
  /** Resolves when the WebSocket reports 'close': after close(), once the close handshake ends. */
  readonly socketClosed: Promise<void>;
}

/**
 * Opens a standard WebSocket to `url` and resolves with its Connection once the handshake is
 * done. Rejects with DbError `unavailable` when the socket fails or closes before opening, or
 * the handshake times out (a browser says nothing more: no status, no body), with
 * `invalid_input` when the WebSocket class refuses the url, and with `closed` when `signal` aborts.
 *
 * @example
 * const conn = await connectBrowserWebSocket('wss://db.example.com/replicate', { WebSocket });
 * db.connect(conn);
 */
export function connectBrowserWebSocket(
  url: string,
  options: BrowserWebSocketOptions = {},
): Promise<BrowserConnection> {
  const where = redactUrl(url);
  const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof Ctor !== 'function') {
    return Promise.reject(
      new DbError(ErrorCode.invalidInput, 'no WebSocket class in this runtime: pass one (Node: `WebSocket` from "ws")'),
    );
  }
  if (options.signal?.aborted === true) {
    return Promise.reject(new DbError(ErrorCode.closed, `gave up opening a websocket to ${where}`));
  }
  let ws: WebSocketLike;
  try {
    ws = new Ctor(url);
  } catch (e) {
    // The standard constructor throws a SyntaxError for bad urls and fragments.
    return Promise.reject(
      new DbError(ErrorCode.invalidInput, `not a websocket url: ${where}`, { cause: e, details: { url: where } }),
    );
  }
  const conn = new BrowserWebSocketConnection(ws, options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES);
  const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  return new Promise<BrowserConnection>((resolve, reject) => {
    let settled = false;
    const settle = (error: DbError | null): void => {
      if (settled) return;
      settled = true;
      timer?.cancel();
      options.signal?.removeEventListener('abort', onAbort);
      if (error === null) {
        resolve(conn);
        return;
      }
      conn.close(error.code, error.message);
      reject(error);
    };
    const onAbort = (): void => settle(new DbError(ErrorCode.closed, `gave up opening a websocket to ${where}`));
    options.signal?.addEventListener('abort', onAbort);
    const timer = options.timers?.setTimeout(
      () =>
        settle(
          new DbError(ErrorCode.unavailable, `timed out after ${timeoutMs} ms opening a websocket to ${where}`, {
            details: { url: where, timeoutMs },
          }),
        ),
      timeoutMs,
    );
    conn.whenOpen().then(
      () => settle(null),
      (info: CloseInfo) =>
        settle(
          new DbError(ErrorCode.unavailable, `could not open a websocket to ${where}: ${info.message}`, {
            details: { url: where, code: info.code },
          }),
        ),
    );
  });
}

/** Maps a WebSocket close (code, reason) to what this end's onClose reports, as transport/websocket does. */
function closeInfoFrom(code: number, reason: string, error: string | undefined): CloseInfo {
  switch (code) {
    case POLYARCH_CLOSE_CODE:
      return parseCloseReason(reason);
    case 1000:
      return { code: ErrorCode.closed, message: reason === '' ? 'the peer closed the connection' : reason };
    case 1005:
      return { code: ErrorCode.closed, message: 'the peer closed the connection without a status' };
    case 1002:
    case 1003:
    case 1007:
      return { code: ErrorCode.protocol, message: error ?? withReason(`websocket protocol error ${code}`, reason) };
    case 1009:
      return { code: ErrorCode.tooLarge, message: error ?? withReason('websocket message too big', reason) };
    case 1006:
      return {
        code: 'disconnected',
        message:
          error === undefined ? 'connection lost without a close handshake (1006)' : `connection lost: ${error} (1006)`,
      };
    default:
      // 1001 (going away), 1011 (server error) and unknown codes: the peer is gone, try again.
      return { code: 'disconnected', message: error ?? withReason(`websocket closed with ${code}`, reason) };
  }
}

function withReason(text: string, reason: string): string {
  return reason === '' ? text : `${text}: ${reason}`;
}

/** What an error event says, if anything: browsers say nothing, `ws` gives the Node error. */
function errorText(event: WebSocketEventLike): string | undefined {
  const error = event.error as { code?: unknown; message?: unknown } | undefined;
  const errno = typeof error?.code === 'string' ? error.code : undefined;
  if (errno === 'ECONNREFUSED') return 'connection refused';
  if (errno === 'ENOTFOUND' || errno === 'EAI_AGAIN') return 'host not found';
  if (errno === 'ECONNRESET') return 'connection reset';
  if (typeof event.message === 'string' && event.message !== '') return event.message;
  return undefined;
}

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder();

/** `${code}: ${message}`, cut to the close-reason limit at a UTF-8 character boundary. */
export function closeReason(code: string, message: string): string {
  const bytes = utf8Encoder.encode(`${code}: ${message}`);
  if (bytes.length <= CLOSE_REASON_BYTES_MAX) return utf8Decoder.decode(bytes);
  let end = CLOSE_REASON_BYTES_MAX;
  // Step back over continuation bytes (10xxxxxx) to the start of the cut character.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return utf8Decoder.decode(bytes.subarray(0, end));
}

/** The inverse of closeReason; a reason without "code: " is all message. */
export function parseCloseReason(reason: string): CloseInfo {
  const at = reason.indexOf(': ');
  if (at <= 0) return { code: reason === '' ? ErrorCode.closed : reason, message: '' };
  return { code: reason.slice(0, at), message: reason.slice(at + 2) };
}

/** The url without credentials or query string (which may carry a token), for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '<invalid url>';
  }
}
