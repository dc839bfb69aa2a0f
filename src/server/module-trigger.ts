/**
 * Module delivery of trigger events: a JS module of the operator's, loaded once at start,
 * whose `onChange` export (or default export) is called with each event. The promise it
 * returns is the acknowledgement; a rejection or a throw has the event retried with backoff.
 */
import { pathToFileURL } from 'node:url';
import type { TriggerEvent } from '../replication/triggers.js';
import { ConfigError } from './config.js';

/** What a trigger module exports: called with each event; its promise settles the delivery. */
export type ModuleHandler = (event: TriggerEvent) => unknown;

/**
 * Imports `file` (an absolute path) and returns its `onChange` export, or its default export
 * when that is a function. A module that cannot be loaded, or has neither, is a start error
 * (ConfigError) naming the trigger and the path.
 */
export async function loadTriggerModule(trigger: string, file: string): Promise<ModuleHandler> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (e) {
    throw new ConfigError(`trigger "${trigger}": cannot load ${file}: ${(e as Error).message}`);
  }
  const handler = typeof mod.onChange === 'function' ? mod.onChange : mod.default;
  if (typeof handler !== 'function') {
    throw new ConfigError(
      `trigger "${trigger}": ${file} exports no handler: export a function as onChange or as the default export`,
    );
  }
  return handler as ModuleHandler;
}
