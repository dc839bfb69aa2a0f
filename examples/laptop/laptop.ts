/**
 * A laptop that meets different servers: a full replica on SQLite that syncs with `eu` in the
 * morning and with `us` in the evening, and writes offline in between. The two servers never
 * talk to each other here, so the laptop is their only link: it carries what each wrote to the
 * other, and after every visit the laptop and that server hold the same documents.
 *
 *   npx tsx examples/laptop/laptop.ts                 # starts eu and us in this process
 *   npx tsx examples/laptop/laptop.ts EU_URL US_URL   # uses two `polyarch serve` you started
 *
 * An app imports from 'polyarch'; inside the repository the example imports the sources.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openReplica } from '../../src/index.js';
import type { Database, DocView, JsonValue } from '../../src/index.js';
// Only to stand two servers up for you, as `polyarch serve` would; not part of the SDK.
import { resolveConfig } from '../../src/server/config.js';
import { startServer } from '../../src/server/serve.js';
import type { RunningServer } from '../../src/server/serve.js';

/** A server the laptop visits: its name for the printout and its base url. */
interface Server {
  name: string;
  url: string;
}

/** What GET /db/:collection/:id and the list return (the fields shown here). */
interface ServerDoc {
  id: string;
  value: JsonValue;
  conflicts: { value: JsonValue; deleted: boolean }[];
}

const WAIT_MS = 20_000;

