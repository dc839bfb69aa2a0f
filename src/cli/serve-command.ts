/** `polyarch serve`: flags and config file to a running leader, with graceful shutdown on signals. */
import path from 'node:path';
import type { Command } from 'commander';
import { ConfigError, readConfigFile, resolveConfig } from '../server/config.js';
import { startServer } from '../server/serve.js';
import type { RunningServer } from '../server/serve.js';
import { CliError } from './http-client.js';

interface ServeFlags {
  id?: string;
  port?: string;
  host?: string;
  data?: string;
  peer?: string[];
  secret?: string;
  cluster?: string;
  config?: string;
  logLevel?: string;
  mergeFunctions?: string;
  token?: string[];
}

/** Stops the server on SIGTERM/SIGINT: stop accepting, finish what is in flight, close. */
export function closeOnSignals(servers: RunningServer[], onClosed: () => void = () => {}): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      console.error(`polyarch: ${signal} again, exiting now`);
      process.exit(1);
    }
    stopping = true;
    Promise.all(servers.map((s) => s.close())).then(
      () => {
        onClosed();
        process.exit(0);
      },
      (e: unknown) => {
        console.error(`polyarch: shutdown failed: ${(e as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

export function addServeCommand(program: Command): void {
  program
    .command('serve')
    .description('run a leader: the HTTP API, replication with its peers, and an embedded store')
    .option('--id <id>', 'stable, unique replica id of this leader (e.g. eu-1)')
    .option('--port <n>', 'HTTP port (0 picks a free one)')
    .option('--host <host>', 'address to listen on (default 127.0.0.1)')
    .option('--data <dir>', 'directory of the store, or :memory:')
    .option(
      '--peer <url>',
      'a peer leader to replicate with, both ways (repeatable)',
      (v: string, all: string[] = []) => [...all, v],
    )
    .option('--secret <secret>', 'cluster secret peers must prove (or POLYARCH_SECRET)')
    .option('--cluster <name>', 'cluster name; peers must agree (default "default")')
    .option('--config <file>', 'a JSON file with the same settings (flags win)')
    .option('--log-level <level>', 'debug, info, warn, error or silent (default info)')
    .option('--merge-functions <file>', 'a JS module whose exported functions are merge functions, by name')
    .option(
      '--token <name:token:rights>',
      "a client token and its rights, as calendar:TOKEN:events=rw,holidays=r (* for every collection; repeatable; replaces the config file's tokens)",
      (v: string, all: string[] = []) => [...all, v],
    )
    .action(async (o: ServeFlags) => {
      let config;
      try {
        const file = o.config === undefined ? {} : readConfigFile(o.config);
        // A module named in the file is found relative to the file, as people expect.
        if (o.config !== undefined && typeof file.mergeFunctions === 'string') {
          file.mergeFunctions = path.resolve(path.dirname(o.config), file.mergeFunctions);
        }
        config = resolveConfig(
          {
            id: o.id,
            port: o.port,
            host: o.host,
            data: o.data,
            peers: o.peer,
            secret: o.secret,
            cluster: o.cluster,
            logLevel: o.logLevel,
            mergeFunctions: o.mergeFunctions,
            tokens: o.token,
          },
          file,
          process.env,
        );
      } catch (e) {
        throw new CliError((e as Error).message, 2);
      }
      const server = await startServer(config).catch((e: unknown) => {
        throw e instanceof ConfigError ? new CliError(e.message, 2) : e;
      });
      closeOnSignals([server]);
    });
}
