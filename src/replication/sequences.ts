/**
 * Sequences: human-facing numbers (invoice 1041) handed out by every leader without asking
 * anyone per number, in the style of PostgreSQL BDR's galloc sequences. One replica, the
 * sequence's allocator, grants blocks of numbers; each leader hands out the numbers of the
 * blocks granted to it, and asks for the next block before its current one runs out. No number
 * is ever handed out twice, even across partitions and crashes; numbers may be skipped (gaps).
 *
 * State replicates as last-writer-wins records of the system collection `_sequences`, each
 * with a single writer so that no two leaders ever write one document concurrently:
 * - `<name>`: the settings `{ allocator, blockSize, start }` (any replica, `configureSequence`);
 * - `<name>/request/<replica>`: `{ blocks }`, how many blocks that replica has ever asked for;
 * - `<name>/grants/<allocator>`: `{ next, grants: { <replica>: [[k, from, to], ...] } }`, the
 *   first number that allocator has not granted, and the last blocks it granted each replica
 *   (block k answers that replica's k-th request). One per allocator, so a handover never
 *   makes two writers of one document.
 *
 * A leader remembers the last number it handed out under a local meta key (not replicated),
 * written before the number is returned: after a crash it continues above it. It only ever
 * hands out numbers above that one, so even a block granted twice (a handover hazard, below)
 * never makes it repeat itself.
 *
 * Handover: made at the current allocator, which writes its grants document again in the same
 * atomic change as the new settings, so the new allocator receives every grant with the
 * settings naming it (G4) and grants from above them (and above `start`). At another leader,
 * which may not have seen the latest grants, it is refused unless forced with a `start` above
 * anything the old allocator may have granted. Two leaders creating one sequence concurrently
 * with different allocators remain a hazard (both may grant until last-writer-wins settles the
 * settings): create a sequence once.
 */
import { compareLww, fromUtf8, utf8, checkReplicaId, COLLECTION_PATTERN } from '../core/index.js';
import type { JsonValue, RecordState, Sibling } from '../core/index.js';
import type { Env } from '../env/env.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { SEQUENCES_COLLECTION } from './collection-config.js';
import type { CommitHook, RecordedChange } from './commit-hooks.js';

export interface SequenceOptions {
  /** The replica that grants blocks of numbers to every leader (itself included). */
  allocator: string;
  /** Numbers per block (default 100): a leader cut off from the allocator can hand out about two blocks. */
  blockSize?: number;
  /** The first number (default 1). On a forced handover, a number above all the old allocator may have granted. */
  start?: number;
  /**
   * Changes the allocator away from a replica other than this one. A handover is safe when made
   * at the current allocator (its last grants travel with the change); `force` is for an
   * allocator gone for good, with a `start` above every number it may have granted.
   */
  force?: boolean;
}

export interface SequenceConfig {
  allocator: string;
  blockSize: number;
  start: number;
}

export interface SequenceStatus {
  name: string;
  allocator: string;
  blockSize: number;
  start: number;
  /** The ranges this leader still holds, [from, to] inclusive: its current block and a prefetched one. */
  blocks: [number, number][];
  /** How many numbers this leader can still hand out without a new block. */
  remaining: number;
  /** Blocks this leader has asked for, in all. */
  requested: number;
  /** Blocks granted to this leader that it has heard of, in all. */
  granted: number;
  /** The last number this leader handed out, or null. */
  last: number | null;
}

/** What the sequences need of the replica they live in. */
export interface SequenceHost {
  readonly id: string;
  readonly env: Env;
  isClosed(): boolean;
  /** Every document of `_sequences` (at open). */
  listDocs(): Promise<{ id: string; state: RecordState }[]>;
  /** Writes `_sequences` documents in one atomic system write. */
  put(docs: { id: string; value: JsonValue }[]): Promise<void>;
  readLocal(key: string): Promise<Uint8Array | undefined>;
  /** Rewrites a local (never replicated) meta value in one write transaction. */
  updateLocal(key: string, update: (old: Uint8Array | undefined) => Uint8Array): Promise<void>;
  /** Runs `job` after the current commits, on the replica's background queue. */
  afterCommit(job: () => Promise<void>): void;
}

