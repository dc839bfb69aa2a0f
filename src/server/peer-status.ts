/**
 * What the server reports about each replication peer in GET /status and /metrics. Types only:
 * the replication transport fills them in; the HTTP layer only shows them.
 */

export interface PeerStatus {
  /** The peer's replica id, once its handshake told us; null before that. */
  id: string | null;
  /** The URL we dial (outgoing), or null for a peer that dialled us. */
  url: string | null;
  direction: 'outgoing' | 'incoming';
  /** `live`: caught up and streaming; `backoff`: waiting to retry after a failure. */
  state: 'connecting' | 'syncing' | 'live' | 'backoff';
  /** How many of this leader's changes the peer has not acknowledged, and how long the oldest has waited. */
  lag: { changes: number; ms: number };
  lastError: string | null;
}
