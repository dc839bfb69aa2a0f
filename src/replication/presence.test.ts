/**
 * The presence hub without sessions: hubs are linked by ports whose deliveries wait in one
 * queue the test pumps, on a seeded clock and manual timers, so every order is chosen here.
 */
import { describe, expect, it } from 'vitest';
import { seededEnv } from '../env/seeded.js';
import { ErrorCode } from '../shared/errors.js';
import { dbErrorOf } from '../../test/support/errors.js';
import { PresenceHub } from './presence.js';
import type { PresenceMessage, PresencePeer, PresencePort } from './presence.js';

const TTL = 30_000;

interface Link {
  /** Both ends notice the session ended. */
  cut(): void;
  /** Only `hub`'s end notices (the other is half-open, or its process is gone). */
  cutAt(hub: PresenceHub): void;
}

/** Hubs and the links between them; deliveries queue until pump(). */
class Net {
  readonly env = seededEnv(7);
  private readonly queue: (() => void)[] = [];
  delivered = 0;

  hub(name: string): PresenceHub {
    return new PresenceHub({ env: this.env, self: `${name}~0` });
  }

  link(a: PresenceHub, b: PresenceHub): Link {
    const ends = new Map<PresenceHub, PresencePort>();
    const live = new Set<PresenceHub>([a, b]);
    const sender = (from: PresenceHub, to: PresenceHub) => (m: PresenceMessage) => {
      this.queue.push(() => {
        if (!live.has(from) || !live.has(to)) return;
        this.delivered++;
        ends.get(to)?.receive(m);
      });
    };
    ends.set(a, a.attach(sender(a, b)));
    ends.set(b, b.attach(sender(b, a)));
    const cutAt = (hub: PresenceHub): void => {
      if (!live.delete(hub)) return;
      ends.get(hub)?.detach();
    };
    return {
      cutAt,
      cut: () => {
        cutAt(a);
        cutAt(b);
      },
    };
  }

  /** Delivers until nothing is in flight; a flood that loops would never end, so it is bounded. */
  pump(): number {
    let n = 0;
    for (let next = this.queue.shift(); next !== undefined; next = this.queue.shift()) {
      next();
      if (++n > 10_000) throw new Error('presence updates are still circulating after 10,000 deliveries');
    }
    return n;
  }

  /** Moves the clock in steps, firing timers (refreshes, lapses) and delivering what they send. */
  advance(ms: number, stepMs = 1000): void {
    for (let left = ms; left > 0; left -= stepMs) {
      this.env.clock.advance(Math.min(stepMs, left));
      this.env.timers.runDue();
      this.pump();
    }
  }
}

const ids = (others: PresencePeer[]): string[] => others.map((o) => o.id);

/** Three leaders in a ring, client `a` on l1 and client `b` on l2. */
function ring(): { net: Net; l1: PresenceHub; l2: PresenceHub; l3: PresenceHub; a: PresenceHub; b: PresenceHub } & {
  links: { l1l2: Link; l2l3: Link; l3l1: Link; a: Link; b: Link };
} {
  const net = new Net();
  const [l1, l2, l3, a, b] = [net.hub('l1'), net.hub('l2'), net.hub('l3'), net.hub('a'), net.hub('b')];
  const links = {
    l1l2: net.link(l1, l2),
    l2l3: net.link(l2, l3),
    l3l1: net.link(l3, l1),
    a: net.link(a, l1),
    b: net.link(b, l2),
  };
  net.pump();
  return { net, l1, l2, l3, a, b, links };
}

