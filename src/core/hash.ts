/** SHA-256 from @noble/hashes: audited, pure JS, identical on every platform. */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';

export function sha256(bytes: Uint8Array): Uint8Array {
  return nobleSha256(bytes);
}
