/**
 * The messages of a replication session (DESIGN.md section 4), as a tagged union on `type`.
 * Byte fields (`state`, `context`, `challenge`, `proof`) are opaque here: the layers that use
 * them validate them. Changing anything in this file changes the schema: see version.ts.
 */

/** One document's new state. `state` is the encoded document state, opaque here. */
export interface DocChange {
  readonly collection: string;
  readonly id: string;
  readonly state: Uint8Array;
}

/** The documents of one recorded change; the receiver applies them atomically. */
export interface Change {
  readonly docs: readonly DocChange[];
}

/** One document of a batch that the receiver refused: not applied, and never will be. */
export interface RefusedDoc {
  readonly collection: string;
  readonly id: string;
  /** An ErrorCode, `forbidden` for a client token without the right to write the collection. */
  readonly code: string;
  readonly message: string;
}

export type Message =
  /**
   * First message of each side. `context` is the sender's encoded CausalContext (opaque here);
   * `challenge` is a random nonce for the HMAC authentication of the peer (may be empty).
   */
  | {
      readonly type: 'hello';
      readonly protocol: number;
      readonly cluster: string;
      readonly replica: string;
      readonly context: Uint8Array;
      readonly challenge: Uint8Array;
    }
  /** Answer to the peer's challenge. */
  | { readonly type: 'auth'; readonly proof: Uint8Array }
  /** "Send me your feed after seq `since`." */
  | { readonly type: 'pull'; readonly since: number }
  /**
   * Feed entries `fromSeq..toSeq` of the sender. `context` is the sender's encoded
   * CausalContext when `toSeq` is the sender's head, else null.
   */
  | {
      readonly type: 'batch';
      readonly id: number;
      readonly fromSeq: number;
      readonly toSeq: number;
      readonly changes: readonly Change[];
      readonly context: Uint8Array | null;
    }
  /**
   * Documents of batch `id` the receiver did not apply and never will (a client token without
   * the right to write their collection). Sent just before that batch's ack, which covers them
   * all the same: the sender does not offer them again. `omitted` counts the refused documents
   * past WIRE_LIMITS.refusedDocsMax that the list leaves out.
   */
  | {
      readonly type: 'refused';
      readonly id: number;
      readonly docs: readonly RefusedDoc[];
      readonly omitted: number;
    }
  /** Batch `id` is applied and durable up to `toSeq`. */
  | { readonly type: 'ack'; readonly id: number; readonly toSeq: number }
  /** The sender closes the session for this reason (`code` is an ErrorCode or similar). */
  | { readonly type: 'error'; readonly code: string; readonly message: string }
  | { readonly type: 'ping'; readonly nonce: number }
  | { readonly type: 'pong'; readonly nonce: number }
  /**
   * Ephemeral presence (replication/presence.ts), never stored: `publisher`'s state in `room`
   * as JSON text, or null when it left the room. `counter` grows with each update of the
   * publisher, so a newer update wins and a repeat is dropped; `hops` counts the replicas that
   * relayed it (0: straight from the publisher); the state lapses `ttlMs` after it arrives
   * unless a newer update refreshes it.
   */
  | {
      readonly type: 'presence';
      readonly publisher: string;
      readonly room: string;
      readonly counter: number;
      readonly hops: number;
      readonly ttlMs: number;
      readonly state: string | null;
    };

export const MessageType = {
  hello: 'hello',
  auth: 'auth',
  pull: 'pull',
  batch: 'batch',
  ack: 'ack',
  error: 'error',
  ping: 'ping',
  pong: 'pong',
  presence: 'presence',
  refused: 'refused',
} as const satisfies { readonly [T in Message['type']]: T };
export type MessageType = Message['type'];

/** The message of one type: `MessageOf<'batch'>`. */
export type MessageOf<T extends MessageType> = Extract<Message, { readonly type: T }>;
