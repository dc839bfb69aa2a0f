/**
 * Hybrid logical clocks (Kulkarni et al., 2014): physical milliseconds plus a logical
 * counter, so timestamps follow causality even when wall clocks disagree.
 * Invariant: tick() is strictly greater than every timestamp issued or observed before.
 * A remote timestamp further ahead of our wall clock than `maxSkewMs` is refused, so one
 * peer with a runaway clock cannot drag every leader's clock into the future.
 */
import { DbError, ErrorCode } from '../shared/errors.js';

export interface Hlc {
  readonly ms: number;
  readonly c: number;
}

export const HLC_ZERO: Hlc = { ms: 0, c: 0 };

/** Default bound on how far ahead of our wall clock a remote timestamp may be. */
export const DEFAULT_MAX_SKEW_MS = 60_000;

export function compareHlc(a: Hlc, b: Hlc): number {
  return a.ms - b.ms || a.c - b.c;
}

export function maxHlc(a: Hlc, b: Hlc): Hlc {
  return compareHlc(a, b) >= 0 ? a : b;
}

/** The next local timestamp after `last`, given the wall clock `nowMs`. */
export function tick(last: Hlc, nowMs: number): Hlc {
  const wall = Math.floor(nowMs);
  if (wall > last.ms) return { ms: wall, c: 0 };
  return { ms: last.ms, c: last.c + 1 };
}

/**
 * Merges a remote timestamp into `last`. Throws DbError('clock_skew') when the remote
 * timestamp is more than `maxSkewMs` ahead of `nowMs`: the caller refuses the change.
 */
export function observe(last: Hlc, remote: Hlc, nowMs: number, maxSkewMs: number): Hlc {
  if (remote.ms > nowMs + maxSkewMs) {
    throw new DbError(
      ErrorCode.clockSkew,
      `remote clock is ${remote.ms - Math.floor(nowMs)} ms ahead of ours (bound: ${maxSkewMs} ms)`,
      { details: { remoteMs: remote.ms, nowMs, maxSkewMs } },
    );
  }
  return maxHlc(last, remote);
}

/** ISO-8601 rendering of the physical part, for humans. */
export function hlcToIso(h: Hlc): string {
  return new Date(h.ms).toISOString();
}
