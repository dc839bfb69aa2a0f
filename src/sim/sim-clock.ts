/**
 * Virtual time. One global clock (`VirtualTime`) advances only when the simulator takes the
 * next event off its agenda; each replica reads its own wall clock, the global time plus a
 * skew (which faults make jump, forwards or back) plus a drift, and its timers fire when
 * global time reaches their deadline (timers, like Node's, run on a monotonic clock: a
 * wall-clock jump does not move them).
 * Invariant: nothing here reads real time; the same seed gives the same readings.
 */
import type { Clock, TimerHandle, Timers } from '../env/index.js';
import { EventQueue } from './event-queue.js';
import type { EventHandle } from './event-queue.js';

export const START_MS = 1_700_000_000_000;

export class VirtualTime {
  /** Global virtual time, in whole milliseconds. */
  nowMs = START_MS;
  readonly agenda = new EventQueue();

  /** Schedules `run` `delayMs` from now (at least now). */
  after(delayMs: number, label: string, run: () => void | Promise<void>): EventHandle {
    return this.agenda.push(this.nowMs + Math.max(0, Math.ceil(delayMs)), label, run);
  }

  at(atMs: number, label: string, run: () => void | Promise<void>): EventHandle {
    return this.agenda.push(Math.max(this.nowMs, Math.ceil(atMs)), label, run);
  }

  elapsedMs(): number {
    return this.nowMs - START_MS;
  }
}

/** A replica's wall clock: global time + skew + drift (parts per million of elapsed time). */
export class ReplicaClock implements Clock {
  constructor(
    private readonly time: VirtualTime,
    public skewMs: number,
    public driftPpm: number,
  ) {}

  nowMs(): number {
    return Math.floor(this.time.nowMs + this.skewMs + (this.time.elapsedMs() * this.driftPpm) / 1e6);
  }
}

/**
 * A replica process's timers. A crash cancels them all (the process is gone); a restarted
 * replica gets a fresh set. Durations run at the replica's drifting rate.
 */
export class ReplicaTimers implements Timers {
  private readonly handles = new Set<EventHandle>();
  private dead = false;

  constructor(
    private readonly time: VirtualTime,
    private readonly clock: ReplicaClock,
    private readonly label: string,
  ) {}

  setTimeout(fn: () => void, ms: number): TimerHandle {
    if (this.dead) return { cancel() {} };
    const globalMs = Math.max(0, ms) / (1 + this.clock.driftPpm / 1e6);
    const handle = this.time.after(globalMs, this.label, () => {
      this.handles.delete(handle);
      fn();
    });
    this.handles.add(handle);
    return {
      cancel: () => {
        handle.cancel();
        this.handles.delete(handle);
      },
    };
  }

  /** The process died: no timer of it fires again. */
  killAll(): void {
    this.dead = true;
    for (const h of this.handles) h.cancel();
    this.handles.clear();
  }
}
