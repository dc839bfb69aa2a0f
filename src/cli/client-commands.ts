/**
 * put, post, get, del, patch, config, conflicts, status and watch: thin commands over the HTTP API, human
 * output by default and JSON with --json. They hold no logic beyond formatting.
 */
import type { Command } from 'commander';
import { CliError, docPath, request, setClientToken } from './http-client.js';

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
    const at = c['path'] === undefined ? '' : `${String(c['path'])}: `;
    print(`  conflict: ${at}${v}  from ${String(c['origin'])}, ${String(c['time'])}  version ${String(c['version'])}`);
  }
}

export function addClientCommands(program: Command, print: Print = console.log): void {
  const withUrl = (c: Command): Command =>
    c
      .requiredOption('--url <url>', 'the leader, e.g. http://127.0.0.1:7001')
      .option('--token <token>', 'a client token, for a leader that requires one (default: $POLYARCH_TOKEN)')
      .option('--json', 'print JSON for scripts')
      .hook('preAction', (cmd) => {
        const opts = cmd.opts<{ token?: string }>();
        setClientToken(opts.token ?? process.env['POLYARCH_TOKEN']);
      });

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

  withUrl(program.command('post <collection> <json>'))
    .description('create a document under a new time-sortable id the leader picks (the value is JSON)')
    .action(async (collection: string, json: string, o: Common) => {
      const path = `db/${encodeURIComponent(collection)}`;
      const { body } = await request(o.url, 'POST', path, { body: parseValue(json) });
      const b = body as { id: string; version: string };
      print(o.json === true ? JSON.stringify(b) : `wrote ${collection}/${b.id}  version ${b.version}`);
    });

  withUrl(program.command('nextval <sequence>'))
    .description('take the next number of a sequence at this leader (503 sequence_exhausted when cut off and used up)')
    .action(async (name: string, o: Common) => {
      const { body } = await request(o.url, 'POST', `sequences/${encodeURIComponent(name)}/next`);
      const b = body as { name: string; value: number };
      print(o.json === true ? JSON.stringify(b) : String(b.value));
    });

  withUrl(program.command('triggers'))
    .description("the leader's triggers with their queues; --drop NAME drops one the config no longer names")
    .option('--drop <name>', 'drop this trigger and its undelivered events')
    .action(async (o: Common & { drop?: string }) => {
      if (o.drop !== undefined) {
        const { body } = await request(o.url, 'DELETE', `triggers/${encodeURIComponent(o.drop)}`);
        const b = body as { name: string; pending: number };
        print(
          o.json === true ? JSON.stringify(b) : `dropped trigger ${b.name} and its ${b.pending} undelivered events`,
        );
        return;
      }
      const { body } = await request(o.url, 'GET', 'triggers');
      if (o.json === true) {
        print(JSON.stringify(body));
        return;
      }
      const { triggers } = body as {
        triggers: {
          name: string;
          where: string;
          collection: string | null;
          attached: boolean;
          pending: number;
          failures: number;
          lastError: string | null;
        }[];
      };
      if (triggers.length === 0) print('no triggers');
      for (const t of triggers) {
        const error = t.lastError === null ? '' : `  last error: ${t.lastError}`;
        print(
          `${t.name}  ${t.where}  ${t.collection ?? '*'}  ${t.attached ? 'attached' : 'not attached'}  pending ${t.pending}  failures ${t.failures}${error}`,
        );
      }
    });

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
    .description('list documents that hold concurrent writes, or break a unique field or a reference')
    .option('--collection <name>', 'only this collection')
    .action(async (o: Common & { collection?: string }) => {
      type Entry = {
        collection: string;
        id: string;
        kind: string;
        value: unknown;
        conflicts: Record<string, unknown>[];
        constraint?: { field: string; value?: unknown; winner?: string; target?: { collection: string; id: string } };
      };
      const found: Entry[] = [];
      let after: string | null = null;
      do {
        const q = new URLSearchParams({ limit: '1000' });
        if (o.collection !== undefined) q.set('collection', o.collection);
        if (after !== null) q.set('after', after);
        const { body } = await request(o.url, 'GET', `conflicts?${q.toString()}`);
        const page = body as { results: Entry[]; next: string | null };
        found.push(...page.results);
        after = page.next;
      } while (after !== null);
      if (o.json === true) print(JSON.stringify({ results: found }));
      else if (found.length === 0) print('no conflicts');
      else {
        for (const f of found) {
          const c = f.constraint;
          if (f.kind === 'unique' && c !== undefined) {
            print(
              `${f.collection}/${f.id}: unique ${c.field} ${JSON.stringify(c.value)} is kept by ${f.collection}/${String(c.winner)}`,
            );
            continue;
          }
          if (f.kind === 'reference' && c?.target !== undefined) {
            print(
              `${f.collection}/${f.id}: ${c.field} names ${c.target.collection}/${c.target.id}, which does not exist`,
            );
            continue;
          }
          print(`${f.collection}/${f.id} = ${JSON.stringify(f.value)}`);
          for (const c of f.conflicts) {
            const v = c['deleted'] === true ? '(deleted)' : JSON.stringify(c['value']);
            const at = c['path'] === undefined ? '' : `${String(c['path'])}: `;
            print(`  conflict: ${at}${v}  from ${String(c['origin'])}, ${String(c['time'])}`);
          }
        }
      }
    });

  withUrl(program.command('patch <collection> <id> <ops>'))
    .description('apply operations to a map, counter or set document (ops: a JSON array)')
    .option('--if-match <version>', 'the version you read: fails with 409 if the document changed since')
    .action(async (collection: string, id: string, json: string, o: Common & { ifMatch?: string }) => {
      const ops = parseValue(json);
      if (!Array.isArray(ops)) {
        throw new CliError('ops must be a JSON array, e.g. \'[{"op":"increment","path":"/visits","by":1}]\'', 2);
      }
      const headers: Record<string, string> = o.ifMatch === undefined ? {} : { 'if-match': o.ifMatch };
      const { body } = await request(o.url, 'PATCH', docPath(collection, id), { body: { ops }, headers });
      const b = body as { id: string; version: string };
      print(o.json === true ? JSON.stringify(b) : `patched ${collection}/${b.id}  version ${b.version}`);
    });

  withUrl(program.command('config <collection> [settings]'))
    .description("show a collection's settings, or change them at every leader (settings: JSON)")
    .action(async (collection: string, json: string | undefined, o: Common) => {
      const path = `db/${encodeURIComponent(collection)}/_config`;
      const { body } =
        json === undefined
          ? await request(o.url, 'GET', path)
          : await request(o.url, 'PUT', path, { body: parseValue(json) });
      if (o.json === true) print(JSON.stringify(body));
      else {
        const c = body as { collection: string; kind: string; policy: string; merge?: string; fields?: unknown };
        const merge = c.merge === undefined ? '' : ` (merge: ${c.merge})`;
        const fields = c.fields === undefined ? '' : `  fields ${JSON.stringify(c.fields)}`;
        print(`${c.collection}: kind ${c.kind}, policy ${c.policy}${merge}${fields}`);
      }
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
        violations?: number;
        peers: {
          id: string | null;
          url: string | null;
          direction: string;
          state: string;
          lag: { changes: number; ms: number };
          lastError: string | null;
        }[];
      };
      print(
        `replica ${s.replica}  seq ${s.seq}  docs ${s.docs}  conflicts ${s.conflicts}  violations ${s.violations ?? 0}`,
      );
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
