/**
 * The shop example (examples/shop/shop.ts), which docs/keys-constraints-triggers.md walks
 * through, does what the page says: ids and invoice numbers never repeat, the partitioned
 * leader says its numbers ran out instead of reusing one, what each leader could see was
 * refused, what they accepted apart is flagged alike at both and clears when fixed, and each
 * order's mail is sent once, by the leader that took the order.
 */
import { describe, expect, it } from 'vitest';
import { runShop } from '../../examples/shop/shop.js';

describe('examples/shop', () => {
  it('runs as docs/keys-constraints-triggers.md describes', async () => {
    const lines: string[] = [];
    const run = await runShop((line) => lines.push(line));
    expect(new Set(run.invoiceNumbers).size).toBe(run.invoiceNumbers.length);
    expect(new Set(run.orderIds).size).toBe(run.orderIds.length);
    expect(run.orderIds.length).toBeGreaterThanOrEqual(6);
    expect(run.exhausted).toMatch(/sequence invoice: leader us has used every number granted to it/);
    expect(run.refused).toEqual(['constraint_violation', 'constraint_violation', 'constraint_violation']);
    expect(run.flagged.eu.sort()).toEqual([expect.stringMatching(/^reference orders\//), 'unique users/cyd']);
    expect(run.flagged.us.sort()).toEqual(run.flagged.eu);
    expect(run.flaggedAfterFix).toEqual({ eu: [], us: [] });
    // One mail per order, sent by the leader whose id starts the order's key.
    expect(run.mails.size).toBe(run.orderIds.length);
    for (const [key, sender] of run.mails) expect(key.startsWith(`${sender}:`)).toBe(true);
    expect(lines.some((l) => l.includes('invoice'))).toBe(true);
  });
});
