/**
 * An in-process stand-in for the Web Locks API (`navigator.locks`), exclusive mode only, for
 * tests of code that coordinates browser tabs. Each simulated tab gets its own view from
 * `tab()`; `crash(view)` drops what that tab holds and waits for, as a browser does when a tab
 * is killed, without running any of its code.
 */
import type { LockManagerLike } from '../../src/storage/indexeddb/index.js';

interface Waiter {
  tab: number;
  grant: () => void;
  drop: () => void;
}

interface Held {
  tab: number;
  release: () => void;
}

export class FakeWebLocks {
  private readonly held = new Map<string, Held>();
  private readonly waiting = new Map<string, Waiter[]>();
  private readonly crashed = new Set<number>();
  private tabs = 0;

  /** The lock manager one tab sees. */
  tab(): LockManagerLike & { readonly tabId: number } {
    const tab = ++this.tabs;
    return {
      tabId: tab,
      request: (name, options, callback) => this.request(tab, name, options, callback),
    };
  }

  /** Who holds `name`, if anyone (the tab's id). */
  holder(name: string): number | undefined {
    return this.held.get(name)?.tab;
  }

  /** The tab is gone: its locks pass on at once and its waits end. Its callbacks never resume. */
  crash(view: { tabId: number }): void {
    this.crashed.add(view.tabId);
    for (const h of [...this.held.values()]) if (h.tab === view.tabId) h.release();
    for (const [name, ws] of this.waiting) {
      const keep = ws.filter((w) => w.tab !== view.tabId);
      for (const w of ws) if (w.tab === view.tabId) w.drop();
      this.waiting.set(name, keep);
    }
  }

  private request(
    tab: number,
    name: string,
    options: { ifAvailable?: boolean; signal?: AbortSignal },
    callback: (lock: object | null) => Promise<void>,
  ): Promise<void> {
    if (this.crashed.has(tab)) return new Promise(() => {});
    if (this.held.has(name)) {
      if (options.ifAvailable === true) return callback(null);
      return new Promise((resolve, reject) => {
        const waiter: Waiter = {
          tab,
          grant: () => {
            options.signal?.removeEventListener('abort', onAbort);
            this.run(tab, name, callback).then(resolve, reject);
          },
          drop: () => {},
        };
        const onAbort = (): void => {
          const ws = this.waiting.get(name) ?? [];
          this.waiting.set(
            name,
            ws.filter((w) => w !== waiter),
          );
          reject(new DOMException('the lock request was aborted', 'AbortError'));
        };
        if (options.signal?.aborted === true) {
          onAbort();
          return;
        }
        options.signal?.addEventListener('abort', onAbort);
        const ws = this.waiting.get(name) ?? [];
        ws.push(waiter);
        this.waiting.set(name, ws);
      });
    }
    return this.run(tab, name, callback);
  }

  /** Grants `name` to `tab` and runs the callback; the lock passes on when it settles or the tab crashes. */
  private run(tab: number, name: string, callback: (lock: object | null) => Promise<void>): Promise<void> {
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.held.delete(name);
      const next = this.waiting.get(name)?.shift();
      next?.grant();
    };
    this.held.set(name, { tab, release });
    const done = Promise.resolve().then(() => callback({ name, mode: 'exclusive' }));
    // A crashed tab's callback never resumes, so its release is the crash's, not the callback's.
    done.then(
      () => {
        if (!this.crashed.has(tab)) release();
      },
      () => {
        if (!this.crashed.has(tab)) release();
      },
    );
    return done;
  }
}
