/**
 * The event trace of a run: one line per thing that happened (a client operation and its
 * outcome, a commit of a peer's batch, a frame delivered, a fault), each tagged with the
 * documents and replicas it touches so a report can show only what led to a violation.
 * A rolling hash of every line is the run's fingerprint: same seed, same hash.
 */

export interface TraceEntry {
  readonly atMs: number;
  readonly text: string;
  /** Document keys (`collection/id`) the event touches. */
  readonly keys: readonly string[] | undefined;
  /** Replica indexes the event touches. */
  readonly replicas: readonly number[] | undefined;
  /** Frame deliveries and heartbeats: left out of minimal traces. */
  readonly noise: boolean;
}

export class Trace {
  readonly entries: TraceEntry[] = [];
  private h1 = 0x811c9dc5;
  private h2 = 0x9747b28c;

  constructor(private readonly keep: boolean) {}

  add(
    atMs: number,
    text: string,
    tags: { keys?: readonly string[]; replicas?: readonly number[]; noise?: boolean } = {},
  ): void {
    this.mix(atMs, text);
    if (!this.keep) return;
    this.entries.push({ atMs, text, keys: tags.keys, replicas: tags.replicas, noise: tags.noise === true });
  }

  /** Mixes a value into the fingerprint without keeping a line (final digests, for instance). */
  mix(atMs: number, text: string): void {
    let a = this.h1 ^ atMs;
    let b = this.h2 ^ Math.floor(atMs / 4294967296);
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
      b ^= b >>> 15;
    }
    this.h1 = Math.imul(a ^ 0x0a, 0x01000193) >>> 0;
    this.h2 = (b ^ (b >>> 13)) >>> 0;
  }

  get hash(): string {
    return this.h1.toString(16).padStart(8, '0') + this.h2.toString(16).padStart(8, '0');
  }
}

export function formatTime(atMs: number, startMs: number): string {
  return `+${((atMs - startMs) / 1000).toFixed(3)}s`;
}
