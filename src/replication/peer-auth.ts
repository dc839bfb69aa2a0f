/**
 * Peer authentication with a shared cluster secret: each side sends a random challenge in
 * its hello and answers the other's with HMAC-SHA256(secret, context || challenge). The proof
 * binds the cluster and the prover's replica id, so it cannot be replayed for another replica
 * or reflected back. Nothing secret ever crosses the wire.
 */
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { Encoder } from '../core/index.js';

export interface PeerAuth {
  /** Our proof for the peer's challenge. */
  prove(challenge: Uint8Array, self: string): Uint8Array;
  /** Whether `proof` answers our `challenge` for the claimed `peer` id. */
  verify(challenge: Uint8Array, peer: string, proof: Uint8Array): boolean;
}

const LABEL = 'polyarch-peer-auth/1';

function message(cluster: string, prover: string, challenge: Uint8Array): Uint8Array {
  return new Encoder(64).string(LABEL).string(cluster).string(prover).bytes(challenge).finish();
}

/** Compares in time independent of where the bytes differ. */
function equalConstantTime(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

export function secretAuth(secret: string, cluster: string): PeerAuth {
  const key = new TextEncoder().encode(secret);
  return {
    prove: (challenge, self) => hmac(sha256, key, message(cluster, self, challenge)),
    verify: (challenge, peer, proof) =>
      challenge.length >= 16 && equalConstantTime(hmac(sha256, key, message(cluster, peer, challenge)), proof),
  };
}
