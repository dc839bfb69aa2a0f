/**
 * What a client token lets a session (or an HTTP request) do, collection by collection: the
 * rights model shared by the server's HTTP layer and the replication session. Pure data and
 * pure checks; the server resolves tokens to grants, this module never sees a token.
 * A collection's settings (`_config/<collection>`) go with the collection they configure.
 */
import { CONFIG_COLLECTION } from './collection-config.js';

/** `read`: the collection is sent and may be read; `read-write`: it may also be written. */
export type CollectionRight = 'read' | 'read-write';

export const COLLECTION_RIGHTS: readonly CollectionRight[] = ['read', 'read-write'];

/** The collection name that stands for every collection in a grant. */
export const ANY_COLLECTION = '*';

/** The rights of one client token, by name (the token itself stays in the server). */
export interface TokenGrant {
  /** A label for logs and messages, never the token. */
  readonly name: string;
  /** Rights by collection name; `*` covers every collection not named. */
  readonly collections: Readonly<Record<string, CollectionRight>>;
}

/**
 * What the connection of a session presented besides the session's own authentication, as
 * the server resolved it: a token's grant, `none` (no token) or `invalid` (a token it does
 * not know). Only set when the server has client tokens.
 */
export type ClientCredential = TokenGrant | 'none' | 'invalid';

/** The collection whose rights govern a document: a settings record counts as its collection. */
export function governingCollection(collection: string, id: string): string {
  return collection === CONFIG_COLLECTION ? id : collection;
}

/** The right `grant` holds on `collection` (a named entry wins over `*`), or null. */
export function rightOn(grant: TokenGrant, collection: string): CollectionRight | null {
  const own = Object.prototype.hasOwnProperty.call(grant.collections, collection)
    ? grant.collections[collection]
    : undefined;
  return own ?? grant.collections[ANY_COLLECTION] ?? null;
}

export function mayRead(grant: TokenGrant, collection: string): boolean {
  return rightOn(grant, collection) !== null;
}

export function mayWrite(grant: TokenGrant, collection: string): boolean {
  return rightOn(grant, collection) === 'read-write';
}

/** True when the grant reads, or writes, every collection: nothing need be filtered. */
export function readsEverything(grant: TokenGrant): boolean {
  return grant.collections[ANY_COLLECTION] !== undefined;
}

export function writesEverything(grant: TokenGrant): boolean {
  return readsEverything(grant) && Object.values(grant.collections).every((r) => r === 'read-write');
}

/** Why `grant` may not write `collection`, for a refusal message; null when it may. */
export function writeRefusal(grant: TokenGrant, collection: string): string | null {
  const right = rightOn(grant, collection);
  if (right === 'read-write') return null;
  return right === 'read'
    ? `token "${grant.name}" may only read collection ${collection}: writing needs read-write`
    : `token "${grant.name}" has no right on collection ${collection}: writing needs read-write`;
}

/** Why `grant` may not read `collection`; null when it may. */
export function readRefusal(grant: TokenGrant, collection: string): string | null {
  return mayRead(grant, collection)
    ? null
    : `token "${grant.name}" has no right on collection ${collection}: reading needs read`;
}
