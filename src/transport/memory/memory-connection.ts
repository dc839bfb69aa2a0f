/**
 * In-memory connections for tests, the simulator and in-process sync. Frames are delivered
 * in order through a scheduler the caller chooses: a microtask by default, or a manual
 * queue a test pumps (and can cut) to explore orders of delivery across connections.
 */
import type { CloseInfo, Connection } from '../connection.js';

export type Scheduler = (deliver: () => void) => void;

export const microtaskScheduler: Scheduler = (fn) => queueMicrotask(fn);

class MemoryEnd implements Connection {
  peer: MemoryEnd | undefined;
  private frameListeners: ((f: Uint8Array) => void)[] = [];
  private closeListeners: ((c: CloseInfo) => void)[] = [];
  closed = false;
  framesSent = 0;
  bytesSent = 0;

  constructor(private readonly schedule: Scheduler) {}

  send(frame: Uint8Array): boolean {
    if (this.closed) return false;
    const copy = frame.slice();
    this.framesSent++;
    this.bytesSent += copy.length;
    const peer = this.peer;
    this.schedule(() => {
      if (peer === undefined || peer.closed) return;
      for (const l of peer.frameListeners) l(copy);
    });
    return true;
  }

  close(code: string, message: string): void {
    if (this.closed) return;
    this.closed = true;
    const peer = this.peer;
    this.notifyClosed({ code, message });
    this.schedule(() => peer?.remoteClosed({ code, message }));
  }

  private remoteClosed(info: CloseInfo): void {
    if (this.closed) return;
    this.closed = true;
    this.notifyClosed(info);
  }

  private notifyClosed(info: CloseInfo): void {
    const ls = this.closeListeners;
    this.closeListeners = [];
    for (const l of ls) l(info);
  }

  onFrame(listener: (frame: Uint8Array) => void): void {
    this.frameListeners.push(listener);
  }

  onClose(listener: (info: CloseInfo) => void): void {
    if (this.closed) listener({ code: 'closed', message: 'connection already closed' });
    else this.closeListeners.push(listener);
  }
}

/** Two connected ends. */
export function memoryConnectionPair(schedule: Scheduler = microtaskScheduler): [Connection, Connection] {
  const a = new MemoryEnd(schedule);
  const b = new MemoryEnd(schedule);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/**
 * A manual scheduler: frames wait in a queue until the test delivers them. Each
 * connection keeps its order (like TCP); `pump` picks which link goes next.
 */
export class ManualNetwork {
  private readonly queue: (() => void)[] = [];

  readonly schedule: Scheduler = (fn) => {
    this.queue.push(fn);
  };

  get pending(): number {
    return this.queue.length;
  }

  /** Delivers the oldest frame; returns false when none waits. */
  deliverOne(): boolean {
    const fn = this.queue.shift();
    if (fn === undefined) return false;
    fn();
    return true;
  }

  pair(): [Connection, Connection] {
    return memoryConnectionPair(this.schedule);
  }
}
