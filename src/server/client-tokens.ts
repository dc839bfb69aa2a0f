/**
 * Client tokens: their configuration (the config file's `tokens`, `--token` flags), checked
 * strictly at start, and the registry that turns a presented token into its grant. Tokens are
 * compared in constant time and never leave this module: logs and messages name a token by
 * its `name` only, and request urls are logged with any `token` parameter masked.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { checkCollection } from '../core/names.js';
import { DbError, ErrorCode } from '../shared/errors.js';
import { ANY_COLLECTION, COLLECTION_RIGHTS } from '../replication/session-access.js';
import type { ClientCredential, CollectionRight, TokenGrant } from '../replication/session-access.js';

export interface ClientToken extends TokenGrant {
  readonly token: string;
}

/** At least 16 characters of a base64url/hex alphabet: safe in a header and a url, unguessable if random. */
const TOKEN_PATTERN = /^[A-Za-z0-9._~+/=-]{16,256}$/;
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
const TOKEN_KEYS = ['token', 'name', 'collections'];
/** The short rights of `--token`. */
const SHORT_RIGHTS: Readonly<Record<string, CollectionRight>> = {
  r: 'read',
  rw: 'read-write',
  read: 'read',
  'read-write': 'read-write',
};

function bad(message: string): DbError {
  return new DbError(ErrorCode.invalidInput, message);
}

function checkCollectionKey(name: string, where: string): void {
  if (name === ANY_COLLECTION) return;
  try {
    checkCollection(name);
  } catch (e) {
    throw bad(`${where}: ${JSON.stringify(name)} is not a collection name or "*": ${(e as Error).message}`);
  }
}

/** One entry of the config file's `tokens`; `where` names it in messages (`tokens[2]`). */
function parseTokenEntry(raw: unknown, where: string): ClientToken {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw bad(
      `${where} must be an object: { "token": "...", "name": "...", "collections": { "events": "read-write" } }`,
    );
  }
  const entry = raw as Record<string, unknown>;
  for (const k of Object.keys(entry)) {
    if (!TOKEN_KEYS.includes(k)) throw bad(`${where}: unknown key "${k}" (a token has token, name, collections)`);
  }
  const { name, token, collections } = entry;
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw bad(`${where}.name must be 1-64 letters, digits, _ . - (it names the token in logs)`);
  }
  const at = `${where} ("${name}")`;
  if (typeof token !== 'string' || !TOKEN_PATTERN.test(token)) {
    throw bad(`${at}.token must be 16-256 characters of A-Z a-z 0-9 . _ ~ + / = - (make it long and random)`);
  }
  if (collections === null || typeof collections !== 'object' || Array.isArray(collections)) {
    throw bad(`${at}.collections must be an object of collection name to "read" or "read-write"`);
  }
  const rights: Record<string, CollectionRight> = {};
  for (const [collection, right] of Object.entries(collections as Record<string, unknown>)) {
    checkCollectionKey(collection, `${at}.collections`);
    if (!COLLECTION_RIGHTS.includes(right as CollectionRight)) {
      throw bad(`${at}.collections.${collection} must be "read" or "read-write", not ${JSON.stringify(right)}`);
    }
    rights[collection] = right as CollectionRight;
  }
  return { name, token, collections: rights };
}

/** `--token NAME:TOKEN:events=rw,holidays=r` (rights: r, rw, read, read-write; `*` for every collection). */
export function parseTokenFlag(flag: string): ClientToken {
  // A token holds no ':', so a flag splits into exactly three parts.
  const parts = flag.split(':');
  if (parts.length !== 3) {
    throw bad('--token takes NAME:TOKEN:RIGHTS, as in calendar:TOKEN:events=rw,holidays=r (rights r or rw, * for all)');
  }
  const [name, token, list] = parts as [string, string, string];
  const collections: Record<string, string> = {};
  for (const item of list === '' ? [] : list.split(',')) {
    const [collection, short, ...rest] = item.split('=');
    const right = short === undefined ? undefined : SHORT_RIGHTS[short];
    if (collection === undefined || right === undefined || rest.length > 0) {
      throw bad(`--token ${name}: ${JSON.stringify(item)} must be COLLECTION=r or COLLECTION=rw`);
    }
    if (Object.prototype.hasOwnProperty.call(collections, collection)) {
      throw bad(`--token ${name}: collection ${collection} is named twice`);
    }
    collections[collection] = right;
  }
  return parseTokenEntry({ name, token, collections }, `--token ${name}`);
}

/** The `tokens` setting: an array of entries, or of `--token` strings; names and tokens unique. */
export function parseTokens(raw: unknown): ClientToken[] {
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) throw bad('tokens must be an array of { token, name, collections }');
  const tokens = raw.map((t, i) => (typeof t === 'string' ? parseTokenFlag(t) : parseTokenEntry(t, `tokens[${i}]`)));
  const names = new Set<string>();
  const secrets = new Set<string>();
  for (const t of tokens) {
    if (names.has(t.name)) throw bad(`two client tokens are named "${t.name}": names must be unique`);
    // Which ones is not said: the message would help someone who can read the config anyway.
    if (secrets.has(t.token))
      throw bad(`client token "${t.name}" has the same token as another: tokens must be unique`);
    names.add(t.name);
    secrets.add(t.token);
  }
  return tokens;
}

const digestOf = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

/** Resolves presented tokens to grants. Holds digests, compared in constant time. */
export class TokenRegistry {
  private readonly entries: readonly { digest: Buffer; grant: TokenGrant }[];

  constructor(tokens: readonly ClientToken[]) {
    this.entries = tokens.map((t) => ({
      digest: digestOf(t.token),
      grant: { name: t.name, collections: t.collections },
    }));
  }

  /** False: no tokens, the server serves any client. */
  get configured(): boolean {
    return this.entries.length > 0;
  }

  get names(): string[] {
    return this.entries.map((e) => e.grant.name);
  }

  /**
   * The grant of `token`, `none` when there is none, `invalid` when no entry matches. Every
   * entry is compared (digests of equal length, timingSafeEqual), so the time taken says
   * nothing about which entry, or how much of one, matched.
   */
  resolve(token: string | undefined | null): ClientCredential {
    if (token === undefined || token === null || token === '') return 'none';
    const digest = digestOf(token);
    let found: TokenGrant | undefined;
    for (const e of this.entries) if (timingSafeEqual(e.digest, digest)) found = e.grant;
    return found ?? 'invalid';
  }
}

/** `url` with the value of any `token` query parameter masked, for logs. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, '$1[redacted]');
}
