/**
 * A Connection over a `ws` WebSocket (Node only): one binary message per frame, and our close
 * code and message carried in the WebSocket close reason so the peer's onClose sees them.
 * onClose fires exactly once per end, and no socket error ever escapes as an unhandled 'error'.
 */
import WebSocket from 'ws';
import type { CloseInfo, Connection } from '../connection.js';
import { assert, DbError, ErrorCode } from '../../shared/index.js';

/** The application close code (4000-4999 are private use) that says "the reason is ours". */
const POLYARCH_CLOSE_CODE = 4000;
/** RFC 6455: a close frame's payload is at most 125 bytes, 2 of them the status code. */
const CLOSE_REASON_BYTES_MAX = 123;
const DEFAULT_HIGH_WATER_BYTES = 8 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
/** How much of a refused upgrade's body we read for its `{error, message}`. */
const REFUSAL_BODY_BYTES_MAX = 64 * 1024;

export interface WrapWebSocketOptions {
  /** send() returns false once the socket buffers more than this (default 8 MiB). */
  highWaterBytes?: number;
}

export interface ConnectWebSocketOptions extends WrapWebSocketOptions {
  /** The whole opening handshake must finish within this (default 5000 ms). */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

class WebSocketConnection implements Connection {
  private readonly frameListeners: ((frame: Uint8Array) => void)[] = [];
  private closeListeners: ((info: CloseInfo) => void)[] = [];
  /** Set once, when this end learns it is closed (by us or by the peer); never unset. */
  private closeInfo: CloseInfo | undefined;
  /** The socket's last error, to explain an abnormal close that follows it. */
  private lastError: Error | undefined;
  /**
   * Frames that arrived before the first onFrame listener, or before the flush it scheduled:
   * the peer may speak right after the handshake, before connectWebSocket's caller has
   * attached its listeners, and those frames must not be lost.
   */
  private backlog: Uint8Array[] = [];
  private backlogBytes = 0;

  constructor(
    private readonly ws: WebSocket,
    private readonly highWaterBytes: number,
  ) {
    ws.binaryType = 'nodebuffer';
    // ws emits 'error' then 'close' for every failure; with a listener attached the error
    // cannot crash the process, and 'close' below is where the connection learns of it.
    ws.on('error', (err) => {
      this.lastError = err;
    });
    ws.on('message', (data, isBinary) => this.received(data, isBinary));
    ws.on('close', (code, reason) => this.socketClosed(closeInfoFrom(code, reason.toString('utf8'), this.lastError)));
    if (ws.readyState === WebSocket.CLOSED) {
      this.finish({ code: 'disconnected', message: 'the websocket was already closed when wrapped' });
    }
  }

  send(frame: Uint8Array): boolean {
    if (this.closeInfo !== undefined || this.ws.readyState !== WebSocket.OPEN) return false;
    // Copy: a server-side ws writes unmasked frames straight from the caller's bytes, which
    // may sit in the socket's buffer long after send returns; the caller may reuse its
    // buffer at once, as with the memory transport.
    this.ws.send(Buffer.from(frame), { binary: true });
    return this.ws.bufferedAmount <= this.highWaterBytes;
  }

