#!/usr/bin/env node
/**
 * The polyarch command. It only parses arguments and calls into the library: no logic of
 * its own. Exit codes: 0 success, 1 operation failed, 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { addClientCommands } from './client-commands.js';
import { addDemoCommand } from './demo.js';
import { CliError } from './http-client.js';
import { addServeCommand } from './serve-command.js';

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('polyarch')
    .description('A multi-leader (active/active) replicated document database: every replica leads.')
    .version(packageVersion(), '-v, --version', 'print the version')
    .showHelpAfterError('(run polyarch --help for usage)')
    .exitOverride();
  addServeCommand(program);
  addDemoCommand(program);
  addClientCommands(program);
  for (const c of program.commands) c.exitOverride();
  return program;
}

async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    console.error(`polyarch: ${e instanceof Error ? e.message : String(e)}`);
    process.exitCode = e instanceof CliError ? e.exitCode : 1;
  }
}

await main(process.argv);
