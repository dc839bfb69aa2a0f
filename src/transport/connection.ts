/**
 * A Connection carries binary frames between two replicas, in order, without duplicates,
 * until it closes. Implementations: memory/ (tests, simulator, in-process) and websocket/.
 */

export interface CloseInfo {
  code: string;
  message: string;
}

export interface Connection {
  /** Queues one frame. Returns false when the transport's buffer is full (backpressure). */
  send(frame: Uint8Array): boolean;
  /** Closes both directions; the other side's onClose fires with this reason. */
  close(code: string, message: string): void;
  onFrame(listener: (frame: Uint8Array) => void): void;
  onClose(listener: (info: CloseInfo) => void): void;
}
