/**
 * SIGKILL of a leader under load, restart on the same data dir (DESIGN.md G1, G5): writers put
 * documents to leader x continuously and record every acknowledged id and value; x is killed
 * with SIGKILL mid-load and restarted on the same --data; the writers keep going a while; then
 * the cluster converges and every acknowledged write is present, with its value, everywhere.
 * Replication resumes from durable checkpoints: after the restart x is sent only roughly what
 * its peers miss, not everything again (its metrics counters start at 0 with the process).
 *
 * Topology: y dials x, x dials z, z dials y (a triangle where both of x's links are exercised,
 * the one it dials and the one dialled to it).
 */
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { Cluster, converged, listAll, metric, peersLive, until } from './harness.js';
import type { Leader } from './harness.js';

const cluster = new Cluster('kill');
let x: Leader;
let y: Leader;
let z: Leader;

beforeAll(async () => {
  // Ports for all three first: each dials the next around the triangle.
  const ports = await cluster.ports(['x', 'y', 'z']);
  const url = (id: string): string => `http://127.0.0.1:${ports.get(id) as number}`;
  x = cluster.define({ id: 'x', peers: [url('z')] }, ports.get('x') as number);
  y = cluster.define({ id: 'y', peers: [url('x')] }, ports.get('y') as number);
  z = cluster.define({ id: 'z', peers: [url('y')] }, ports.get('z') as number);
  await Promise.all([x.start(), y.start(), z.start()]);
  await Promise.all([peersLive(x, ['y', 'z']), peersLive(y, ['x', 'z']), peersLive(z, ['x', 'y'])]);
});

afterAll(async () => {
  await cluster.teardown();
});

/**
 * Writers putting documents to one leader, recording what was acknowledged. Writer 0 writes
 * atomic batches of three documents (`<prefix>b<n>-<k>`); the others single documents
 * (`<prefix>w<writer>-<n>`).
 */
class Load {
  /** Acknowledged id -> the value written and the phase it was acknowledged in. */
  readonly acked = new Map<string, { value: unknown; phase: number }>();
  /** Writes sent but not acknowledged (the leader died under them): they may or may not exist. */
  unacked = 0;
  /** Set by the test: 0 before the kill, 1 while the leader is down, 2 after its restart. */
  phase = 0;
  /** While true the writers wait (sending nothing). */
  paused = false;
  private stopped = false;
  private readonly loops: Promise<void>[] = [];

  constructor(
    private readonly target: Leader,
    private readonly prefix: string,
    writers: number,
  ) {
    for (let w = 0; w < writers; w++) this.loops.push(this.run(w));
  }

