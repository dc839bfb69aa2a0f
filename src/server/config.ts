/**
 * Server settings from flags, a JSON config file and the environment, checked in one place
 * so a bad setting stops the server at start with a message that names it.
 * Precedence: flags over the file over the environment (POLYARCH_SECRET) over defaults.
 */
import { readFileSync } from 'node:fs';
import { checkReplicaId } from '../core/names.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { parseTokens } from './client-tokens.js';
import type { ClientToken } from './client-tokens.js';
import { parseTriggers, resolveTriggerModules } from './trigger-config.js';
import type { TriggerConfig } from './trigger-config.js';

export interface ServerConfig {
  id: string;
  port: number;
  host: string;
  /** A directory for the store, or ':memory:' (nothing survives a restart). */
  data: string;
  peers: string[];
  secret: string | undefined;
  cluster: string;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /** Replication heartbeat and dead-peer bound (ms). */
  heartbeatMs: number;
  deadAfterMs: number;
  /** A JS module whose exported functions are merge functions, by export name. */
  mergeFunctions: string | undefined;
  /**
   * Client tokens and their rights by collection (client-tokens.ts); empty: any client may
   * read and write. From the file's `tokens` or the `--token` flags (which replace the file's).
   */
  tokens?: readonly ClientToken[];
  /** Change triggers delivered by a module or a webhook (trigger-config.ts); from the file's `triggers`. */
  triggers?: readonly TriggerConfig[];
}

export const DEFAULTS = {
  host: '127.0.0.1',
  peers: [] as string[],
  cluster: 'default',
  logLevel: 'info' as const,
  heartbeatMs: 2000,
  deadAfterMs: 6000,
};

const KEYS = [
  'id',
  'port',
  'host',
  'data',
  'peers',
  'secret',
  'cluster',
  'logLevel',
  'heartbeatMs',
  'deadAfterMs',
  'mergeFunctions',
  'tokens',
  'triggers',
];

/**
 * A bad setting found only when the server starts using it (a trigger module that cannot load
 * or exports no handler): `polyarch serve` exits 2 for it, as for any bad setting.
 */
export class ConfigError extends DbError {
  constructor(message: string) {
    super(ErrorCode.invalidInput, message);
  }
}

function bad(message: string): DbError {
  return new DbError(ErrorCode.invalidInput, message);
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw bad(`cannot read config file ${path}: ${(e as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw bad(`config file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw bad(`config file ${path} must hold a JSON object`);
  }
  const file = parsed as Record<string, unknown>;
  // A trigger module named in the file is found relative to the file.
  if (file.triggers !== undefined) file.triggers = resolveTriggerModules(file.triggers, path);
  return file;
}

/** Merges and validates settings; throws DbError('invalid_input') naming the bad one. */
export function resolveConfig(
  flags: Record<string, unknown>,
  file: Record<string, unknown> = {},
  env: Record<string, string | undefined> = {},
): ServerConfig {
  for (const k of Object.keys(file)) if (!KEYS.includes(k)) throw bad(`unknown setting "${k}" in the config file`);
  const pick = (k: string): unknown => (flags[k] !== undefined ? flags[k] : file[k]);
  const id = pick('id');
  if (id === undefined) throw bad('--id is required: a stable, unique name for this leader, such as eu-1');
  try {
    checkReplicaId(id);
  } catch (e) {
    throw bad(`--id: ${(e as Error).message}`);
  }
  const port = Number(pick('port'));
  if (pick('port') === undefined || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw bad('--port must be an integer from 0 to 65535 (0 picks a free port)');
  }
  const data = pick('data');
  if (typeof data !== 'string' || data.length === 0) {
    throw bad("--data is required: a directory for this leader's store, or :memory:");
  }
  const host = pick('host') ?? DEFAULTS.host;
  if (typeof host !== 'string' || host.length === 0) throw bad('--host must be a host name or address');
  const rawPeers = pick('peers') ?? pick('peer') ?? DEFAULTS.peers;
  const peers = (Array.isArray(rawPeers) ? rawPeers : [rawPeers]) as unknown[];
  for (const p of peers) {
    let ok = typeof p === 'string';
    if (ok) {
      try {
        ok = ['http:', 'https:', 'ws:', 'wss:'].includes(new URL(p as string).protocol);
      } catch {
        ok = false;
      }
    }
    if (!ok) throw bad(`--peer ${JSON.stringify(p)} is not an http(s):// or ws(s):// URL`);
  }
  const secret = pick('secret') ?? env['POLYARCH_SECRET'];
  if (secret !== undefined && (typeof secret !== 'string' || secret.length < 8)) {
    throw bad('--secret must be a string of at least 8 characters');
  }
  const cluster = pick('cluster') ?? DEFAULTS.cluster;
  if (typeof cluster !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(cluster)) {
    throw bad('--cluster must be 1-64 letters, digits, _ . -');
  }
  const logLevel = pick('logLevel') ?? DEFAULTS.logLevel;
  if (!['debug', 'info', 'warn', 'error', 'silent'].includes(logLevel as string)) {
    throw bad('--log-level must be one of debug, info, warn, error, silent');
  }
  const ms = (k: 'heartbeatMs' | 'deadAfterMs'): number => {
    const v = Number(pick(k) ?? DEFAULTS[k]);
    if (!Number.isInteger(v) || v < 50) throw bad(`${k} must be an integer of at least 50 (ms)`);
    return v;
  };
  const heartbeatMs = ms('heartbeatMs');
  const deadAfterMs = ms('deadAfterMs');
  if (deadAfterMs <= heartbeatMs) throw bad('deadAfterMs must be larger than heartbeatMs');
  const mergeFunctions = pick('mergeFunctions');
  if (mergeFunctions !== undefined && (typeof mergeFunctions !== 'string' || mergeFunctions.length === 0)) {
    throw bad('--merge-functions must be the path of a JS module exporting merge functions');
  }
  const tokens = parseTokens(pick('tokens'));
  const triggers = parseTriggers(pick('triggers'));
  return {
    id: id as string,
    port,
    host,
    data,
    peers: peers as string[],
    secret: secret as string | undefined,
    cluster,
    logLevel: logLevel as ServerConfig['logLevel'],
    heartbeatMs,
    deadAfterMs,
    mergeFunctions: mergeFunctions as string | undefined,
    tokens,
    triggers,
  };
}
