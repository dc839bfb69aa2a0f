import { afterEach, describe, expect, it } from 'vitest';
import type { CloseInfo, Connection } from '../connection.js';
import { BroadcastEndpoint } from './index.js';

let channelCount = 0;
const open: BroadcastEndpoint[] = [];
const raw: BroadcastChannel[] = [];

/** Endpoints on one fresh channel name, as tabs of one origin. */
function tabs(...ids: string[]): BroadcastEndpoint[] {
  const name = `broadcast-test-${++channelCount}`;
  return ids.map((id) => {
    const e = new BroadcastEndpoint(new BroadcastChannel(name), id);
    open.push(e);
    return e;
  });
}

afterEach(() => {
  for (const e of open.splice(0)) e.close();
  for (const c of raw.splice(0)) c.close();
});

/** Polls until `check` passes (a deadline, not a sleep). */
async function eventually(check: () => void, deadlineMs = 5000): Promise<void> {
  const start = Date.now();
  for (;;) {
    try {
      check();
      return;
    } catch (e) {
      if (Date.now() - start > deadlineMs) throw e;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

function record(conn: Connection): { frames: number[][]; closed: CloseInfo[] } {
  const got = { frames: [] as number[][], closed: [] as CloseInfo[] };
  conn.onFrame((f) => got.frames.push([...f]));
  conn.onClose((info) => got.closed.push(info));
  return got;
}

describe('BroadcastEndpoint', () => {
  it('carries frames both ways, in order, between two tabs, and not to a third', async () => {
    const [a, b, c] = tabs('a', 'b', 'c') as [BroadcastEndpoint, BroadcastEndpoint, BroadcastEndpoint];
    let atB: ReturnType<typeof record> | undefined;
    let bSide: Connection | undefined;
    b.onAccept((conn, from) => {
      expect(from).toBe('a');
      bSide = conn;
      atB = record(conn);
    });
    let cAccepted = false;
    c.onAccept(() => (cAccepted = true));
    const aSide = a.connect('b');
    const atA = record(aSide);
    // Sent before the other side exists: they follow the opening, so they still arrive.
    for (let i = 0; i < 50; i++) expect(aSide.send(new Uint8Array([i, i]))).toBe(true);
    await eventually(() => expect(atB?.frames).toHaveLength(50));
    expect(atB?.frames).toEqual(Array.from({ length: 50 }, (_, i) => [i, i]));
    bSide?.send(new Uint8Array([9]));
    await eventually(() => expect(atA.frames).toEqual([[9]]));
    expect(cAccepted).toBe(false);
  });

  it('a close reaches the other side with its code and message, and later sends return false', async () => {
    const [a, b] = tabs('a', 'b') as [BroadcastEndpoint, BroadcastEndpoint];
    let atB: ReturnType<typeof record> | undefined;
    b.onAccept((conn) => (atB = record(conn)));
    const aSide = a.connect('b');
    const atA = record(aSide);
    aSide.send(new Uint8Array([1]));
    aSide.close('closed', 'bye');
    expect(atA.closed).toEqual([{ code: 'closed', message: 'bye' }]);
    expect(aSide.send(new Uint8Array([2]))).toBe(false);
    await eventually(() => expect(atB?.closed).toEqual([{ code: 'closed', message: 'bye' }]));
    expect(atB?.frames).toEqual([[1]]);
  });

  it('refuses a connection when the tab accepts none', async () => {
    const [a] = tabs('a', 'b') as [BroadcastEndpoint, BroadcastEndpoint];
    const got = record(a.connect('b'));
    await eventually(() => expect(got.closed).toEqual([{ code: 'unavailable', message: expect.any(String) }]));
  });

  it("closes a tab's connections on the other side when that tab closes its endpoint", async () => {
    const [a, b] = tabs('a', 'b') as [BroadcastEndpoint, BroadcastEndpoint];
    let atB: ReturnType<typeof record> | undefined;
    b.onAccept((conn) => (atB = record(conn)));
    const atA = record(a.connect('b'));
    await eventually(() => expect(atB).toBeDefined());
    a.close();
    expect(atA.closed).toHaveLength(1);
    await eventually(() => expect(atB?.closed).toHaveLength(1));
  });

  it('delivers signals to every other tab, or to the one named', async () => {
    const [a, b, c] = tabs('a', 'b', 'c') as [BroadcastEndpoint, BroadcastEndpoint, BroadcastEndpoint];
    const heard: string[] = [];
    for (const e of [a, b, c])
      e.onSignal((topic, from, data) => heard.push(`${e.self}<-${from}:${topic}:${JSON.stringify(data)}`));
    a.signal('leader', { head: 3 });
    a.signal('hi', null, 'c');
    await eventually(() =>
      expect(heard.sort()).toEqual(['b<-a:leader:{"head":3}', 'c<-a:hi:null', 'c<-a:leader:{"head":3}']),
    );
  });

  it('ignores malformed messages on the channel', async () => {
    const [a, b] = tabs('a', 'b') as [BroadcastEndpoint, BroadcastEndpoint];
    const heard: string[] = [];
    b.onSignal((topic) => heard.push(topic));
    let accepted = 0;
    b.onAccept(() => accepted++);
    const stranger = new BroadcastChannel(`broadcast-test-${channelCount}`);
    raw.push(stranger);
    for (const junk of [
      null,
      42,
      'x',
      { k: 'open' },
      { k: 'frame', from: 'z', to: 'b', conn: 'q', data: 'no' },
      { k: 'nope', from: 'z' },
    ]) {
      stranger.postMessage(junk);
    }
    a.signal('after');
    await eventually(() => expect(heard).toEqual(['after']));
    expect(accepted).toBe(0);
  });
});