  close(code: string, message: string): void {
    if (this.closeInfo !== undefined) return;
    try {
      this.ws.close(POLYARCH_CLOSE_CODE, closeReason(code, message));
    } catch {
      // Only an invalid code or reason throws, and closeReason makes both valid; if it ever
      // did, dropping the socket still closes both ends (the peer sees 'disconnected').
      this.ws.terminate();
    }
    // Frames not yet handed over are dropped, as the memory transport drops frames that
    // reach an end after it closed.
    this.backlog = [];
    // Reading must go on for the close handshake to finish (incoming frames are now ignored).
    this.ws.resume();
    this.finish({ code, message });
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

  private received(data: WebSocket.RawData, isBinary: boolean): void {
    // Frames reaching an end after it closed are dropped, as in the memory transport.
    if (this.closeInfo !== undefined) return;
    if (!isBinary) {
      this.close(ErrorCode.protocol, 'received a text message: polyarch frames are binary');
      return;
    }
    const frame = toUint8Array(data);
    if (this.frameListeners.length === 0 || this.backlog.length > 0) {
      this.backlog.push(frame);
      this.backlogBytes += frame.length;
      // Nobody reads yet: stop reading the socket rather than buffer without bound.
      if (this.backlogBytes > this.highWaterBytes) this.ws.pause();
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
    this.backlogBytes = 0;
    this.ws.resume();
  }

  private socketClosed(info: CloseInfo): void {
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

/**
 * Wraps an OPEN `ws` WebSocket (server side after the upgrade, client side after 'open').
 * Wrap it synchronously in the 'connection' handler: ws drops messages nobody listens to.
 *
 * @example
 * wss.on('connection', (ws) => {
 *   const conn = wrapWebSocket(ws);
 *   conn.onFrame((frame) => handle(frame));
 * });
 */
export function wrapWebSocket(ws: WebSocket, options: WrapWebSocketOptions = {}): Connection {
  // ws.send throws on a connecting socket; a caller with one should use connectWebSocket.
  assert(ws.readyState !== WebSocket.CONNECTING, 'wrapWebSocket needs an open websocket');
  return new WebSocketConnection(ws, options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES);
}

/**
 * Opens a client WebSocket and resolves with its Connection once the handshake is done.
 * Rejects with DbError `unavailable` on refusal, timeout or a non-101 answer.
 *
 * @example
 * const conn = await connectWebSocket('ws://127.0.0.1:7070/sync', { headers: { authorization: 'Bearer t' } });
 * conn.onFrame((frame) => handle(frame));
 */
export function connectWebSocket(url: string, options: ConnectWebSocketOptions = {}): Promise<Connection> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const where = redactUrl(url);
  let ws: WebSocket;
  try {
    ws = new WebSocket(url, {
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
      followRedirects: false,
      ...(options.headers === undefined ? {} : { headers: options.headers }),
    });
  } catch (e) {
    return Promise.reject(
      new DbError(ErrorCode.invalidInput, `not a websocket url: ${where}`, { cause: e, details: { url: where } }),
    );
  }
  return new Promise<Connection>((resolve, reject) => {
    let settled = false;
    // handshakeTimeout is a socket idle timeout; this bounds the whole handshake, and also
    // a refusal whose body never ends.
    const timer = setTimeout(() => {
      fail(
        new DbError(ErrorCode.unavailable, `timed out after ${timeoutMs} ms opening a websocket to ${where}`, {
          details: { url: where, timeoutMs },
        }),
      );
    }, timeoutMs);
    const fail = (error: DbError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      ws.terminate();
      reject(error);
    };
    ws.on('error', (err) => fail(connectError(where, timeoutMs, err)));
    ws.on('unexpected-response', (_req, res) => {
      const status = res.statusCode ?? 0;
      const chunks: Buffer[] = [];
      let bytes = 0;
      const refused = (): void => fail(refusalError(where, status, Buffer.concat(chunks).toString('utf8')));
      res.on('data', (chunk: Buffer) => {
        if (bytes >= REFUSAL_BODY_BYTES_MAX) return;
        chunks.push(chunk);
        bytes += chunk.length;
      });
      res.on('end', refused);
      // 'close' also covers a body cut short; fail() keeps only the first outcome.
      res.on('close', refused);
      res.on('error', refused);
    });
    ws.once('open', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      const highWaterBytes = options.highWaterBytes;
      resolve(wrapWebSocket(ws, highWaterBytes === undefined ? {} : { highWaterBytes }));
    });
  });
}

/** Maps a WebSocket close (code, reason) to what this end's onClose reports. */
function closeInfoFrom(code: number, reason: string, error: Error | undefined): CloseInfo {
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
      return {
        code: ErrorCode.protocol,
        message: error?.message ?? withReason(`websocket protocol error ${code}`, reason),
      };
    case 1009:
      return { code: ErrorCode.tooLarge, message: error?.message ?? withReason('websocket message too big', reason) };
    case 1006:
      return {
        code: 'disconnected',
        message:
          error === undefined
            ? 'connection lost without a close handshake (1006)'
            : `connection lost: ${error.message} (1006)`,
      };
    default:
      // 1001 (going away), 1011 (server error) and unknown codes: the peer is gone, try again.
      return { code: 'disconnected', message: error?.message ?? withReason(`websocket closed with ${code}`, reason) };
  }
}

function withReason(text: string, reason: string): string {
  return reason === '' ? text : `${text}: ${reason}`;
}

/** `${code}: ${message}`, cut to the close-reason limit at a UTF-8 character boundary. */
export function closeReason(code: string, message: string): string {
  const bytes = Buffer.from(`${code}: ${message}`, 'utf8');
  if (bytes.length <= CLOSE_REASON_BYTES_MAX) return bytes.toString('utf8');
  let end = CLOSE_REASON_BYTES_MAX;
  // Step back over continuation bytes (10xxxxxx) to the start of the cut character.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString('utf8');
}

/** The inverse of closeReason; a reason without "code: " is all message. */
export function parseCloseReason(reason: string): CloseInfo {
  const at = reason.indexOf(': ');
  if (at <= 0) return { code: reason === '' ? ErrorCode.closed : reason, message: '' };
  return { code: reason.slice(0, at), message: reason.slice(at + 2) };
}

function toUint8Array(data: WebSocket.RawData): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  const buf = Array.isArray(data) ? Buffer.concat(data) : data;
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function connectError(where: string, timeoutMs: number, err: Error): DbError {
  const errno = (err as NodeJS.ErrnoException).code;
  const why =
    errno === 'ECONNREFUSED'
      ? 'connection refused'
      : errno === 'ENOTFOUND' || errno === 'EAI_AGAIN'
        ? 'host not found'
        : errno === 'ECONNRESET'
          ? 'connection reset'
          : err.message === 'Opening handshake has timed out'
            ? `timed out after ${timeoutMs} ms`
            : err.message || (errno ?? String(err));
  return new DbError(ErrorCode.unavailable, `could not open a websocket to ${where}: ${why}`, {
    cause: err,
    details: { url: where, ...(errno === undefined ? {} : { errno }) },
  });
}

/** The server answered the upgrade with an HTTP status; a JSON `{error, message}` body explains it. */
function refusalError(where: string, status: number, body: string): DbError {
  let error: string | undefined;
  let message: string | undefined;
  try {
    const parsed: unknown = JSON.parse(body);
    if (typeof parsed === 'object' && parsed !== null) {
      const fields = parsed as Record<string, unknown>;
      if (typeof fields['error'] === 'string') error = fields['error'];
      if (typeof fields['message'] === 'string') message = fields['message'];
    }
  } catch {
    // Not JSON: the status alone explains it.
  }
  const explained = [error, message].filter((s) => s !== undefined).join(': ');
  return new DbError(
    ErrorCode.unavailable,
    `${where} refused the websocket upgrade with HTTP ${status}${explained === '' ? '' : ` (${explained})`}`,
    {
      details: {
        url: where,
        status,
        ...(error === undefined ? {} : { error }),
        ...(message === undefined ? {} : { message }),
      },
    },
  );
}

/** The url without credentials or query string, which may carry tokens, for messages. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '<invalid url>';
  }
}
