/**
 * Collection settings, replicated: each collection's settings are a document of the system
 * collection `_config` (id: the collection's name), a last-writer-wins record, so every
 * leader ends up applying the same settings, whichever leader they were changed at.
 *
 * Until a collection's replicated settings arrive, a replica uses the local defaults given
 * to `openReplica({ collections })`, then the built-in default (`record`, `keep`). Merge
 * functions cannot replicate (they are code), so settings name them and every replica
 * registers the functions under those names.
 */
import { DEFAULT_LIMITS, Policy, encodeJsonValue, fromUtf8, winner } from '../core/index.js';
import type { JsonValue, PolicyAt, RecordState } from '../core/index.js';
import { DEFAULT_CONFIG, Kind, checkCollectionConfig, mergeNameAt, policyAt } from '../crdt/index.js';
import type { CollectionConfig } from '../crdt/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import type { Logger } from '../env/env.js';

export const CONFIG_COLLECTION = '_config';
/** Sequences' settings, requests and grants (sequences.ts). */
export const SEQUENCES_COLLECTION = '_sequences';

/**
 * Collections the replica itself writes (`write(ops, system = true)`): they replicate like
 * data but are not the user's, so they are neither counted in `docs` nor shown in conflicts.
 */
export function isSystemCollection(collection: string): boolean {
  return collection === CONFIG_COLLECTION || collection === SEQUENCES_COLLECTION;
}

/**
 * A pure function of a register's live sibling values, in canonical (dot) order. It must
 * give the same result on every replica: no clocks, randomness or replica-local state.
 */
export type MergeFunction = (values: JsonValue[], where: { collection: string; id: string; path: string }) => JsonValue;

/** Local defaults for a collection (openReplica's `collections` option). */
export interface CollectionOptions {
  kind?: Kind;
  /** How concurrent writes are resolved: 'keep' (default), 'lww' or 'merge'. */
  policy?: Policy;
  /** With policy 'merge': a function, or the name of one registered with the replica. */
  merge?: MergeFunction | string;
  fields?: CollectionConfig['fields'];
  /** Fields no two live documents may share a value of (see docs/constraints.md). */
  unique?: string[];
  /** Fields holding the id of a document of another collection: `{ owner: 'users' }`. */
  references?: Record<string, string>;
}

export class CollectionConfigs {
  private readonly replicated = new Map<string, CollectionConfig>();
  private readonly local = new Map<string, CollectionConfig>();
  private readonly merges = new Map<string, MergeFunction>();
  /** Merge functions that failed, so each is logged once rather than on every read. */
  private readonly failed = new Set<string>();

  constructor(
    defaults: Record<string, CollectionOptions>,
    merges: Record<string, MergeFunction>,
    private readonly logger?: Logger,
  ) {
    for (const [name, fn] of Object.entries(merges)) this.register(name, fn);
    for (const [name, o] of Object.entries(defaults)) {
      let merge = o.merge;
      if (typeof merge === 'function') {
        this.register(name, merge);
        merge = name;
      }
      if (o.policy === Policy.merge && merge === undefined) {
        throw new DbError(ErrorCode.invalidInput, `collection ${name} has policy 'merge' but no merge function`);
      }
      const input: Record<string, unknown> = { kind: o.kind ?? Kind.record, policy: o.policy ?? Policy.keep };
      if (merge !== undefined) input.merge = merge;
      if (o.fields !== undefined) input.fields = o.fields;
      if (o.unique !== undefined) input.unique = o.unique;
      if (o.references !== undefined) input.references = o.references;
      try {
        this.local.set(name, checkCollectionConfig(input));
      } catch (e) {
        throw new DbError(ErrorCode.invalidInput, `collection ${name}: ${(e as Error).message}`);
      }
    }
  }

  register(name: string, fn: MergeFunction): void {
    if (typeof fn !== 'function') throw new DbError(ErrorCode.invalidInput, `merge function ${name} is not a function`);
    this.merges.set(name, fn);
  }

  get(collection: string): CollectionConfig {
    if (isSystemCollection(collection)) return CONFIG_OF_CONFIG;
    return this.replicated.get(collection) ?? this.local.get(collection) ?? DEFAULT_CONFIG;
  }