type Block = [k: number, from: number, to: number];
interface Grants {
  next: number;
  grants: Record<string, Block[]>;
}
interface SequenceState {
  config: SequenceConfig | undefined;
  requests: Map<string, number>;
  grants: Map<string, Grants>;
}

export const DEFAULT_BLOCK_SIZE = 100;
export const DEFAULT_WAIT_MS = 2000;
const BLOCK_SIZE_MAX = 1_000_000_000;
/** Blocks a grants document keeps per replica: a leader holds at most its current block and one prefetched. */
const KEPT_BLOCKS = 4;
/** Blocks granted to one replica per pass: a leader never has more than one request outstanding. */
const GRANTS_PER_PASS = 2;
const POSITION_PREFIX = 'sequence:';

export function checkSequenceName(name: unknown): string {
  if (typeof name !== 'string' || !COLLECTION_PATTERN.test(name)) {
    throw new DbError(
      ErrorCode.invalidName,
      `invalid sequence name ${typeof name === 'string' ? JSON.stringify(name.slice(0, 80)) : `(a ${typeof name})`}: use 1-64 letters, digits, '_', '.', '-', starting with a letter`,
    );
  }
  return name;
}

/** Validates sequence settings, filling in the defaults. */
export function checkSequenceOptions(options: unknown): SequenceConfig & { force: boolean } {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new DbError(ErrorCode.invalidInput, 'sequence settings must be an object: { allocator, blockSize?, start? }');
  }
  const o = options as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (k !== 'allocator' && k !== 'blockSize' && k !== 'start' && k !== 'force') {
      throw new DbError(
        ErrorCode.invalidInput,
        `unknown sequence setting ${JSON.stringify(k)} (allocator, blockSize, start, force)`,
      );
    }
  }
  if (o.force !== undefined && typeof o.force !== 'boolean') {
    throw new DbError(ErrorCode.invalidInput, 'force must be true or false');
  }
  if (o.force === true && o.start === undefined) {
    throw new DbError(
      ErrorCode.invalidInput,
      'a forced handover needs a start above every number the old allocator may have granted',
    );
  }
  if (o.allocator === undefined) {
    throw new DbError(ErrorCode.invalidInput, 'a sequence needs an allocator: the replica id that grants its blocks');
  }
  const allocator = checkReplicaId(o.allocator);
  const blockSize = o.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (
    typeof blockSize !== 'number' ||
    !Number.isSafeInteger(blockSize) ||
    blockSize < 1 ||
    blockSize > BLOCK_SIZE_MAX
  ) {
    throw new DbError(ErrorCode.invalidInput, `blockSize must be an integer in 1..${BLOCK_SIZE_MAX}`);
  }
  const start = o.start ?? 1;
  if (typeof start !== 'number' || !Number.isSafeInteger(start) || start < 0) {
    throw new DbError(ErrorCode.invalidInput, 'start must be an integer >= 0');
  }
  return { allocator, blockSize, start, force: o.force === true };
}

const configId = (name: string): string => name;
const requestId = (name: string, replica: string): string => `${name}/request/${replica}`;
const grantsId = (name: string, allocator: string): string => `${name}/grants/${allocator}`;

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function parseGrants(v: unknown): Grants | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const { next, grants } = v as { next?: unknown; grants?: unknown };
  if (!isCount(next) || grants === null || typeof grants !== 'object' || Array.isArray(grants)) return undefined;
  const out: Record<string, Block[]> = {};
  for (const [replica, blocks] of Object.entries(grants as Record<string, unknown>)) {
    if (!Array.isArray(blocks)) return undefined;
    const list: Block[] = [];
    for (const b of blocks) {
      if (!Array.isArray(b) || b.length !== 3 || !b.every(isCount) || (b[1] as number) > (b[2] as number))
        return undefined;
      list.push([b[0] as number, b[1] as number, b[2] as number]);
    }
    out[replica] = list;
  }
  return { next, grants: out };
}

/** The value of a last-writer-wins system document, or undefined when deleted or unreadable. */
function valueOf(state: RecordState): unknown {
  let latest: Sibling | undefined;
  for (const s of state.siblings) if (latest === undefined || compareLww(s, latest) > 0) latest = s;
  if (latest === undefined || latest.value === null) return undefined;
  try {
    return JSON.parse(fromUtf8(latest.value)) as unknown;
  } catch {
    return undefined;
  }
}

