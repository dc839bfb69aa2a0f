/**
 * put, get, del, conflicts, status and watch: thin commands over the HTTP API, human
 * output by default and JSON with --json. They hold no logic beyond formatting.
 */
import type { Command } from 'commander';
import { CliError, docPath, request } from './http-client.js';

type Print = (line: string) => void;

interface Common {
  url: string;
  json?: boolean;
}

function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CliError(`the value is not JSON: ${(e as Error).message} (quote strings: '"hello"')`, 2);
  }
}

function printDoc(print: Print, doc: Record<string, unknown>): void {
  print(`${String(doc['id'])} = ${JSON.stringify(doc['value'])}`);
  print(`  version ${String(doc['version'])}  (written at ${String(doc['origin'])}, ${String(doc['time'])})`);
  const conflicts = (doc['conflicts'] as Record<string, unknown>[] | undefined) ?? [];
  for (const c of conflicts) {
    const v = c['deleted'] === true ? '(deleted)' : JSON.stringify(c['value']);
    print(`  conflict: ${v}  from ${String(c['origin'])}, ${String(c['time'])}  version ${String(c['version'])}`);
  }
}

export function addClientCommands(program: Command, print: Print = console.log): void {
  const withUrl = (c: Command): Command =>
    c
      .requiredOption('--url <url>', 'the leader, e.g. http://127.0.0.1:7001')
      .option('--json', 'print JSON for scripts');

  withUrl(program.command('put <collection> <id> <json>'))
    .description('write a document (the value is JSON)')
    .option('--if-match <version>', 'the version you read: fails with 409 if the document changed since')
    .option('--create', 'create only: fails with 412 if the document exists')
    .action(
      async (collection: string, id: string, json: string, o: Common & { ifMatch?: string; create?: boolean }) => {
        const headers: Record<string, string> = {};
        if (o.ifMatch !== undefined) headers['if-match'] = o.ifMatch;
        if (o.create === true) headers['if-none-match'] = '*';
        const { body } = await request(o.url, 'PUT', docPath(collection, id), { body: parseValue(json), headers });
        const b = body as { id: string; version: string };
        print(o.json === true ? JSON.stringify(b) : `wrote ${collection}/${b.id}  version ${b.version}`);
      },
    );

  withUrl(program.command('get <collection> <id>'))
    .description('read a document, its version and its conflicts')
    .action(async (collection: string, id: string, o: Common) => {
      const { body } = await request(o.url, 'GET', docPath(collection, id));
      if (o.json === true) print(JSON.stringify(body));
      else printDoc(print, body as Record<string, unknown>);
    });

  withUrl(program.command('del <collection> <id>'))
    .description('delete a document')
    .option('--if-match <version>', 'the version you read: fails with 409 if the document changed since')
    .action(async (collection: string, id: string, o: Common & { ifMatch?: string }) => {
      const headers: Record<string, string> = o.ifMatch === undefined ? {} : { 'if-match': o.ifMatch };
      const { body } = await request(o.url, 'DELETE', docPath(collection, id), { headers });
      const b = body as { id: string; version: string };
      print(o.json === true ? JSON.stringify(b) : `deleted ${collection}/${b.id}  version ${b.version}`);
    });

  withUrl(program.command('conflicts'))
    .description('list documents that hold concurrent writes')
    .option('--collection <name>', 'only this collection')
    .action(async (o: Common & { collection?: string }) => {
      const found: { collection: string; id: string; conflicts: number }[] = [];
      let since = 0;
      for (;;) {
        const { body } = await request(o.url, 'GET', `changes?since=${since}&limit=1000`);
        const page = body as { results: { collection: string; id: string; conflicts: number }[]; last_seq: number };
        for (const e of page.results) {
          if (e.conflicts > 0 && (o.collection === undefined || e.collection === o.collection)) {
            found.push({ collection: e.collection, id: e.id, conflicts: e.conflicts });
          }
        }
        if (page.results.length === 0 || page.last_seq === since) break;
        since = page.last_seq;
      }
      if (o.json === true) print(JSON.stringify({ results: found }));
      else if (found.length === 0) print('no conflicts');
      else for (const f of found) print(`${f.collection}/${f.id}  ${f.conflicts + 1} concurrent versions`);
    });

  withUrl(program.command('status'))
    .description("the leader's replica id, feed head, digest, counts and peers")
    .action(async (o: Common) => {
      const { body } = await request(o.url, 'GET', 'status');
      if (o.json === true) {
        print(JSON.stringify(body));
        return;
      }
      const s = body as {
        replica: string;
        seq: number;
        digest: string;
        docs: number;
        conflicts: number;
        peers: {
          id: string | null;
          url: string | null;
          direction: string;
          state: string;
          lag: { changes: number; ms: number };
          lastError: string | null;
        }[];
      };
      print(`replica ${s.replica}  seq ${s.seq}  docs ${s.docs}  conflicts ${s.conflicts}`);
      print(`digest  ${s.digest}`);
      for (const p of s.peers) {
        const who = p.id ?? '?';
        const where = p.url ?? '(incoming)';
        print(
          `peer ${who} ${where}  ${p.state}  lag ${p.lag.changes} changes, ${p.lag.ms} ms${p.lastError !== null && p.state !== 'live' ? `  last error: ${p.lastError}` : ''}`,
        );
      }
    });

  withUrl(program.command('watch'))
    .description('print changes as they happen (Ctrl-C to stop)')
    .option('--since <seq>', 'start after this seq (default: now)')
    .action(async (o: Common & { since?: string }) => {
      let since = o.since === undefined ? undefined : Number(o.since);
      if (since !== undefined && (!Number.isSafeInteger(since) || since < 0))
        throw new CliError('--since must be a seq >= 0', 2);
      if (since === undefined) {
        const { body } = await request(o.url, 'GET', 'status');
        since = (body as { seq: number }).seq;
      }
      for (;;) {
        const { body } = await request(o.url, 'GET', `changes?feed=longpoll&timeout=30000&since=${since}`);
        const page = body as { results: Record<string, unknown>[]; last_seq: number };
        for (const e of page.results) {
          if (o.json === true) print(JSON.stringify(e));
          else {
            const what =
              e['deleted'] === true
                ? 'deleted'
                : Number(e['conflicts']) > 0
                  ? `changed (${String(e['conflicts'])} conflicts)`
                  : 'changed';
            print(`${String(e['seq'])}  ${String(e['collection'])}/${String(e['id'])}  ${what}`);
          }
        }
        since = page.last_seq;
      }
    });
}
