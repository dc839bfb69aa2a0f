/**
 * What breaks under multi-leader, and the tools that fix it, in one small shop run by two
 * leaders, `eu` and `us`, in this process (docs/keys-constraints-triggers.md walks through it):
 *
 * - orders get ids from `newId()`: unique without asking anyone, sortable by time;
 * - invoices get numbers from the sequence `invoice`, whose allocator (`eu`) grants each
 *   leader blocks of numbers: never one number twice, even while the leaders are apart;
 * - `users` declares `email` unique and `orders` references `users` by `customer`: each leader
 *   refuses what it can see is wrong, and what two leaders accepted apart is flagged the same
 *   way at both once they meet;
 * - an `origin` trigger sends each invoice mail once in the whole cluster, at the leader that
 *   took the order, and dedupes by the event's key.
 *
 *   npx tsx examples/shop/shop.ts
 *
 * An app imports from 'polyarch'; inside the repository the example imports the sources.
 */
import { isDbError, memoryConnectionPair, openReplica, timeOfId } from '../../src/index.js';
import type { Database, SessionDriver, TriggerEvent } from '../../src/index.js';

export interface ShopRun {
  /** Every invoice number either leader handed out. */
  invoiceNumbers: number[];
  /** The order ids made at both leaders. */
  orderIds: string[];
  /** What `us` said when its blocks ran out while cut off. */
  exhausted: string;
  /** What the local checks refused, by error code. */
  refused: string[];
  /** The constraint entries each leader listed after the heal: `kind collection/id`. */
  flagged: { eu: string[]; us: string[] };
  /** The same after the application fixed them. */
  flaggedAfterFix: { eu: string[]; us: string[] };
  /** Invoice mails sent, by idempotency key, with the leader that sent each. */
  mails: Map<string, string>;
}

type Log = (line: string) => void;

/** Two leaders linked by an in-process session (what `polyarch serve --peer` does over a socket). */
class Link {
  private sessions: SessionDriver[] = [];

  constructor(
    private readonly a: Database,
    private readonly b: Database,
  ) {}

  up(): void {
    const [x, y] = memoryConnectionPair();
    this.sessions = [this.a.connect(x), this.b.connect(y)];
  }

  down(): void {
    for (const s of this.sessions) s.close('closed', 'partitioned by the example');
    this.sessions = [];
  }

  /** Until both hold the same writes (same digest) and their background work is done. */
  async settle(): Promise<void> {
    for (let i = 0; i < 500; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      await this.a.settled();
      await this.b.settled();
      if (this.a.status().digest === this.b.status().digest) return;
    }
    throw new Error('the leaders did not converge');
  }
}

const flaggedBy = async (db: Database): Promise<string[]> =>
  (await db.conflicts()).results.filter((c) => c.kind !== 'siblings').map((c) => `${c.kind} ${c.collection}/${c.id}`);

export async function runShop(log: Log = console.log): Promise<ShopRun> {
  const settings = {
    users: { unique: ['email'] },
    orders: { references: { customer: 'users' } },
  };
  const eu = await openReplica({ id: 'eu', storage: 'memory', collections: settings });
  const us = await openReplica({ id: 'us', storage: 'memory', collections: settings });
  const link = new Link(eu, us);
  const run: ShopRun = {
    invoiceNumbers: [],
    orderIds: [],
    exhausted: '',
    refused: [],
    flagged: { eu: [], us: [] },
    flaggedAfterFix: { eu: [], us: [] },
    mails: new Map(),
  };
  try {
    // Every leader runs the same trigger; `origin` makes each one send only its own orders' mails.
    for (const db of [eu, us]) {
      const mailer = db.on(
        'change',
        (e: TriggerEvent) => {
          if (e.deleted || run.mails.has(e.key)) return; // handled already: a repeat after a crash
          run.mails.set(e.key, db.id);
          log(`  ${db.id} mails the invoice of orders/${e.id} (key ${e.key})`);
        },
        { where: 'origin', name: 'invoice-mail', collection: 'orders' },
      );
      await mailer.ready;
    }

    link.up();
    await eu.sequence('invoice').configure({ allocator: 'eu', blockSize: 3 });
    await link.settle();
    log('1. connected: both leaders take orders');
    const order = async (db: Database, customer: string): Promise<string> => {
      const id = db.newId();
      const invoice = await db.sequence('invoice').next({ waitMs: 200 });
      await db.collection('orders').put(id, { customer, invoice });
      run.orderIds.push(id);
      run.invoiceNumbers.push(invoice);
      log(`  ${db.id}: order ${id} (made ${new Date(timeOfId(id) ?? 0).toISOString()}), invoice ${invoice}`);
      return id;
    };
    await eu.collection('users').put('ana', { email: 'ana@example.com' });
    await us.collection('users').put('bo', { email: 'bo@example.com' });
    await us.collection('users').put('dee', { email: 'dee@example.com' });
    await link.settle();
    await order(eu, 'ana');
    await order(us, 'bo');
    await link.settle();

    log('2. what one leader can see, it refuses');
    for (const attempt of [
      () => us.collection('users').put('ann', { email: 'ana@example.com' }),
      () => eu.collection('orders').put(eu.newId(), { customer: 'nobody' }),
      () => us.collection('users').delete('bo'),
    ]) {
      try {
        await attempt();
      } catch (e) {
        if (!isDbError(e)) throw e;
        run.refused.push(e.code);
        log(`  refused: ${e.code}: ${e.message}`);
      }
    }

    log('3. the link between eu and us goes down; both keep working');
    link.down();
    await eu.collection('users').put('cy', { email: 'cy@example.com' });
    await us.collection('users').put('cyd', { email: 'cy@example.com' }); // us cannot see cy
    await eu.collection('users').delete('dee'); // dee has no orders that eu can see
    await order(us, 'dee'); // us still sees dee
    for (;;) {
      try {
        await order(us, 'bo');
      } catch (e) {
        if (!isDbError(e, 'sequence_exhausted')) throw e;
        run.exhausted = e.message;
        log(`  us: ${e.message}`);
        break;
      }
    }
    for (let i = 0; i < 3; i++) await order(eu, 'cy'); // the allocator's side goes on

    log('4. the link comes back: what they accepted apart is flagged alike at both');
    link.up();
    await link.settle();
    run.flagged = { eu: await flaggedBy(eu), us: await flaggedBy(us) };
    for (const c of (await eu.conflicts()).results) {
      if (c.kind !== 'siblings') log(`  ${c.kind} ${c.collection}/${c.id}: ${JSON.stringify(c.constraint)}`);
    }
    await order(us, 'bo'); // us has numbers again

    log('5. the application fixes them, at any leader');
    await us.collection('users').put('cyd', { email: 'cyd@example.com' });
    await us.collection('users').put('dee', { email: 'dee@example.com' }); // dee comes back
    await link.settle();
    run.flaggedAfterFix = { eu: await flaggedBy(eu), us: await flaggedBy(us) };
    log(`  flagged now: eu ${run.flaggedAfterFix.eu.length}, us ${run.flaggedAfterFix.us.length}`);
    log(`  invoices: ${[...run.invoiceNumbers].sort((x, y) => x - y).join(' ')} (unique; gaps allowed)`);
    return run;
  } finally {
    link.down();
    await eu.close();
    await us.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runShop().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