/** Merged ranges of numbers above `last` among `blocks`, ascending. */
function rangesAbove(blocks: readonly Block[], last: number | undefined): [number, number][] {
  const ranges: [number, number][] = [];
  for (const [, from, to] of blocks) {
    const lo = last === undefined ? from : Math.max(from, last + 1);
    if (lo <= to) ranges.push([lo, to]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged: [number, number][] = [];
  for (const r of ranges) {
    const prev = merged[merged.length - 1];
    if (prev !== undefined && r[0] <= prev[1] + 1) prev[1] = Math.max(prev[1], r[1]);
    else merged.push([r[0], r[1]]);
  }
  return merged;
}

export class Sequences implements CommitHook {
  private readonly states = new Map<string, SequenceState>();
  /** The last number handed out per sequence, once read from the store. */
  private readonly positions = new Map<string, number | undefined>();
  private readonly wakers = new Map<string, Set<() => void>>();
  /** Requests and grants are computed and written one at a time. */
  private lane: Promise<void> = Promise.resolve();

  constructor(private readonly host: SequenceHost) {}

  /** Reads the `_sequences` documents at open, and grants what is pending if this replica allocates. */
  async load(): Promise<void> {
    for (const doc of await this.host.listDocs()) this.apply(doc.id, doc.state);
    for (const [name, st] of this.states) if (st.config?.allocator === this.host.id) this.scheduleGrants(name);
  }

  committed(changes: readonly RecordedChange[]): void {
    const touched = new Set<string>();
    for (const c of changes) {
      if (c.collection !== SEQUENCES_COLLECTION) continue;
      const name = this.apply(c.id, c.after);
      if (name !== undefined) touched.add(name);
    }
    for (const name of touched) {
      const st = this.states.get(name);
      if (st?.config?.allocator === this.host.id && this.pending(st).length > 0) this.scheduleGrants(name);
      this.wake(name);
    }
  }

  /** Wakes every waiting `next()` (the replica closed). */
  closed(): void {
    for (const name of [...this.wakers.keys()]) this.wake(name);
  }

  /**
   * Writes the settings. A handover (a new allocator) is made at the current allocator, which
   * writes its grants document again in the same atomic change: the new allocator receives the
   * settings naming it together with every grant the old one made, and grants above them. Made
   * elsewhere, grants the old allocator made that have not arrived could be granted twice, so
   * it is refused unless forced (with a `start` above anything the old one may have granted).
   */
  async configure(name: string, options: unknown): Promise<SequenceConfig> {
    checkSequenceName(name);
    const { force, ...config } = checkSequenceOptions(options);
    let written: SequenceConfig = config;
    // In the lane: no grant of this replica's may slip between reading its grants and the write.
    await this.inLane(async () => {
      const current = this.states.get(name)?.config;
      const self = this.host.id;
      const handover = current !== undefined && current.allocator !== config.allocator;
      if (handover && current.allocator !== self && !force) {
        throw new DbError(
          ErrorCode.conflict,
          `sequence ${name}: its allocator is ${current.allocator}; hand over at ${current.allocator}, whose last ` +
            `grants then travel with the change, or, if it is gone for good, force it with a start above every ` +
            `number it may have granted: { "allocator": "${config.allocator}", "start": N, "force": true }`,
        );
      }
      const docs: { id: string; value: JsonValue }[] = [{ id: configId(name), value: { ...config } }];
      if (handover && current.allocator === self) {
        const own = this.states.get(name)?.grants.get(self) ?? { next: 0, grants: {} };
        docs.push({ id: grantsId(name, self), value: { next: own.next, grants: own.grants } as unknown as JsonValue });
      }
      await this.host.put(docs);
      written = config;
    });
    return written;
  }

  async status(name: string): Promise<SequenceStatus> {
    checkSequenceName(name);
    const st = this.known(name);
    const config = st.config as SequenceConfig;
    const last = await this.position(name);
    const blocks = rangesAbove(this.blocksOf(st, this.host.id), last);
    return {
      name,
      allocator: config.allocator,
      blockSize: config.blockSize,
      start: config.start,
      blocks,
      remaining: blocks.reduce((n, [from, to]) => n + to - from + 1, 0),
      requested: st.requests.get(this.host.id) ?? 0,
      granted: this.grantedTo(st, this.host.id),
      last: last ?? null,
    };
  }

  async next(name: string, waitMs: number): Promise<number> {
    checkSequenceName(name);
    this.known(name);
    let timedOut = false;
    let timer: { cancel(): void } | undefined;
    try {
      for (;;) {
        if (this.host.isClosed()) throw new DbError(ErrorCode.closed, `replica ${this.host.id} is closed`);
        const st = this.known(name);
        await this.position(name);
        // Read after the await: another next() may have taken a number meanwhile.
        const ranges = rangesAbove(this.blocksOf(st, this.host.id), this.positions.get(name));
        const first = ranges[0];
        if (first !== undefined) {
          const n = first[0];
          // Taken in memory at once, so no concurrent call can take it too; persisted before it is returned.
          this.positions.set(name, n);
          const remaining = ranges.reduce((sum, [from, to]) => sum + to - from + 1, 0) - 1;
          if (remaining < (st.config as SequenceConfig).blockSize / 2 && !this.outstanding(st)) {
            this.host.afterCommit(() => this.inLane(() => this.request(name)));
          }
          const key = POSITION_PREFIX + name;
          await this.host.updateLocal(key, (old) => {
            const stored = old === undefined ? undefined : (JSON.parse(fromUtf8(old)) as { last: number }).last;
            return utf8(JSON.stringify({ last: stored === undefined ? n : Math.max(stored, n) }));
          });
          return n;
        }
        if (timedOut) throw this.exhausted(name, waitMs);
        const woken = this.nextWake(name);
        if (timer === undefined) {
          timer = this.host.env.timers.setTimeout(() => {
            timedOut = true;
            this.wake(name);
          }, waitMs);
        }
        await this.inLane(() => this.request(name));
        // A grant may have come during the request (the allocator serves itself at once).
        if (rangesAbove(this.blocksOf(this.known(name), this.host.id), this.positions.get(name)).length > 0) continue;
        await woken;
      }
    } finally {
      timer?.cancel();
    }
  }

  private exhausted(name: string, waitMs: number): DbError {
    const config = this.states.get(name)?.config as SequenceConfig;
    const self = this.host.id;
    const why =
      config.allocator === self
        ? `the allocator ${self} could not grant itself a new block within ${waitMs} ms`
        : `the allocator ${config.allocator} granted no new block within ${waitMs} ms (unreachable or partitioned?)`;
    return new DbError(
      ErrorCode.sequenceExhausted,
      `sequence ${name}: leader ${self} has used every number granted to it and ${why}; no number is reused: retry once it is connected`,
      { details: { sequence: name, replica: self, allocator: config.allocator, waitMs } },
    );
  }

  /** The state of a configured sequence, or not_found. */
  private known(name: string): SequenceState {
    const st = this.states.get(name);
    if (st?.config === undefined) {
      throw new DbError(
        ErrorCode.notFound,
        `sequence ${name} is not configured at ${this.host.id}: configure it, or wait for its settings to replicate here`,
      );
    }
    return st;
  }

  private async position(name: string): Promise<number | undefined> {
    if (this.positions.has(name)) return this.positions.get(name);
    const bytes = await this.host.readLocal(POSITION_PREFIX + name);
    const stored = bytes === undefined ? undefined : (JSON.parse(fromUtf8(bytes)) as { last: number }).last;
    // A concurrent call may have loaded it and taken numbers meanwhile.
    if (!this.positions.has(name)) this.positions.set(name, stored);
    return this.positions.get(name);
  }

  /** Asks for one more block unless a request is outstanding; the allocator grants itself at once. */
  private async request(name: string): Promise<void> {
    const st = this.states.get(name);
    if (st?.config === undefined || this.host.isClosed()) return;
    const self = this.host.id;
    if (!this.outstanding(st)) {
      const blocks = Math.max(st.requests.get(self) ?? 0, this.grantedTo(st, self)) + 1;
      await this.host.put([{ id: requestId(name, self), value: { blocks } }]);
    }
    if (st.config.allocator === self) await this.grant(name);
  }

  private outstanding(st: SequenceState): boolean {
    return (st.requests.get(this.host.id) ?? 0) > this.grantedTo(st, this.host.id);
  }

  private scheduleGrants(name: string): void {
    this.host.afterCommit(() => this.inLane(() => this.grant(name)));
  }

  /** At the allocator: grants every block asked for and not yet granted, in one write. */
  private async grant(name: string): Promise<void> {
    const st = this.states.get(name);
    const config = st?.config;
    const self = this.host.id;
    if (st === undefined || config === undefined || config.allocator !== self || this.host.isClosed()) return;
    const pending = this.pending(st);
    if (pending.length === 0) return;
    const own = st.grants.get(self) ?? { next: 0, grants: {} };
    // Above every number this allocator has seen granted, by itself or by those before it.
    let next = Math.max(config.start, ...[...st.grants.values()].map((g) => g.next));
    const grants: Record<string, Block[]> = {};
    for (const [r, blocks] of Object.entries(own.grants)) grants[r] = blocks.map((b) => [...b] as Block);
    for (const [replica, from, to] of pending) {
      const list = (grants[replica] ??= []);
      for (let k = from; k <= to; k++) {
        const end = next + config.blockSize - 1;
        if (!Number.isSafeInteger(end)) {
          this.host.env.logger.log('error', 'a sequence has run out of safe integers', { sequence: name });
          break;
        }
        list.push([k, next, end]);
        next = end + 1;
      }
      grants[replica] = list.slice(-KEPT_BLOCKS);
    }
    await this.host.put([{ id: grantsId(name, self), value: { next, grants } }]);
  }

  /** [replica, first block, last block] for each replica asking for blocks not granted yet. */
  private pending(st: SequenceState): [string, number, number][] {
    const out: [string, number, number][] = [];
    for (const [replica, asked] of [...st.requests].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const granted = this.grantedTo(st, replica);
      if (asked > granted) out.push([replica, granted + 1, Math.min(asked, granted + GRANTS_PER_PASS)]);
    }
    return out;
  }

  /** How many blocks `replica` has been granted, by every allocator this replica has heard of. */
  private grantedTo(st: SequenceState, replica: string): number {
    let k = 0;
    for (const g of st.grants.values()) for (const b of g.grants[replica] ?? []) k = Math.max(k, b[0]);
    return k;
  }

  private blocksOf(st: SequenceState, replica: string): Block[] {
    return [...st.grants.values()].flatMap((g) => g.grants[replica] ?? []);
  }

  /** Takes in one `_sequences` document's state; returns the sequence it belongs to. */
  private apply(id: string, state: RecordState): string | undefined {
    const parts = id.split('/');
    const name = parts[0] as string;
    if (!COLLECTION_PATTERN.test(name)) return undefined;
    let st = this.states.get(name);
    if (st === undefined) {
      st = { config: undefined, requests: new Map(), grants: new Map() };
      this.states.set(name, st);
    }
    const value = valueOf(state);
    if (parts.length === 1) {
      try {
        st.config = value === undefined ? undefined : checkSequenceOptions(value);
      } catch {
        // Settings a newer version wrote: keep the ones before.
      }
    } else if (parts.length === 3 && parts[1] === 'request') {
      const blocks = (value as { blocks?: unknown } | undefined)?.blocks;
      if (isCount(blocks)) st.requests.set(parts[2] as string, blocks);
      else if (value === undefined) st.requests.delete(parts[2] as string);
    } else if (parts.length === 3 && parts[1] === 'grants') {
      const grants = parseGrants(value);
      if (grants !== undefined) st.grants.set(parts[2] as string, grants);
      else if (value === undefined) st.grants.delete(parts[2] as string);
    }
    return name;
  }

  private inLane(job: () => Promise<void>): Promise<void> {
    const run = this.lane.then(job);
    this.lane = run.catch(() => undefined);
    return run;
  }

  private nextWake(name: string): Promise<void> {
    return new Promise((resolve) => {
      let set = this.wakers.get(name);
      if (set === undefined) this.wakers.set(name, (set = new Set()));
      set.add(resolve);
    });
  }

  private wake(name: string): void {
    const set = this.wakers.get(name);
    if (set === undefined) return;
    this.wakers.delete(name);
    for (const w of set) w();
  }
}