describe('PresenceHub relay', () => {
  it('floods an update around a ring of three leaders once per link and stops', () => {
    const { net, a, b, l3 } = ring();
    a.room('doc').set({ cursor: 1 });
    const deliveries = net.pump();
    expect(b.room('doc').others()).toEqual([{ id: 'a~0', state: { cursor: 1 } }]);
    expect(l3.others('doc')).toEqual([{ id: 'a~0', state: { cursor: 1 } }]);
    // a -> l1 -> (l2, l3); l2 -> (l3, b); l3 -> l2: each hub forwards a new update once to
    // each other session, and a repeat is forwarded by nobody.
    expect(deliveries).toBe(6);
    a.room('doc').set({ cursor: 2 });
    expect(net.pump()).toBe(6);
    expect(b.room('doc').others()).toEqual([{ id: 'a~0', state: { cursor: 2 } }]);
  });

  it('drops a repeated update and an older one that arrives after a newer one', () => {
    const net = new Net();
    const hub = net.hub('l1');
    const other = net.hub('x');
    const forwarded: PresenceMessage[] = [];
    const from = hub.attach(() => {});
    hub.attach((m) => forwarded.push(m));
    const seen: PresencePeer[][] = [];
    hub.subscribe('doc', (o) => seen.push(o));
    const update = (counter: number, state: string | null): PresenceMessage => ({
      type: 'presence',
      publisher: 'p~1',
      room: 'doc',
      counter,
      hops: 0,
      ttlMs: TTL,
      state,
    });
    from.receive(update(2, '{"v":2}'));
    from.receive(update(2, '{"v":2}'));
    from.receive(update(1, '{"v":1}'));
    from.receive(update(1, null));
    expect(hub.others('doc')).toEqual([{ id: 'p~1', state: { v: 2 } }]);
    expect(seen).toEqual([[{ id: 'p~1', state: { v: 2 } }]]);
    expect(forwarded).toEqual([{ ...update(2, '{"v":2}'), hops: 1 }]);
    expect(other.others('doc')).toEqual([]);
  });

  it('gives a session that attaches the current states at once', () => {
    const { net, a, l2 } = ring();
    a.room('doc').set({ name: 'Ana' });
    net.pump();
    const late = net.hub('c');
    net.link(late, l2);
    net.pump();
    expect(late.others('doc')).toEqual([{ id: 'a~0', state: { name: 'Ana' } }]);
  });

  it('tells subscribers of arrivals, changes and departures, not of refreshes that change nothing', () => {
    const { net, a, b } = ring();
    const seen: string[][] = [];
    b.room('doc').subscribe((o) => seen.push(o.map((p) => `${p.id}=${JSON.stringify(p.state)}`)));
    a.room('doc').set({ c: 1 });
    net.pump();
    net.advance(3 * TTL);
    a.room('doc').set({ c: 2 });
    net.pump();
    a.room('doc').close();
    net.pump();
    expect(seen).toEqual([['a~0={"c":1}'], ['a~0={"c":2}'], []]);
  });

  it('keeps rooms apart and lists the others sorted by id, without the hub itself', () => {
    const { net, a, b } = ring();
    b.room('doc').set({ me: 'b' });
    a.room('doc').set({ me: 'a' });
    a.room('other').set({ me: 'a2' });
    net.pump();
    expect(b.room('doc').others()).toEqual([{ id: 'a~0', state: { me: 'a' } }]);
    expect(ids(b.room('other').others())).toEqual(['a~0']);
    expect(ids(a.room('doc').others())).toEqual(['b~0']);
    const c = net.hub('0c');
    net.link(c, b);
    c.room('doc').set({ me: 'c' });
    net.pump();
    expect(ids(b.room('doc').others())).toEqual(['0c~0', 'a~0']);
    expect(b.room('doc').get()).toEqual({ me: 'b' });
  });
});

describe('PresenceHub departures', () => {
  it('announces a client gone as soon as its session with its leader ends, everywhere', () => {
    const { net, a, b, l3, links } = ring();
    a.room('doc').set({ cursor: 5 });
    net.pump();
    links.a.cut();
    net.pump();
    expect(b.room('doc').others()).toEqual([]);
    expect(l3.others('doc')).toEqual([]);
  });

  it('lets a state lapse after its time to live when no refresh comes (a leader crashed)', () => {
    const { net, a, b, l2, l3, links } = ring();
    a.room('doc').set({ cursor: 5 });
    net.pump();
    const seen: string[][] = [];
    b.room('doc').subscribe((o) => seen.push(ids(o)));
    // l1 is gone: the other ends of its sessions close; nobody can announce that a left.
    links.l1l2.cutAt(l2);
    links.l3l1.cutAt(l3);
    links.a.cutAt(a);
    net.pump();
    net.advance(TTL - 1000);
    expect(ids(b.room('doc').others())).toEqual(['a~0']);
    net.advance(1000);
    expect(b.room('doc').others()).toEqual([]);
    expect(l3.others('doc')).toEqual([]);
    expect(seen).toEqual([[]]);
  });

  it('waits for the time to live before dropping a publisher learned through a peer leader', () => {
    const { net, a, b, links } = ring();
    a.room('doc').set({ cursor: 5 });
    net.pump();
    // The link l1-l2 breaks; a's updates still reach l2 through l3.
    links.l1l2.cut();
    net.pump();
    expect(ids(b.room('doc').others())).toEqual(['a~0']);
    net.advance(4 * TTL);
    expect(b.room('doc').others()).toEqual([{ id: 'a~0', state: { cursor: 5 } }]);
  });
});

