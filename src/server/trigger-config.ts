/**
 * The config file's `triggers`: server-configured change triggers, each delivered by a JS
 * module or a webhook, checked strictly at start so a bad entry stops the leader with a
 * message naming it. Header values may hold secrets: no message here ever quotes one.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { checkCollection } from '../core/names.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import type { TriggerWhere } from '../replication/triggers.js';

export interface WebhookTarget {
  /** An http(s) URL the events are POSTed to. */
  url: string;
  /** Extra request headers (an `authorization` for the receiver, say); never logged. */
  headers: Readonly<Record<string, string>>;
  /** How long one delivery may take before it counts as failed (ms). */
  timeoutMs: number;
}

interface TriggerConfigBase {
  name: string;
  where: TriggerWhere;
  /** Only changes of this collection; absent: every collection. */
  collection?: string;
  retry?: { minMs?: number; maxMs?: number };
}

/** One configured trigger: exactly one of `module` (an absolute path once resolved) or `webhook`. */
export type TriggerConfig =
  | (TriggerConfigBase & { module: string; webhook?: undefined })
  | (TriggerConfigBase & { webhook: WebhookTarget; module?: undefined });

export const WEBHOOK_TIMEOUT_DEFAULT_MS = 10_000;
const WEBHOOK_TIMEOUT_MAX_MS = 600_000;
const RETRY_MS_MAX = 24 * 3600 * 1000;
/** The core's rule for trigger names (replication/triggers.ts): the name keys the durable queue. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** RFC 9110 token characters: what a header name may hold. */
const HEADER_NAME_PATTERN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// A header value is visible ASCII, spaces and tabs: no CR/LF (header injection), no other controls.
// eslint-disable-next-line no-control-regex
const HEADER_VALUE_BAD = /[\u0000-\u0008\u000a-\u001f\u007f]/;
/** Headers every delivery sets itself: configuring them would contradict the contract. */
const RESERVED_HEADERS = ['content-type', 'content-length', 'idempotency-key', 'x-polyarch-trigger', 'host'];
const WHERES: readonly TriggerWhere[] = ['origin', 'every-replica'];
const ENTRY_KEYS = ['name', 'where', 'collection', 'module', 'webhook', 'retry'];
const WEBHOOK_KEYS = ['url', 'headers', 'timeoutMs'];
const RETRY_KEYS = ['minMs', 'maxMs'];

function bad(message: string): DbError {
  return new DbError(ErrorCode.invalidInput, message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function checkKeys(obj: Record<string, unknown>, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw bad(`${where}: unknown key "${k}" (allowed: ${allowed.join(', ')})`);
  }
}

/**
 * Resolves the relative `module` paths of a config file's triggers against the file's folder,
 * as people expect of a path written in a file. Leaves anything malformed for parseTriggers.
 */
export function resolveTriggerModules(triggers: unknown, configFile: string): unknown {
  if (!Array.isArray(triggers)) return triggers;
  const dir = path.dirname(path.resolve(configFile));
  return triggers.map((t: unknown) =>
    isObject(t) && typeof t.module === 'string' && t.module.length > 0
      ? { ...t, module: path.resolve(dir, t.module) }
      : t,
  );
}

function parseWebhook(raw: unknown, where: string): WebhookTarget {
  if (!isObject(raw))
    throw bad(`${where} must be an object: { "url": "https://...", "headers": {...}, "timeoutMs": n }`);
  checkKeys(raw, WEBHOOK_KEYS, where);
  let url: URL | undefined;
  try {
    url = typeof raw.url === 'string' ? new URL(raw.url) : undefined;
  } catch {
    url = undefined;
  }
  // The URL is not quoted: it may carry credentials.
  if (url === undefined || !['http:', 'https:'].includes(url.protocol)) {
    throw bad(`${where}.url must be an http:// or https:// URL`);
  }
  const headers: Record<string, string> = {};
  if (raw.headers !== undefined) {
    if (!isObject(raw.headers)) throw bad(`${where}.headers must be an object of header name to string value`);
    for (const [name, value] of Object.entries(raw.headers)) {
      if (!HEADER_NAME_PATTERN.test(name)) throw bad(`${where}.headers: ${JSON.stringify(name)} is not a header name`);
      const lower = name.toLowerCase();
      if (RESERVED_HEADERS.includes(lower)) {
        throw bad(`${where}.headers: "${lower}" is set by every delivery and cannot be configured`);
      }
      if (Object.prototype.hasOwnProperty.call(headers, lower))
        throw bad(`${where}.headers: "${lower}" is given twice`);
      if (typeof value !== 'string' || HEADER_VALUE_BAD.test(value)) {
        throw bad(`${where}.headers.${lower} must be a string without control characters`);
      }
      headers[lower] = value;
    }
  }
  const timeoutMs = raw.timeoutMs ?? WEBHOOK_TIMEOUT_DEFAULT_MS;
  if (typeof timeoutMs !== 'number' || !Number.isInteger(timeoutMs) || timeoutMs < 1) {
    throw bad(`${where}.timeoutMs must be a positive integer (ms)`);
  }
  if (timeoutMs > WEBHOOK_TIMEOUT_MAX_MS) throw bad(`${where}.timeoutMs must be at most ${WEBHOOK_TIMEOUT_MAX_MS}`);
  return { url: url.href, headers, timeoutMs };
}

function parseRetry(raw: unknown, where: string): { minMs?: number; maxMs?: number } {
  if (!isObject(raw)) throw bad(`${where} must be an object: { "minMs": n, "maxMs": n }`);
  checkKeys(raw, RETRY_KEYS, where);
  const out: { minMs?: number; maxMs?: number } = {};
  for (const k of RETRY_KEYS as ('minMs' | 'maxMs')[]) {
    const v = raw[k];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > RETRY_MS_MAX) {
      throw bad(`${where}.${k} must be an integer from 1 to ${RETRY_MS_MAX} (ms)`);
    }
    out[k] = v;
  }
  if (out.minMs !== undefined && out.maxMs !== undefined && out.minMs > out.maxMs) {
    throw bad(`${where}.minMs must not exceed maxMs`);
  }
  return out;
}

