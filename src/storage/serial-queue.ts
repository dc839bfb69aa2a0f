/**
 * Runs tasks one at a time in call order: how every adapter serializes its transactions.
 * A failed task does not stop the ones after it.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task);
    this.tail = result.then(ignore, ignore);
    return result;
  }

  /** Settles once every task queued so far has settled. */
  drained(): Promise<void> {
    return this.tail.then(ignore);
  }
}

function ignore(): void {}
