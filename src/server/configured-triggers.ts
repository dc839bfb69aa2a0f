/**
 * The triggers a leader's config declares, wired to its replica: handlers are built before
 * the store opens (a module that cannot load stops the start before anything else), and
 * attached after it opens but before the leader listens or dials a peer, so that the first
 * write it accepts or receives is captured. The core keeps each trigger's queue durably.
 */
import type { Database } from '../client/database.js';
import type { Logger } from '../env/env.js';
import type { Trigger, TriggerEvent } from '../replication/triggers.js';
import { ConfigError } from './config.js';
import { loadTriggerModule } from './module-trigger.js';
import type { TriggerConfig } from './trigger-config.js';
import { webhookHandler } from './webhook-trigger.js';

export interface LoadedTrigger {
  config: TriggerConfig;
  handler: (event: TriggerEvent) => unknown;
}

/** Loads every module trigger and builds every webhook; throws a ConfigError naming a bad one. */
export async function loadTriggers(configs: readonly TriggerConfig[]): Promise<LoadedTrigger[]> {
  const out: LoadedTrigger[] = [];
  for (const config of configs) {
    const handler =
      config.module !== undefined
        ? await loadTriggerModule(config.name, config.module)
        : webhookHandler(config.name, config.webhook);
    out.push({ config, handler });
  }
  return out;
}

/**
 * Attaches the loaded triggers to the replica and waits until each one's declaration is
 * durable. A trigger the store declares differently (another `where` or `collection`) is a
 * ConfigError: the core keeps one declaration per name until it is dropped. Warns about
 * triggers the store declares that the config no longer names: their queues keep growing
 * until they are configured again or dropped.
 */
export async function attachTriggers(
  db: Database,
  loaded: readonly LoadedTrigger[],
  logger: Logger,
): Promise<Trigger[]> {
  const triggers: Trigger[] = [];
  try {
    for (const { config, handler } of loaded) {
      const options = {
        name: config.name,
        where: config.where,
        ...(config.collection === undefined ? {} : { collection: config.collection }),
        ...(config.retry === undefined ? {} : { retry: config.retry }),
      };
      try {
        triggers.push(db.replica.on('change', handler, options));
      } catch (e) {
        // The config contradicts the store (a trigger declared with another where or collection).
        throw new ConfigError(`trigger "${config.name}": ${(e as Error).message}`);
      }
    }
    await Promise.all(triggers.map((t) => t.ready));
  } catch (e) {
    for (const t of triggers) t.close();
    throw e;
  }
  const configured = new Set(loaded.map((l) => l.config.name));
  const orphans = db.replica
    .triggerStatus()
    .filter((s) => !configured.has(s.name))
    .map((s) => ({ name: s.name, pending: s.pending }));
  if (orphans.length > 0) {
    logger.log('warn', 'the store holds triggers the config does not name: their deliveries wait until configured', {
      triggers: orphans,
    });
  }
  return triggers;
}
