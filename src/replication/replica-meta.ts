/**
 * The replica's own bookkeeping, persisted as one row in the same transaction as every
 * change: its id, the last dot counter and feed seq it used, the HLC high-water mark, the
 * causal context of everything it has accounted for, and the running digest and counts.
 */
import { CausalContext, Decoder, Encoder } from '../core/index.js';
import type { Hlc } from '../core/index.js';
import { DbError, ErrorCode } from '../shared/errors.js';

const META_FORMAT = 1;
export const META_KEY = 'replica';
/** The digest is the XOR of 128-bit hashes of every document's key and state. */
export const DIGEST_BYTES = 16;

export class ReplicaMeta {
  constructor(
    readonly id: string,
    public counter: number,
    public seq: number,
    public hlc: Hlc,
    public context: CausalContext,
    /** XOR of hash128(document key and state) over all documents: order-free and incremental. */
    public digest: Uint8Array,
    public docs: number,
    public conflicts: number,
  ) {}

  static fresh(id: string): ReplicaMeta {
    return new ReplicaMeta(id, 0, 0, { ms: 0, c: 0 }, new CausalContext(), new Uint8Array(DIGEST_BYTES), 0, 0);
  }

  clone(): ReplicaMeta {
    return new ReplicaMeta(
      this.id,
      this.counter,
      this.seq,
      this.hlc,
      this.context.clone(),
      this.digest.slice(),
      this.docs,
      this.conflicts,
    );
  }

  encode(): Uint8Array {
    const enc = new Encoder(128).byte(META_FORMAT).string(this.id).uint(this.counter).uint(this.seq);
    enc.uint(this.hlc.ms).uint(this.hlc.c).raw(this.digest).uint(this.docs).uint(this.conflicts);
    this.context.encode(enc);
    return enc.finish();
  }

  static decode(bytes: Uint8Array): ReplicaMeta {
    const dec = new Decoder(bytes);
    const format = dec.byte();
    if (format !== META_FORMAT) {
      throw new DbError(ErrorCode.corrupt, `replica metadata has format ${format}; this version reads ${META_FORMAT}`);
    }
    const id = dec.string();
    const counter = dec.uint();
    const seq = dec.uint();
    const hlc = { ms: dec.uint(), c: dec.uint() };
    const digest = dec.raw(DIGEST_BYTES).slice();
    const docs = dec.uint();
    const conflicts = dec.uint();
    const context = CausalContext.decode(dec);
    dec.end();
    return new ReplicaMeta(id, counter, seq, hlc, context, digest, docs, conflicts);
  }
}
