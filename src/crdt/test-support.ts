/**
 * Test helpers for src/crdt: a replica as the tests model it, holding one document's state,
 * issuing dots and timestamps the way the real replica does, and joining states it receives.
 * Only tests import this file; it imports nothing but src/core and src/crdt.
 */
import {
  DEFAULT_LIMITS,
  EMPTY_RECORD,
  HLC_ZERO,
  joinRecords,
  maxHlc,
  tick,
  toHex,
  encodeRecord,
} from '../core/index.js';
import type { Hlc, Policy, PolicyAt, RecordState } from '../core/index.js';
import type { Kind } from './kinds.js';
import { applyPatch, preparePatch } from './ops.js';
import type { Mint } from './ops.js';
import { materialize, toJson } from './view.js';
import type { JsonValue } from '../core/index.js';

export class TestReplica {
  state: RecordState = EMPTY_RECORD;
  /** Every state this replica has had, oldest first (stale messages come from here). */
  readonly history: RecordState[] = [EMPTY_RECORD];
  /** The last counter issued; shared by every document of the replica, so it may jump. */
  counter = 0;
  hlc: Hlc = HLC_ZERO;

  constructor(
    readonly id: string,
    /** This replica's wall clock: tests skew it and step it, backwards too. */
    public wallMs = 0,
  ) {}

  readonly mint: Mint = () => {
    this.counter += 1;
    this.hlc = tick(this.hlc, this.wallMs);
    return { dot: { replica: this.id, counter: this.counter }, hlc: this.hlc };
  };

  /** Validates and applies user operations; throws as preparePatch and applyPatch do. */
  patch(kind: Kind, ops: unknown[]): RecordState {
    const prepared = preparePatch(ops, kind, DEFAULT_LIMITS);
    this.state = applyPatch(this.state, materialize(this.state), prepared, this.id, this.mint);
    this.history.push(this.state);
    return this.state;
  }

  /** Joins a state received from another replica, observing its timestamps as replication does. */
  receive(other: RecordState, policy: Policy | PolicyAt): RecordState {
    for (const s of other.siblings) this.hlc = maxHlc(this.hlc, s.hlc);
    this.state = joinRecords(this.state, other, policy);
    this.history.push(this.state);
    return this.state;
  }
}

/** Canonical bytes as hex, so a failing comparison shows a readable difference. */
export const hex = (s: RecordState): string => toHex(encodeRecord(s));

/** The JSON a state shows, or undefined when it reads as absent. */
export function jsonOf(s: RecordState, policy: Policy | PolicyAt = 'keep'): JsonValue | undefined {
  const { root } = materialize(s, undefined, policy);
  return root === undefined ? undefined : toJson(root);
}

export function joinAll(states: readonly RecordState[], policy: Policy | PolicyAt): RecordState {
  return states.reduce<RecordState>((acc, s) => joinRecords(acc, s, policy), EMPTY_RECORD);
}
