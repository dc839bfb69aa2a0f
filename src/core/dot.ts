/**
 * A dot is the identity of one write: (replica, counter). A replica's counter only grows,
 * is persisted with the write it numbers, and is never reused.
 */

export interface Dot {
  readonly replica: string;
  readonly counter: number;
}

export function compareDots(a: Dot, b: Dot): number {
  if (a.replica !== b.replica) return a.replica < b.replica ? -1 : 1;
  return a.counter - b.counter;
}

export function dotEquals(a: Dot, b: Dot): boolean {
  return a.replica === b.replica && a.counter === b.counter;
}

export function dotToString(d: Dot): string {
  return `${d.replica}:${d.counter}`;
}
