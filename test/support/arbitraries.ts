/** fast-check arbitraries shared by the property tests. */
import fc from 'fast-check';

/**
 * Any Unicode scalar value (no lone surrogates), weighted toward the short UTF-8 lengths.
 * fast-check's own 'binary' unit does the same but takes over a second to set up.
 */
export const codePoint = fc
  .oneof(
    fc.integer({ min: 0, max: 0x7f }),
    fc.integer({ min: 0x80, max: 0x7ff }),
    fc.integer({ min: 0x800, max: 0xd7ff }),
    fc.integer({ min: 0xe000, max: 0xffff }),
    fc.integer({ min: 0x10000, max: 0x10ffff }),
  )
  .map((cp) => String.fromCodePoint(cp));
