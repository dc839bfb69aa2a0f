/**
 * Bundles: the bytes of `changesSince(vector)`, for sync through any channel. A bundle holds
 * the vector it was made for (its basis: what the sender skipped as already held) and a batch
 * message. A replica that applies it joins the sender's context only if it holds the basis,
 * so a bundle made for one replica can safely be applied by another.
 *
 *   bundle = "PAB" version(1) basis:causal-context batch:message
 */
import { CausalContext, Decoder, Encoder } from '../core/index.js';
import { decodeMessage, encodeMessage } from '../protocol/index.js';
import type { Message } from '../protocol/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';

const MAGIC = [0x50, 0x41, 0x42, 1] as const;

export interface Bundle {
  basis: CausalContext;
  batch: Extract<Message, { type: 'batch' }>;
}

export function encodeBundle(bundle: Bundle): Uint8Array {
  const enc = new Encoder(64);
  for (const b of MAGIC) enc.byte(b);
  bundle.basis.encode(enc);
  enc.raw(encodeMessage(bundle.batch));
  return enc.finish();
}

export function decodeBundle(bytes: Uint8Array): Bundle {
  const dec = new Decoder(bytes);
  try {
    for (const b of MAGIC) if (dec.byte() !== b) throw new DbError(ErrorCode.protocol, 'not a polyarch changes bundle');
    const basis = CausalContext.decode(dec);
    const message = decodeMessage(bytes.subarray(dec.offset));
    if (message.type !== 'batch')
      throw new DbError(ErrorCode.protocol, `a bundle holds changes, not a ${message.type}`);
    return { basis, batch: message };
  } catch (e) {
    if (e instanceof DbError && e.code === ErrorCode.protocol) throw e;
    throw new DbError(ErrorCode.protocol, 'malformed changes bundle', { cause: e });
  }
}