function parseModule(raw: unknown, where: string): string {
  if (typeof raw !== 'string' || raw.length === 0) {
    throw bad(`${where}.module must be the path of a JS module (relative to the config file)`);
  }
  // Relative paths from a config file were resolved against it (resolveTriggerModules); from
  // anywhere else they are relative to the working directory, like --merge-functions.
  const file = path.resolve(raw);
  if (!existsSync(file) || !statSync(file).isFile()) throw bad(`${where}.module: no such file ${file}`);
  return file;
}

function parseEntry(raw: unknown, where: string): TriggerConfig {
  if (!isObject(raw)) {
    throw bad(`${where} must be an object: { "name": "...", "where": "origin", "webhook": { "url": "..." } }`);
  }
  checkKeys(raw, ENTRY_KEYS, where);
  const { name } = raw;
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw bad(
      `${where}.name must be 1-64 letters, digits, _ . -, starting with a letter or digit (it names the trigger's durable queue)`,
    );
  }
  const at = `trigger "${name}"`;
  if (!WHERES.includes(raw.where as TriggerWhere)) {
    const given = raw.where === undefined ? 'absent' : `not ${JSON.stringify(raw.where)}`;
    throw bad(`${at}: where must be "origin" or "every-replica" (${given})`);
  }
  const base: TriggerConfigBase = { name, where: raw.where as TriggerWhere };
  if (raw.collection !== undefined) {
    try {
      base.collection = checkCollection(raw.collection);
    } catch (e) {
      throw bad(`${at}: collection: ${(e as Error).message}`);
    }
  }
  if (raw.retry !== undefined) base.retry = parseRetry(raw.retry, `${at}: retry`);
  if ((raw.module === undefined) === (raw.webhook === undefined)) {
    throw bad(`${at}: give exactly one of "module" (a JS module) and "webhook" (a URL to POST to)`);
  }
  if (raw.module !== undefined) return { ...base, module: parseModule(raw.module, at) };
  return { ...base, webhook: parseWebhook(raw.webhook, `${at}: webhook`) };
}

/** The `triggers` setting: an array of entries with unique names. Throws DbError('invalid_input') naming the bad one. */
export function parseTriggers(raw: unknown): TriggerConfig[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw bad('triggers must be an array of { name, where, module | webhook } objects');
  const out: TriggerConfig[] = [];
  raw.forEach((entry: unknown, i) => {
    const t = parseEntry(entry, `triggers[${i}]`);
    if (out.some((o) => o.name === t.name)) throw bad(`triggers: the name "${t.name}" is used twice`);
    out.push(t);
  });
  return out;
}
