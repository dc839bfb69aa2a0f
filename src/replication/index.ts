export { Replica, encodeContext, decodeContext } from './replica.js';
export type {
  ApplyResult,
  ChangeEvent,
  CollectionOptions,
  ConflictView,
  DocView,
  FeedEntry,
  MergeFunction,
  OutgoingBatch,
  ReplicaOptions,
  ReplicaStatus,
  WriteOp,
  WriteResult,
} from './replica.js';
export type { Trigger, TriggerEvent, TriggerOptions, TriggerStatus, TriggerWhere } from './triggers.js';
export type { SequenceConfig, SequenceOptions, SequenceStatus } from './sequences.js';
export { initialSession, step } from './session.js';
export type { Effect, SessionConfig, SessionEvent, SessionState } from './session.js';
export { SessionDriver } from './session-driver.js';
export { PresenceHub, PresenceRoom, PRESENCE_TTL_MS_DEFAULT, publisherId } from './presence.js';
export type { PresenceHubOptions, PresenceMessage, PresencePeer, PresencePort } from './presence.js';
export type { SessionInfo, SessionOptions } from './session-driver.js';
