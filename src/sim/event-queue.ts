/**
 * The simulator's agenda: every future happening (a frame arriving, a timer firing, the next
 * client operation, a fault) is an event at a virtual time. Events run in (time, insertion)
 * order, so the order is a pure function of what was scheduled: no real time enters it.
 */

export interface ScheduledEvent {
  readonly at: number;
  readonly seq: number;
  /** A short label for traces and debugging. */
  readonly label: string;
  readonly run: () => void | Promise<void>;
  cancelled: boolean;
}

export interface EventHandle {
  cancel(): void;
}

/** A binary min-heap of events by (at, seq). */
export class EventQueue {
  private heap: ScheduledEvent[] = [];
  private nextSeq = 0;
  private live = 0;

  get size(): number {
    return this.live;
  }

  push(at: number, label: string, run: () => void | Promise<void>): EventHandle {
    const ev: ScheduledEvent = { at, seq: this.nextSeq++, label, run, cancelled: false };
    this.heap.push(ev);
    this.up(this.heap.length - 1);
    this.live++;
    return {
      cancel: () => {
        if (ev.cancelled) return;
        ev.cancelled = true;
        this.live--;
      },
    };
  }

  /** The earliest live event, removed; undefined when none is left. */
  pop(): ScheduledEvent | undefined {
    for (;;) {
      const top = this.heap[0];
      if (top === undefined) return undefined;
      const last = this.heap.pop() as ScheduledEvent;
      if (this.heap.length > 0) {
        this.heap[0] = last;
        this.down(0);
      }
      if (top.cancelled) continue;
      this.live--;
      top.cancelled = true;
      return top;
    }
  }

  /** The time of the earliest live event. */
  peekTime(): number | undefined {
    for (;;) {
      const top = this.heap[0];
      if (top === undefined) return undefined;
      if (!top.cancelled) return top.at;
      const last = this.heap.pop() as ScheduledEvent;
      if (this.heap.length > 0) {
        this.heap[0] = last;
        this.down(0);
      }
    }
  }

  private less(i: number, j: number): boolean {
    const a = this.heap[i] as ScheduledEvent;
    const b = this.heap[j] as ScheduledEvent;
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private swap(i: number, j: number): void {
    const x = this.heap[i] as ScheduledEvent;
    this.heap[i] = this.heap[j] as ScheduledEvent;
    this.heap[j] = x;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.heap.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.less(l, m)) m = l;
      if (r < n && this.less(r, m)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }
}