describe('PresenceHub reconnection', () => {
  it('shows a client that moved to another leader at once, whichever of its return and its announced departure arrives first', () => {
    for (const order of ['leave-first', 'return-first'] as const) {
      const { net, a, b, l1, l2, links } = ring();
      a.room('doc').set({ cursor: 1 });
      net.pump();
      if (order === 'leave-first') {
        // l1 noticed first; its announcement is still in flight when a dials l2.
        links.a.cut();
        net.link(a, l2);
      } else {
        // a noticed first and came back through l2; l1 notices later.
        links.a.cutAt(a);
        net.link(a, l2);
        net.pump();
        links.a.cutAt(l1);
      }
      net.pump();
      expect(b.room('doc').others(), order).toEqual([{ id: 'a~0', state: { cursor: 1 } }]);
      net.advance(2 * TTL);
      expect(b.room('doc').others(), order).toEqual([{ id: 'a~0', state: { cursor: 1 } }]);
    }
  });

  it('refutes a departure announced for it while it is still in the room', () => {
    const net = new Net();
    const [l1, l2, a, b] = [net.hub('l1'), net.hub('l2'), net.hub('a'), net.hub('b')];
    net.link(l1, l2);
    net.link(b, l2);
    const toL1 = net.link(a, l1);
    net.link(a, l2);
    net.pump();
    a.room('doc').set({ cursor: 1 });
    net.pump();
    const seen: string[][] = [];
    b.room('doc').subscribe((o) => seen.push(ids(o)));
    // l1 drops its session with a, which a does not notice (a half-open socket): l1 says a
    // left, and a, hearing it through l2, says otherwise.
    toL1.cutAt(l1);
    net.pump();
    expect(seen).toEqual([[], ['a~0']]);
    expect(b.room('doc').others()).toEqual([{ id: 'a~0', state: { cursor: 1 } }]);
    expect(l1.others('doc')).toEqual([{ id: 'a~0', state: { cursor: 1 } }]);
  });

  it('does not announce a client that is still connected to the same leader by another session', () => {
    const net = new Net();
    const [l1, b] = [net.hub('l1'), net.hub('b')];
    const a = net.hub('a');
    net.link(b, l1);
    const first = net.link(a, l1);
    net.link(a, l1);
    a.room('doc').set({ cursor: 1 });
    net.pump();
    const seen: string[][] = [];
    b.room('doc').subscribe((o) => seen.push(ids(o)));
    first.cut();
    net.pump();
    expect(ids(b.room('doc').others())).toEqual(['a~0']);
    expect(seen.every((s) => s.length === 1)).toBe(true);
  });

  it('leaves every room when the hub closes, and refuses to publish afterwards', () => {
    const { net, a, b } = ring();
    b.room('doc').set({ cursor: 0 });
    a.room('doc').set({ cursor: 1 });
    a.room('other').set({ cursor: 2 });
    net.pump();
    expect(b.publishers()).toBe(2);
    a.close();
    net.pump();
    expect(b.room('doc').others()).toEqual([]);
    expect(b.room('other').others()).toEqual([]);
    expect(b.publishers()).toBe(1);
    expect(dbErrorOf(() => a.publish('doc', { cursor: 3 })).code).toBe(ErrorCode.closed);
  });
});

describe('PresenceRoom input', () => {
  it('refuses rooms that are not 1-256 characters, states over 4 KiB or not JSON, and bad ttls', () => {
    const hub = new Net().hub('a');
    expect(dbErrorOf(() => hub.room('')).code).toBe(ErrorCode.invalidName);
    expect(dbErrorOf(() => hub.room('r'.repeat(257))).code).toBe(ErrorCode.invalidName);
    expect(dbErrorOf(() => hub.room(42 as unknown as string)).code).toBe(ErrorCode.invalidName);
    expect(hub.room('r'.repeat(256)).name).toHaveLength(256);
    const room = hub.room('doc');
    const big = dbErrorOf(() => room.set({ text: 'x'.repeat(4096) }));
    expect(big.code).toBe(ErrorCode.tooLarge);
    expect(big.message).toMatch(/presence state is at most 4096 bytes/);
    expect(dbErrorOf(() => room.set({ n: Number.NaN })).code).toBe(ErrorCode.invalidInput);
    expect(dbErrorOf(() => room.set(new Date() as unknown as null)).code).toBe(ErrorCode.invalidInput);
    expect(dbErrorOf(() => hub.room('x', { ttlMs: 0 })).code).toBe(ErrorCode.invalidInput);
    expect(room.get()).toBeNull();
    room.set({ name: 'Ana' });
    expect(room.get()).toEqual({ name: 'Ana' });
    room.close();
    expect(room.get()).toBeNull();
    expect(dbErrorOf(() => room.set({ name: 'Ana' })).code).toBe(ErrorCode.closed);
    expect(hub.room('doc')).not.toBe(room);
  });
});