  private async run(writer: number): Promise<void> {
    for (let n = 0; !this.stopped; n++) {
      while (this.paused && !this.stopped) await new Promise((r) => setTimeout(r, 10));
      const phase = this.phase;
      const docs =
        writer === 0
          ? [0, 1, 2].map((k) => ({ id: `${this.prefix}b${n}-${k}`, value: { batch: n, k, sentInPhase: phase } }))
          : [
              {
                id: `${this.prefix}w${writer}-${n}`,
                value: { writer, n, sentInPhase: phase, pad: 'p'.repeat(n % 50) },
              },
            ];
      try {
        const res =
          writer === 0
            ? await fetch(`${this.target.url}/db/_batch`, {
                method: 'POST',
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify({ ops: docs.map((d) => ({ op: 'put', collection: 'load', ...d })) }),
                signal: AbortSignal.timeout(5000),
              })
            : await fetch(`${this.target.url}/db/load/${docs[0]?.id ?? ''}`, {
                method: 'PUT',
                headers: { 'content-type': 'application/json' },
                body: JSON.stringify(docs[0]?.value),
                signal: AbortSignal.timeout(5000),
              });
        await res.arrayBuffer();
        if (res.status === (writer === 0 ? 200 : 201)) {
          for (const d of docs) this.acked.set(d.id, { value: d.value, phase: this.phase });
        } else this.unacked++;
      } catch {
        // Refused or reset while the leader is down: not acknowledged. Try again shortly.
        this.unacked++;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  ackedInPhase(phase: number): number {
    let k = 0;
    for (const a of this.acked.values()) if (a.phase === phase) k++;
    return k;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }

  /** Fails unless every acknowledged document is at every leader with its value. */
  async checkEverywhere(leaders: Leader[]): Promise<void> {
    for (const l of leaders) {
      const docs = await listAll(l, 'load');
      const missing: string[] = [];
      const wrong: string[] = [];
      for (const [id, a] of this.acked) {
        const d = docs.get(id);
        if (d === undefined) missing.push(id);
        else if (JSON.stringify(d.value) !== JSON.stringify(a.value)) wrong.push(`${id}: ${JSON.stringify(d.value)}`);
      }
      expect(missing, `acknowledged writes missing at ${l.options.id}`).toEqual([]);
      expect(wrong, `acknowledged writes with another value at ${l.options.id}`).toEqual([]);
      // Batches are whole: the three documents of a batch are all there or none is.
      for (let n = 0; docs.has(`${this.prefix}b${n}-0`) || docs.has(`${this.prefix}b${n}-1`); n++) {
        const present = [0, 1, 2].map((k) => docs.has(`${this.prefix}b${n}-${k}`));
        expect(present, `batch ${this.prefix}b${n} at ${l.options.id}`).toEqual([true, true, true]);
      }
    }
  }
}

describe('a leader killed with SIGKILL under load and restarted on its data dir', () => {
  it('the written-to leader: loses no acknowledged write and resumes from its checkpoints', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    const load = new Load(x, 'a', 4);
    let heldByY: number;
    let yReceivedBefore: number;
    try {
      // Before the kill: load until the peers hold a good part of it.
      await until('x to ack 400 writes and y to hold 300 documents', async () => {
        if (load.acked.size < 400) return false;
        return (await y.status()).docs >= 300;
      });
      heldByY = (await y.status()).docs;
      yReceivedBefore = await metric(y, 'polyarch_changes_received_total');

      load.phase = 1;
      await x.stop('SIGKILL');
      expect(x.exitCode).not.toBe(0);
      await x.start();
      load.phase = 2;
      await until('x to ack 100 writes after its restart', () => load.ackedInPhase(2) >= 100);
    } finally {
      await load.stop();
    }

    const statuses = await converged([x, y, z]);
    expect(new Set(statuses.map((s) => s.digest)).size).toBe(1);
    await load.checkEverywhere([x, y, z]);

    // Resumption, not a restart from zero. x's counters began at 0 with the new process.
    const total = statuses[0]?.docs ?? 0;
    const ackedAfter = load.ackedInPhase(2);
    const missedByY = total - heldByY;
    const margin = 50;
    const xReceived = await metric(x, 'polyarch_changes_received_total');
    const xSent = await metric(x, 'polyarch_changes_sent_total');
    const yReceived = (await metric(y, 'polyarch_changes_received_total')) - yReceivedBefore;
    const summary = JSON.stringify({ total, heldByY, ackedAfter, unacked: load.unacked, xReceived, xSent, yReceived });
    expect(total, summary).toBeGreaterThanOrEqual(load.acked.size);
    // Nothing x wrote is news to it: its peers skip all of it.
    expect(xReceived, summary).toBeLessThan(ackedAfter + margin);
    // x sends its two peers (at most) what they missed, not its whole store.
    expect(xSent, summary).toBeLessThanOrEqual(2 * missedByY + margin);
    expect(xSent, summary).toBeLessThan(total / 2);
    // y got from x and z (at most) what it missed at the kill.
    expect(yReceived, summary).toBeLessThanOrEqual(2 * missedByY + margin);
  });

  it('a receiving peer: killed while applying batches, it is re-sent only what it missed', async () => {
    onTestFailed(() => console.error(cluster.logs()));
    const before = (await y.status()).docs;
    const load = new Load(x, 'r', 4);
    let heldAtKill: number;
    let xReadBefore: number;
    try {
      await until('y to be receiving the new load', async () => (await y.status()).docs >= before + 300);
      // What y has committed (durably: a commit is acknowledged only once durable) at the kill.
      heldAtKill = (await y.status()).docs;
      // x keeps serving, but the writers hold off while y is down, so that what y missed
      // stays small next to what it held.
      load.paused = true;
      load.phase = 1;
      xReadBefore = await metric(x, 'polyarch_feed_rows_read_total');
      await y.stop('SIGKILL');
      await y.start();
      load.phase = 2;
      load.paused = false;
      await until('x to ack 100 writes after the restart of y', () => load.ackedInPhase(2) >= 100);
    } finally {
      await load.stop();
    }

    const statuses = await converged([x, y, z]);
    expect(new Set(statuses.map((s) => s.digest)).size).toBe(1);
    await load.checkEverywhere([x, y, z]);

    // y's counters began at 0 with the new process. It is sent what it lacked at the kill
    // (what it missed, and what was written since), at most twice (by x and by z, which both
    // forward in a triangle), and nothing of what it already held: not everything again.
    const total = statuses[0]?.docs ?? 0;
    const missed = total - heldAtKill;
    const yReceived = await metric(y, 'polyarch_changes_received_total');
    // x read its feed for y from y's durable checkpoint for x, where a pull from zero would
    // read x's whole feed (>= total). That checkpoint may lag what y held at the kill by more
    // than what y missed: in a triangle y also receives x's writes through z, and under load
    // the x->y session lags behind (a CI run measured 666 rows read for 115 missed). It is
    // still past the documents y held before this load began.
    const xRead = (await metric(x, 'polyarch_feed_rows_read_total')) - xReadBefore;
    const summary = JSON.stringify({ before, heldAtKill, total, missed, acked: load.acked.size, yReceived, xRead });
    expect(yReceived, summary).toBeLessThanOrEqual(2 * missed + 50);
    expect(heldAtKill, summary).toBeGreaterThan(missed);
    expect(xRead, summary).toBeLessThanOrEqual(total - before / 2);
    expect(xRead, summary).toBeLessThan(total);
  });
});
