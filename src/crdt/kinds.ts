/**
 * Per-collection settings: the kind of its documents and how concurrent writes to a
 * register are resolved. Settings are themselves replicated (see replication/collection-
 * config.ts), so every leader applies the same ones.
 */
import { Policy } from '../core/index.js';
import type { PolicyAt } from '../core/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { checkPointer } from './json-pointer.js';

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
  checkKeys(o, ['kind', 'policy', 'merge', 'fields'], '');
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
  return config;
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
