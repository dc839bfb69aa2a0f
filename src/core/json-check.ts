/**
 * A validating scanner for JSON text in UTF-8 bytes (RFC 8259), without building values:
 * replicas check every value a peer sends before storing it, and parsing each one into
 * objects only to throw them away was most of the cost of applying a batch.
 * Accepts exactly what JSON.parse accepts on the decoded text, with a nesting bound.
 */

const enum C {
  tab = 0x09,
  lf = 0x0a,
  cr = 0x0d,
  space = 0x20,
  quote = 0x22,
  plus = 0x2b,
  comma = 0x2c,
  minus = 0x2d,
  dot = 0x2e,
  zero = 0x30,
  nine = 0x39,
  colon = 0x3a,
  upperE = 0x45,
  lbracket = 0x5b,
  backslash = 0x5c,
  rbracket = 0x5d,
  lowerE = 0x65,
  lbrace = 0x7b,
  rbrace = 0x7d,
}

class Scan {
  i = 0;
  constructor(
    readonly b: Uint8Array,
    readonly maxDepth: number,
  ) {}

  ws(): void {
    const b = this.b;
    let i = this.i;
    for (;;) {
      const c = b[i];
      if (c === C.space || c === C.lf || c === C.cr || c === C.tab) i++;
      else break;
    }
    this.i = i;
  }

  literal(word: string): boolean {
    for (let k = 0; k < word.length; k++) if (this.b[this.i + k] !== word.charCodeAt(k)) return false;
    this.i += word.length;
    return true;
  }

  digits(): number {
    const start = this.i;
    while (this.i < this.b.length) {
      const c = this.b[this.i] as number;
      if (c < C.zero || c > C.nine) break;
      this.i++;
    }
    return this.i - start;
  }

  number(): boolean {
    if (this.b[this.i] === C.minus) this.i++;
    const first = this.b[this.i];
    if (first === C.zero) this.i++;
    else if (first === undefined || first < 0x31 || first > C.nine || this.digits() === 0) return false;
    if (this.b[this.i] === C.dot) {
      this.i++;
      if (this.digits() === 0) return false;
    }
    const e = this.b[this.i];
    if (e === C.lowerE || e === C.upperE) {
      this.i++;
      const s = this.b[this.i];
      if (s === C.plus || s === C.minus) this.i++;
      if (this.digits() === 0) return false;
    }
    return true;
  }

  hex(): boolean {
    const c = this.b[this.i++];
    return c !== undefined && ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66));
  }

  /** A string body after the opening quote, with escapes and well-formed UTF-8. */
  string(): boolean {
    const b = this.b;
    for (;;) {
      const c = b[this.i++];
      if (c === undefined) return false;
      if (c === C.quote) return true;
      if (c < 0x20) return false;
      if (c === C.backslash) {
        const e = b[this.i++];
        if (e === 0x75) {
          if (!(this.hex() && this.hex() && this.hex() && this.hex())) return false;
        } else if (
          e !== C.quote &&
          e !== C.backslash &&
          e !== 0x2f &&
          e !== 0x62 &&
          e !== 0x66 &&
          e !== 0x6e &&
          e !== 0x72 &&
          e !== 0x74
        ) {
          return false;
        }
      } else if (c >= 0x80 && !this.utf8Tail(c)) return false;
    }
  }

  /** The continuation bytes of a multi-byte UTF-8 sequence led by `c` (RFC 3629 table). */
  utf8Tail(c: number): boolean {
    const b = this.b;
    const cont = (x: number | undefined, lo = 0x80, hi = 0xbf): boolean => x !== undefined && x >= lo && x <= hi;
    if (c >= 0xc2 && c <= 0xdf) return cont(b[this.i++]);
    if (c === 0xe0) return cont(b[this.i++], 0xa0) && cont(b[this.i++]);
    if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) return cont(b[this.i++]) && cont(b[this.i++]);
    if (c === 0xed) return cont(b[this.i++], 0x80, 0x9f) && cont(b[this.i++]);
    if (c === 0xf0) return cont(b[this.i++], 0x90) && cont(b[this.i++]) && cont(b[this.i++]);
    if (c >= 0xf1 && c <= 0xf3) return cont(b[this.i++]) && cont(b[this.i++]) && cont(b[this.i++]);
    if (c === 0xf4) return cont(b[this.i++], 0x80, 0x8f) && cont(b[this.i++]) && cont(b[this.i++]);
    return false;
  }

  value(depth: number): boolean {
    this.ws();
    const c = this.b[this.i];
    switch (c) {
      case C.lbrace:
      case C.lbracket: {
        if (depth >= this.maxDepth) return false;
        const close = c === C.lbrace ? C.rbrace : C.rbracket;
        this.i++;
        this.ws();
        if (this.b[this.i] === close) {
          this.i++;
          return true;
        }
        for (;;) {
          if (c === C.lbrace) {
            this.ws();
            if (this.b[this.i++] !== C.quote || !this.string()) return false;
            this.ws();
            if (this.b[this.i++] !== C.colon) return false;
          }
          if (!this.value(depth + 1)) return false;
          this.ws();
          const sep = this.b[this.i++];
          if (sep === close) return true;
          if (sep !== C.comma) return false;
        }
      }
      case C.quote:
        this.i++;
        return this.string();
      case 0x74:
        return this.literal('true');
      case 0x66:
        return this.literal('false');
      case 0x6e:
        return this.literal('null');
      default:
        return this.number();
    }
  }
}

/** True when `bytes` is one JSON value (with optional surrounding whitespace) in valid UTF-8. */
export function isJsonText(bytes: Uint8Array, maxDepth = 512): boolean {
  const s = new Scan(bytes, maxDepth);
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) return false; // a BOM is not JSON text
  if (!s.value(0)) return false;
  s.ws();
  return s.i === bytes.length;
}
