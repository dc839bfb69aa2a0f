/**
 * How the formats (snapshot.ts, delta.ts) read and write the content of a sequence: a text's as
 * WTF-8, a list's as JSON items (src/crdt/list). The formats are otherwise the same for both;
 * the tags keep one kind's bytes from ever loading as the other's.
 */
import { readBytes, writeText } from './bytes.js';
import { TextState, type SeqState, type Sliceable } from './text-state.js';
import { decodeWtf8, encodeWtf8 } from './wtf8.js';

/** First bytes of a text's snapshot ('S') and delta ('D'). */
export const SNAPSHOT_TAG = 0x53;
export const DELTA_TAG = 0x44;

export interface ContentCodec<C extends Sliceable<C>, S extends SeqState<C> = SeqState<C>> {
  /** What the sequence holds, for error messages ('text', 'list'). */
  readonly kind: string;
  /** First byte of a snapshot and of a delta. */
  readonly snapshotTag: number;
  readonly deltaTag: number;
  /** A guess at the bytes `content` takes (the writer's first buffer; it grows as needed). */
  size(content: C): number;
  /** Writes `content` with bytes.ts's writer. */
  write(content: C): void;
  /**
   * Reads what write() wrote of `count` elements with bytes.ts's reader (the caller checks the
   * length of what comes back). Throws DbError('corrupt').
   */
  read(count: number): C;
  /** An empty state of `replica`. */
  newState(replica: string): S;
}

/** A length-prefixed WTF-8 text: short ASCII decoded in place, the rest through decodeWtf8. */
function readText(): string {
  const bytes = readBytes();
  const n = bytes.length;
  if (n <= 32) {
    let s = '';
    for (let i = 0; i < n; i++) {
      const c = bytes[i] as number;
      if (c >= 0x80) return decodeWtf8(bytes);
      s += String.fromCharCode(c);
    }
    return s;
  }
  return decodeWtf8(bytes);
}

export const textContent: ContentCodec<string, TextState> = {
  kind: 'text',
  snapshotTag: SNAPSHOT_TAG,
  deltaTag: DELTA_TAG,
  size: (text) => text.length,
  write: (text) => writeText(text, encodeWtf8),
  read: () => readText(),
  newState: (replica) => new TextState(replica),
};