/** Polls `probe` until it returns true; throws after `WAIT_MS` naming what it waited for. */
async function waitFor(what: string, probe: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${WAIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function http<T>(server: Server, method: string, route: string, body?: JsonValue): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${server.url}${route}`, {
      method,
      ...(body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
  } catch (e) {
    const cause = e instanceof Error && e.cause instanceof Error ? e.cause.message : String(e);
    throw new Error(`cannot reach ${server.name} at ${server.url}: ${cause}`);
  }
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${server.url}${route}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

/** Someone at that server writes a document (over its HTTP API). */
async function writeAt(server: Server, collection: string, id: string, value: JsonValue): Promise<void> {
  await http(server, 'PUT', `/db/${collection}/${id}`, value);
  console.log(`   someone at ${server.name} writes ${id} = ${JSON.stringify(value)}`);
}

async function serverDigest(server: Server): Promise<string> {
  return (await http<{ digest: string }>(server, 'GET', '/status')).digest;
}

/** One line per document: its value, and its conflicting siblings if it has any. */
function describeDoc(doc: {
  id: string;
  value: JsonValue;
  conflicts: { value: JsonValue; deleted: boolean }[];
}): string {
  const others = doc.conflicts.filter((c) => !c.deleted).map((c) => JSON.stringify(c.value));
  const conflict = others.length === 0 ? '' : `   <- conflict, also: ${others.join(', ')}`;
  return `${doc.id} = ${JSON.stringify(doc.value)}${conflict}`;
}

async function show(db: Database, servers: readonly Server[], collection: string): Promise<void> {
  const rows: [string, string[]][] = [];
  const page = await db.collection(collection).list({ limit: 100 });
  rows.push(['laptop', page.results.map(describeDoc)]);
  for (const s of servers) {
    const list = await http<{ results: ServerDoc[] }>(s, 'GET', `/db/${collection}?limit=100`);
    rows.push([s.name, list.results.map(describeDoc)]);
  }
  for (const [name, docs] of rows) {
    console.log(`   ${name} holds ${docs.length} document(s)`);
    for (const line of docs) console.log(`      ${line}`);
  }
}

/**
 * One visit: sync with `server` until the laptop and the server hold the same documents (the
 * same digest), run `whileOnline`, wait for equality again, then close the link.
 */
async function visit(db: Database, server: Server, whileOnline?: () => Promise<void>): Promise<void> {
  const handle = db.sync(server.url);
  handle.subscribe((status, detail) => {
    const why = detail?.error === undefined ? '' : ` (${detail.error.message})`;
    console.log(`   sync with ${server.name}: ${status}${why}`);
  });
  try {
    await waitFor(`the laptop to be online with ${server.name}`, () => handle.status === 'online');
    const inSync = async (): Promise<void> => {
      await waitFor(`the laptop and ${server.name} to hold the same documents`, async () => {
        return (await serverDigest(server)) === db.status().digest;
      });
      console.log(`   laptop and ${server.name} hold the same documents (digest ${db.status().digest.slice(0, 12)})`);
    };
    await inSync();
    if (whileOnline !== undefined) {
      await whileOnline();
      await inSync();
    }
  } finally {
    await handle.close();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.length !== 0 && args.length !== 2) {
    throw new Error('usage: npx tsx examples/laptop/laptop.ts [EU_URL US_URL]');
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'polyarch-laptop-'));
  const started: RunningServer[] = [];
  let db: Database | undefined;
  const cleanup = async (): Promise<void> => {
    await db?.close();
    await Promise.all(started.map((s) => s.close()));
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => {
    void cleanup().finally(() => process.exit(130));
  });

  try {
    let eu: Server;
    let us: Server;
    if (args.length === 2) {
      eu = { name: 'eu', url: args[0] as string };
      us = { name: 'us', url: args[1] as string };
      console.log(`Using your servers: eu ${eu.url}, us ${us.url}`);
    } else {
      // Two leaders as `polyarch serve --id eu --port 0 --data DIR` would start them: free
      // ports, their own data dirs, no --peer (they never talk to each other).
      for (const id of ['eu', 'us']) {
        const config = resolveConfig({ id, port: 0, data: path.join(dir, id), logLevel: 'silent' });
        started.push(await startServer(config));
      }
      eu = { name: 'eu', url: (started[0] as RunningServer).url };
      us = { name: 'us', url: (started[1] as RunningServer).url };
      console.log(`Started two servers in this process, not peered: eu ${eu.url}, us ${us.url}`);
    }
    const servers = [eu, us];
    // Your servers may hold documents of earlier runs: this run gets a collection of its own.
    const trip = args.length === 2 ? `trip-${Date.now().toString(36)}` : 'trip';

    // A replica id belongs to one store for good. Against your long-lived servers, this fresh
    // file gets a generated id: reusing 'laptop' with a new file would reuse its version numbers.
    const file = path.join(dir, 'laptop.db');
    db = await openReplica({ ...(args.length === 2 ? {} : { id: 'laptop' }), storage: file });
    console.log(`The laptop is replica ${db.id} on ${file}\n`);
    const laptop = db;
    const notes = laptop.collection(trip);

    console.log('0. Before the day starts');
    await writeAt(eu, trip, 'lunch', { where: 'canteen', at: '12:30' });
    await writeAt(us, trip, 'weather', { sky: 'clear', high: 24 });
    await show(laptop, servers, trip);

    console.log('\n1. Morning at eu');
    await visit(laptop, eu, async () => {
      console.log('   the laptop writes agenda (online: eu gets it at once)');
      await notes.put('agenda', { items: ['standup'] });
    });
    await show(laptop, servers, trip);

    console.log('\n2. Commute: the laptop is offline; eu and the laptop both edit the agenda');
    await writeAt(eu, trip, 'agenda', { items: ['standup', 'design review'] });
    await notes.put('agenda', { items: ['standup', 'call the airline'] });
    await notes.put('commute', { read: 'DESIGN.md, section 4' });
    console.log('   the laptop writes agenda and commute (stored in laptop.db, nothing sent)');
    await show(laptop, servers, trip);

    console.log('\n3. Evening at us: the laptop brings what it got from eu, and takes what us has');
    await visit(laptop, us);
    await show(laptop, servers, trip);

    console.log("\n4. Next morning at eu: eu's edit and the laptop's meet, as a conflict both sides keep");
    await visit(laptop, eu, async () => {
      const agenda = (await notes.get('agenda')) as DocView;
      const items = new Set<string>();
      for (const v of [agenda.value, ...agenda.conflicts.filter((c) => !c.deleted).map((c) => c.value)]) {
        for (const item of (v as { items: string[] }).items) items.add(item);
      }
      console.log('   both sides now keep both versions of agenda, and show the same one on top:');
      await show(laptop, servers, trip);
      console.log(`   the laptop merges the ${agenda.conflicts.length + 1} versions of agenda into one`);
      // Writing with the version it read replaces every sibling it saw: the conflict is resolved.
      await notes.put('agenda', { items: [...items].sort() }, { version: agenda.version });
    });
    await show(laptop, servers, trip);

    console.log('\n5. Evening at us again: us gets the resolution and what eu wrote');
    await visit(laptop, us);
    await show(laptop, servers, trip);
    const allEqual = async (): Promise<boolean> =>
      new Set([laptop.status().digest, await serverDigest(eu), await serverDigest(us)]).size === 1;
    try {
      // Peered servers may still be passing the evening's changes on to each other.
      await waitFor('the laptop, eu and us to hold the same documents', allEqual);
      console.log('\nThe laptop, eu and us hold the same documents (one digest).');
    } catch {
      console.log(
        "\neu lacks what us has: someone else wrote to a server while this ran. The laptop's next visit brings it.",
      );
    }
  } finally {
    await cleanup();
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
