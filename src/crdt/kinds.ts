/**
 * Per-collection settings: the kind of its documents and how concurrent writes to a
 * register are resolved. Settings are themselves replicated (see replication/collection-
 * config.ts), so every leader applies the same ones.
 */
import { Policy } from '../core/index.js';
import type { PolicyAt } from '../core/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { checkCollection } from '../core/index.js';
import { checkPointer, escapeKey, segments, unescapeKey } from './json-pointer.js';
import { isPlainObject } from './canonical-json.js';
import type { JsonValue } from '../core/index.js';

export const Kind = { record: 'record', map: 'map', counter: 'counter', set: 'set' } as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

/** The type a map field holds when a whole-document write (PUT) gives it a value. */
export const FieldType = { register: 'register', counter: 'counter', set: 'set' } as const;
export type FieldType = (typeof FieldType)[keyof typeof FieldType];

export interface FieldConfig {
  type?: FieldType;
  policy?: Policy;
  /** The registered merge function's name, with policy 'merge'. */
  merge?: string;
}

export interface CollectionConfig {
  kind: Kind;
  /** For records, and the default for every register field of a map. */
  policy: Policy;
  /** The registered merge function's name, with policy 'merge'. */
  merge?: string;
  /** Per-field settings of a map, by JSON pointer. */
  fields?: Record<string, FieldConfig>;
  /**
   * Fields no two live documents may share a value of (records and maps): a top-level
   * field's name, or a JSON pointer (starting with '/'). Null or absent values are free.
   */
  unique?: string[];
  /** Fields holding the id of a document of another (or the same) collection: field -> collection. */
  references?: Record<string, string>;
}

export const DEFAULT_CONFIG: CollectionConfig = { kind: Kind.record, policy: Policy.keep };

const MERGE_NAME = /^[A-Za-z_$][A-Za-z0-9_$.-]{0,127}$/;

function bad(message: string): DbError {
  return new DbError(ErrorCode.invalidInput, message);
}

function checkPolicy(policy: unknown, merge: unknown, where: string): { policy: Policy; merge?: string } {
  if (policy !== Policy.keep && policy !== Policy.lww && policy !== Policy.merge) {
    throw bad(`${where}policy must be "keep", "lww" or "merge", not ${JSON.stringify(policy)}`);
  }
  if (policy === Policy.merge) {
    if (typeof merge !== 'string' || !MERGE_NAME.test(merge)) {
      throw bad(`${where}policy "merge" needs "merge": the name of a registered merge function`);
    }
    return { policy, merge };
  }
  if (merge !== undefined) throw bad(`${where}"merge" names a function only with policy "merge"`);
  return { policy };
}

function checkKeys(o: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k))
      throw bad(`${where}unknown setting ${JSON.stringify(k)} (allowed: ${allowed.join(', ')})`);
  }
}

/** Validates settings given by a user; throws invalid_input with the reason. */
export function checkCollectionConfig(input: unknown, maxDepth = 32): CollectionConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw bad('collection settings must be an object like {"kind": "map", "policy": "keep"}');
  }
  const o = input as Record<string, unknown>;
  checkKeys(o, ['kind', 'policy', 'merge', 'fields', 'unique', 'references'], '');
  const kind = o.kind ?? Kind.record;
  if (kind !== Kind.record && kind !== Kind.map && kind !== Kind.counter && kind !== Kind.set) {
    throw bad(`kind must be "record", "map", "counter" or "set", not ${JSON.stringify(kind)}`);
  }
  const config: CollectionConfig = { kind, ...checkPolicy(o.policy ?? Policy.keep, o.merge, '') };
  if (o.fields !== undefined) {
    if (kind !== Kind.map) throw bad('"fields" applies only to collections of kind "map"');
    if (typeof o.fields !== 'object' || o.fields === null || Array.isArray(o.fields)) {
      throw bad('"fields" must map JSON pointers to field settings');
    }
    const fields: Record<string, FieldConfig> = {};
    for (const [path, f] of Object.entries(o.fields as Record<string, unknown>)) {
      checkPointer(path, maxDepth);
      if (path === '') throw bad('"fields" keys are JSON pointers to fields, such as "/title"; not ""');
      if (typeof f !== 'object' || f === null || Array.isArray(f))
        throw bad(`field ${path}: settings must be an object`);
      const fo = f as Record<string, unknown>;
      checkKeys(fo, ['type', 'policy', 'merge'], `field ${path}: `);
      const field: FieldConfig = {};
      if (fo.type !== undefined) {
        if (fo.type !== FieldType.register && fo.type !== FieldType.counter && fo.type !== FieldType.set) {
          throw bad(`field ${path}: type must be "register", "counter" or "set"`);
        }
        field.type = fo.type;
      }
      if (fo.policy !== undefined || fo.merge !== undefined) {
        if (field.type !== undefined && field.type !== FieldType.register) {
          throw bad(`field ${path}: a policy applies only to register fields`);
        }
        Object.assign(field, checkPolicy(fo.policy ?? Policy.merge, fo.merge, `field ${path}: `));
      }
      fields[path] = field;
    }
    config.fields = fields;
  }
  checkConstraints(o, config, maxDepth);
  return config;
}

