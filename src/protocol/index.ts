/** The replication wire protocol: messages, their binary codec and the protocol version. */
export { PROTOCOL_VERSION } from './version.js';
export { MessageType } from './messages.js';
export type { Change, DocChange, Message, MessageOf, RefusedDoc } from './messages.js';
export { WIRE_LIMITS, decodeMessage, encodeMessage } from './codec.js';
export type { DecodeLimits } from './codec.js';
