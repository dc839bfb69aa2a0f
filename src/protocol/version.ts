/**
 * The version of the replication wire protocol, sent in every hello.
 * Any change to the message schema (a message, a field, a tag, an encoding, a limit) must bump
 * it and add a line below; schema.test.ts fails until both are done.
 */

// History:
// 1 (2026-11-28): first version: hello, pull, batch, ack, error, ping, pong.
// 2 (2026-11-29): document states carry map, counter and set entries (entry flags 2-4);
//    a version 1 peer would refuse them as corrupt.
// 3 (2026-11-30): presence message (tag 9): ephemeral per-publisher state in rooms, relayed
//    between sessions. A version 2 peer would close the session on the unknown tag, and the
//    hello accepts only an equal version, so mixed versions now fail at hello with a clear code.
// 4 (2026-11-30): refused message (tag 10): the documents of a batch a receiver will never
//    apply (a client token without the right to write their collection), sent before the
//    batch's ack. A version 3 peer would close the session on the unknown tag.
// 5 (2026-11-29): documents of the system collection `_sequences` (sequence settings, block
//    requests and grants; src/replication/sequences.ts). The message schema is unchanged, but a
//    version 4 peer refuses a change naming `_sequences` as an invalid collection and would
//    close every session that carries one.
export const PROTOCOL_VERSION = 5;
