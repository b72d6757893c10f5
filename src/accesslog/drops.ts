// Why the access log receiver (server.ts) drops what it drops: the reasons of its metric, in a
// module of their own so usage's metrics name them without loading the receiver (and grpc-js)
// where no receiver runs.

/** Why the receiver refused a connection, a stream, a message or entries. */
export type AccessLogDrop =
  /** TLS handshake failed: no client certificate, one the CA does not verify, or no TLS at all. */
  | "handshake"
  /** The client certificate names none of the allowed identities. */
  | "peer"
  /** Over the connection limit. */
  | "connections"
  /** Over the streams-per-connection limit. */
  | "streams"
  /** A message over the size limit (its stream ends with RESOURCE_EXHAUSTED). */
  | "message_size"
  /** Entries past the per-message limit. */
  | "entries"
  /** An entry whose request ended too long ago, or in the future. */
  | "age"
  /** An upstream answer without a valid proof that keyward checked the request (--access-log-proof-key-file). */
  | "unproven";

export const ACCESS_LOG_DROPS: readonly AccessLogDrop[] = ["handshake", "peer", "connections", "streams", "message_size", "entries", "age", "unproven"];
