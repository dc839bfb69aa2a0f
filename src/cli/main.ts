#!/usr/bin/env node
/**
 * The polyarch command. It only parses arguments and calls into the library: no logic of
 * its own. Exit codes: 0 success, 1 operation failed, 2 usage error.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { runDemo } from './demo.js';

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

  program
    .command('demo')
    .description(
      'three leaders (eu, us, ap) take concurrent writes, sync in a ring, and show their conflicts and equal digests',
    )
    .action(async () => {
      const { digests } = await runDemo();
      if (new Set(digests).size !== 1) process.exitCode = 1;
    });
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
    process.exitCode = 1;
  }
}

await main(process.argv);