  /** Whether the settings come from the replicated `_config` document. */
  isReplicated(collection: string): boolean {
    return this.replicated.has(collection);
  }

  policyAt(collection: string): Policy | PolicyAt {
    return policyAt(this.get(collection));
  }

  /**
   * The merge function for a register at `path`, or undefined (then conflicts are kept).
   * A function that throws or returns something other than JSON gives undefined, so the
   * siblings show as conflicts rather than failing the read; the first failure is logged.
   */
  mergeAt(collection: string, id: string, path: string): ((values: JsonValue[]) => JsonValue | undefined) | undefined {
    const name = mergeNameAt(this.get(collection), path);
    const fn = name === undefined ? undefined : this.merges.get(name);
    if (name === undefined || fn === undefined) return undefined;
    return (values) => {
      try {
        const result = fn(values, { collection, id, path });
        encodeJsonValue(result, DEFAULT_LIMITS);
        return result;
      } catch (e) {
        if (!this.failed.has(name)) {
          this.failed.add(name);
          this.logger?.log('error', 'a merge function failed: the conflict is kept instead', {
            merge: name,
            collection,
            id,
            path,
            error: (e as Error).message,
          });
        }
        return undefined;
      }
    };
  }

  /** Whether conflicts at `path` are resolved without showing (lww, or a registered merge). */
  resolvesAt(collection: string, path: string): boolean {
    const config = this.get(collection);
    const policy = config.fields?.[path]?.policy ?? config.policy;
    if (policy === Policy.lww) return true;
    const name = mergeNameAt(config, path);
    return policy === Policy.merge && name !== undefined && this.merges.has(name);
  }

  /** The collections whose settings (replicated or local) name merge function `name`. */
  collectionsNaming(name: string): string[] {
    const out = new Set<string>();
    for (const [collection, config] of [...this.replicated, ...this.local]) {
      if (config.merge === name || Object.values(config.fields ?? {}).some((f) => f.merge === name)) {
        out.add(collection);
      }
    }
    return [...out].sort();
  }

  /** The collections whose settings in use declare unique fields or references, ascending. */
  constrained(): string[] {
    const out: string[] = [];
    for (const name of new Set([...this.replicated.keys(), ...this.local.keys()])) {
      const c = this.get(name);
      if (c.unique !== undefined || c.references !== undefined) out.push(name);
    }
    return out.sort();
  }

  /** Names of merge functions that settings use but this replica has not registered. */
  missingMerges(): string[] {
    const missing = new Set<string>();
    for (const config of [...this.replicated.values(), ...this.local.values()]) {
      const names = [config.merge, ...Object.values(config.fields ?? {}).map((f) => f.merge)];
      for (const n of names) if (n !== undefined && !this.merges.has(n)) missing.add(n);
    }
    return [...missing].sort();
  }

  /**
   * Takes the replicated settings of `collection` from its `_config` document's state.
   * Returns true when the policies changed (registers may then need reducing). Settings that
   * do not validate (written by a newer version) are ignored, keeping the previous ones.
   */
  update(collection: string, state: RecordState): boolean {
    const before = this.get(collection);
    const win = winner(state);
    if (win === undefined || win.value === null) {
      this.replicated.delete(collection);
    } else {
      try {
        this.replicated.set(collection, checkCollectionConfig(JSON.parse(fromUtf8(win.value))));
      } catch {
        return false;
      }
      const missing = this.missingMerges();
      if (missing.length > 0) {
        this.logger?.log(
          'warn',
          'collection settings name merge functions this replica lacks: their conflicts are kept',
          {
            collection,
            missing,
          },
        );
      }
    }
    return JSON.stringify(policyShape(before)) !== JSON.stringify(policyShape(this.get(collection)));
  }
}

/** What decides which documents show conflicts: policies and the merge functions named. */
function policyShape(c: CollectionConfig): unknown {
  return [c.policy, c.merge, Object.entries(c.fields ?? {}).map(([p, f]) => [p, f.policy, f.merge])];
}

/** System documents (`_config`, `_sequences`) are records resolved by last-writer-wins. */
const CONFIG_OF_CONFIG: CollectionConfig = { kind: Kind.record, policy: Policy.lww };