/** The longest plain field name a constraint may name (a pointer is held to 1024 by checkPointer). */
const FIELD_NAME_MAX = 256;

/**
 * The pointer a constraint's field names: a plain name is a top-level field ('e/mail' is
 * '/e~1mail'), a string starting with '/' a JSON pointer. Throws invalid_input when bad.
 */
export function constraintPointer(field: unknown, maxDepth = 32): string {
  if (typeof field !== 'string' || field === '') {
    throw bad(
      `a constrained field must be a field name or a JSON pointer such as "/address/city", not ${JSON.stringify(field)}`,
    );
  }
  if (field.startsWith('/')) return checkPointer(field, maxDepth);
  if (field.length > FIELD_NAME_MAX)
    throw bad(`field name ${JSON.stringify(field.slice(0, 40))}... is longer than ${FIELD_NAME_MAX} characters`);
  return `/${escapeKey(field)}`;
}

/** The value at `pointer` in `value`, or undefined when absent (or not inside objects). */
export function fieldAt(value: JsonValue, pointer: string): JsonValue | undefined {
  let v: JsonValue | undefined = value;
  for (const seg of segments(pointer)) {
    const key = unescapeKey(seg);
    // Own fields only: '__proto__' or 'constructor' must not find Object.prototype's.
    if (!isPlainObject(v) || !Object.prototype.hasOwnProperty.call(v, key)) return undefined;
    v = (v as Record<string, JsonValue>)[key];
  }
  return v;
}

function checkConstraints(o: Record<string, unknown>, config: CollectionConfig, maxDepth: number): void {
  if (o.unique === undefined && o.references === undefined) return;
  if (config.kind !== Kind.record && config.kind !== Kind.map) {
    throw bad(`"unique" and "references" apply only to collections of kind "record" or "map", not "${config.kind}"`);
  }
  if (o.unique !== undefined) {
    if (!Array.isArray(o.unique)) throw bad('"unique" must be an array of field names, such as ["email"]');
    const seen = new Map<string, string>();
    for (const f of o.unique as unknown[]) {
      const p = constraintPointer(f, maxDepth);
      const dup = seen.get(p);
      if (dup !== undefined)
        throw bad(`"unique" names one field twice: ${JSON.stringify(dup)} and ${JSON.stringify(f)}`);
      seen.set(p, f as string);
    }
    if (seen.size > 0) config.unique = [...(o.unique as string[])];
  }
  if (o.references !== undefined) {
    if (!isPlainObject(o.references)) {
      throw bad('"references" must map fields to the collection they point into, such as {"owner": "users"}');
    }
    const seen = new Map<string, string>();
    const references: [string, string][] = [];
    for (const [f, target] of Object.entries(o.references)) {
      const p = constraintPointer(f, maxDepth);
      const dup = seen.get(p);
      if (dup !== undefined)
        throw bad(`"references" names one field twice: ${JSON.stringify(dup)} and ${JSON.stringify(f)}`);
      seen.set(p, f);
      try {
        checkCollection(target);
      } catch (e) {
        throw bad(`"references" of field ${JSON.stringify(f)}: ${(e as Error).message}`);
      }
      references.push([f, target as string]);
    }
    // fromEntries defines own properties, so a field named '__proto__' stays a field.
    if (seen.size > 0) config.references = Object.fromEntries(references);
  }
}

/** The policy of the register at `path`: a field's own, else the collection's. */
export function policyAt(config: CollectionConfig): PolicyAt | Policy {
  const { fields } = config;
  if (fields === undefined) return config.policy;
  return (path: string) => fields[path]?.policy ?? config.policy;
}

/** The merge function's name for the register at `path`, when its policy is 'merge'. */
export function mergeNameAt(config: CollectionConfig, path: string): string | undefined {
  const f = config.fields?.[path];
  if (f?.policy !== undefined) return f.policy === Policy.merge ? f.merge : undefined;
  return config.policy === Policy.merge ? config.merge : undefined;
}
