// The gRPC Access Log Service receiver: Envoy streams its HTTP access logs here
// (envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs, configured as
// an envoy.access_loggers.http_grpc logger), and every entry that carries
// keyward's ext_authz metadata becomes an upstream answer for that key.
//
// What a sender writes here becomes analytics rows, upstream metrics and alert
// inputs, so the port authenticates its senders and bounds them (ADR 0053):
// keyward accepts the connections itself (node:net, or node:tls with a client
// CA: mTLS, and optionally a list of identities the client certificate must
// name) and hands the accepted ones to grpc-js. Connections, streams per
// connection, message size, entries per message and the entries' age are
// limited; everything refused is counted through onDrop.
import { Server, ServerCredentials, loadPackageDefinition, status, type GrpcObject, type MethodDefinition, type ServerReadableStream, type ServiceClientConstructor, type ServiceDefinition, type sendUnaryData } from "@grpc/grpc-js";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { KeywardError } from "../errors.ts";
import { parseHostPort } from "../h2/server.ts";
import type { Logger } from "../log.ts";
import { followTls, tlsServerOptions, type TlsSource } from "../tls/source.ts";
import { DEFAULT_METADATA_NAMESPACES, joinEntry, keywardFields, type JoinKind, type JoinedEntry } from "./join.ts";
import { PROOF_FIELD, verifyProof } from "./proof.ts";
import { entryEndMs, peerAllowed, peerIdentities } from "./peer.ts";
import { loadAccessLogProtos, type HttpLogEntry, type StreamAccessLogsMessage } from "./proto.ts";
import type { AccessLogDrop } from "./drops.ts";

export { ACCESS_LOG_DROPS, type AccessLogDrop } from "./drops.ts";


export interface AccessLogLimits {
  maxConnections: number;
  maxStreamsPerConnection: number;
  maxMessageBytes: number;
  maxEntriesPerMessage: number;
  /** An entry whose request ended longer ago than this is dropped; one more than a minute ahead too. */
  maxEntryAgeMs: number;
}

export const DEFAULT_ACCESS_LOG_LIMITS: AccessLogLimits = {
  maxConnections: 256,
  maxStreamsPerConnection: 16,
  maxMessageBytes: 1_048_576,
  maxEntriesPerMessage: 1000,
  maxEntryAgeMs: 3_600_000,
};

/** Distinct refused peer identities logged at most (each once). */
const MAX_REPORTED_PEERS = 100;

/** How far ahead of keyward's clock an entry's end may be (clock skew between Envoy and keyward). */
const MAX_ENTRY_AHEAD_MS = 60_000;

export interface AccessLogServerOptions {
  address: string;
  /** One upstream answer joined to a key (never a request an authorizer denied). */
  onUpstream: (apikey: string, keyId: string, e: { at: number; responseCode: number; upstreamSeconds?: number }) => void;
  onEntry?: (result: JoinKind) => void;
  /** Every HTTP entry accepted (the analytics rows, src/usage/access-rows.ts). */
  onHttpEntry?: (entry: HttpLogEntry) => void;
  /** Something refused; `n` entries (1 for connections, streams and messages). */
  onDrop?: (reason: AccessLogDrop, n: number) => void;
  /** mTLS: the server identity and the client CA (certificates always required). Cleartext without. */
  tls?: TlsSource;
  /** With tls: identities (URI or DNS subjectAltNames) a client certificate must name one of; `*` at the end matches a prefix. Empty: any verified certificate. */
  allowedPeers?: readonly string[];
  limits?: Partial<AccessLogLimits>;
  /** Given, an upstream answer counts only with a proof one of these keys made (src/accesslog/proof.ts); within maxEntryAgeMs of its check. */
  proofKeys?: readonly Buffer[];
  log: Logger;
  now?: () => number;
  namespaces?: readonly string[];
}

export interface AccessLogServer {
  port: number;
  stop(): Promise<void>;
}

function serviceOf(pkg: GrpcObject): ServiceClientConstructor {
  const envoy = pkg.envoy as GrpcObject;
  const service = ((envoy.service as GrpcObject).accesslog as GrpcObject).v3 as GrpcObject;
  return service.AccessLogService as ServiceClientConstructor;
}

/** grpc-js refuses (uncounted) a message this many times over the limit before reading it; up to there keyward reads its length and counts it. */
const HARD_LIMIT_FACTOR = 4;

/** What the decoder hands the handler for a message over the limit (never decoded). */
interface Oversize {
  oversize: number;
}

const isOversize = (m: StreamAccessLogsMessage | Oversize): m is Oversize => "oversize" in m;

/** The service with a decoder that leaves messages over `max` bytes undecoded. */
function boundedService(pkg: GrpcObject, max: number): ServiceDefinition {
  const service = serviceOf(pkg).service;
  const m = service.StreamAccessLogs as MethodDefinition<StreamAccessLogsMessage, object>;
  const decode = m.requestDeserialize;
  // Only the server's side is used: requests are decoded, never encoded.
  const encode = m.requestSerialize as (v: StreamAccessLogsMessage | Oversize) => Buffer;
  const bounded: MethodDefinition<StreamAccessLogsMessage | Oversize, object> = { ...m, requestSerialize: encode, requestDeserialize: (b: Buffer) => (b.length > max ? { oversize: b.length } : decode(b)) };
  return { ...service, StreamAccessLogs: bounded };
}

export async function startAccessLogServer(options: AccessLogServerOptions): Promise<AccessLogServer> {
  const now = options.now ?? Date.now;
  const namespaces = options.namespaces ?? DEFAULT_METADATA_NAMESPACES;
  const limits: AccessLogLimits = { ...DEFAULT_ACCESS_LOG_LIMITS, ...options.limits };
  const drop = (reason: AccessLogDrop, n = 1): void => {
    options.onDrop?.(reason, n);
  };
  const { host, port: wanted } = parseHostPort(options.address);
  const grpcServer = new Server({ "grpc.max_receive_message_length": HARD_LIMIT_FACTOR * limits.maxMessageBytes });
  const deliver = (j: JoinedEntry): void => {
    options.onUpstream(j.apikey, j.keyId, { at: j.at ?? now(), responseCode: j.responseCode, ...(j.upstreamSeconds !== undefined ? { upstreamSeconds: j.upstreamSeconds } : {}) });
  };
  const fresh = (entry: HttpLogEntry): boolean => {
    const end = entryEndMs(entry);
    if (end === undefined) return true;
    const t = now();
    return end >= t - limits.maxEntryAgeMs && end <= t + MAX_ENTRY_AHEAD_MS;
  };
  /** Open streams per connection (grpc-js names a connection by its peer address and port). */
  const streams = new Map<string, number>();
  const proven = (entry: HttpLogEntry, keyId: string): boolean => {
    const keys = options.proofKeys;
    if (!keys) return true;
    const fields = keywardFields(entry, namespaces) ?? {};
    const requestId = entry.request?.request_id ?? "";
    const uid = fields.uid?.stringValue ?? "";
    return verifyProof(keys, fields[PROOF_FIELD]?.stringValue, { requestId, keyId, uid }, now(), limits.maxEntryAgeMs);
  };
  const readEntry = (entry: HttpLogEntry): JoinKind | "unproven" => {
    let result: JoinKind;
    try {
      const j = joinEntry(entry, namespaces);
      if (j.kind === "joined" && !proven(entry, j.entry.keyId)) {
        // Claimed as an upstream answer to a request no keyward checked: neither counted nor a row.
        drop("unproven");
        return "unproven";
      }
      result = j.kind;
      if (j.kind === "joined") deliver(j.entry);
    } catch (err) {
      result = "invalid";
      options.log.debug("access log entry could not be read", { err });
    }
    options.onEntry?.(result);
    try {
      options.onHttpEntry?.(entry);
    } catch (err) {
      options.log.debug("access log entry not recorded", { err });
    }
    return result;
  };
  grpcServer.addService(boundedService(loadPackageDefinition(loadAccessLogProtos()), limits.maxMessageBytes), {
    StreamAccessLogs: (call: ServerReadableStream<StreamAccessLogsMessage | Oversize, object>, callback: sendUnaryData<object>) => {
      const peer = call.getPeer();
      const open = (streams.get(peer) ?? 0) + 1;
      if (open > limits.maxStreamsPerConnection) {
        drop("streams");
        callback({ code: status.RESOURCE_EXHAUSTED, details: `at most ${limits.maxStreamsPerConnection} access log streams per connection` });
        return;
      }
      streams.set(peer, open);
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        const left = (streams.get(peer) ?? 1) - 1;
        if (left > 0) streams.set(peer, left);
        else streams.delete(peer);
      };
      let invalid = 0;
      let ended = false;
      call.on("data", (msg: StreamAccessLogsMessage | Oversize) => {
        if (ended) return;
        if (isOversize(msg)) {
          ended = true;
          drop("message_size");
          release();
          callback({ code: status.RESOURCE_EXHAUSTED, details: `access log message of ${msg.oversize} bytes is over the limit of ${limits.maxMessageBytes}` });
          return;
        }
        const entries = msg.http_logs?.log_entry ?? [];
        if (entries.length > limits.maxEntriesPerMessage) drop("entries", entries.length - limits.maxEntriesPerMessage);
        let stale = 0;
        for (const entry of entries.slice(0, limits.maxEntriesPerMessage)) {
          if (!fresh(entry)) {
            stale++;
            continue;
          }
          if (readEntry(entry) === "invalid") invalid++;
        }
        if (stale > 0) drop("age", stale);
      });
      call.on("end", () => {
        release();
        if (ended) return;
        if (invalid > 0) options.log.debug("access log stream had entries keyward could not join", { invalid });
        callback(null, {});
      });
      call.on("close", release);
      call.on("error", (err) => {
        release();
        options.log.debug("access log stream ended with an error", { err });
      });
    },
  });
  const injector = grpcServer.createConnectionInjector(ServerCredentials.createInsecure());
  const listener = listen(options, limits, drop, (socket) => {
    injector.injectConnection(socket);
  });
  const port = await new Promise<number>((resolve, reject) => {
    listener.once("error", (err) => {
      reject(new KeywardError("ConfigInvalid", `access log service could not listen on ${options.address}: ${err.message}`, { cause: err }));
    });
    listener.listen(wanted, host, () => {
      const a = listener.address();
      resolve(typeof a === "object" && a ? a.port : wanted);
    });
  });
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        listener.close();
        let done = false;
        const finish = (): void => {
          if (done) return;
          done = true;
          injector.destroy();
          resolve();
        };
        grpcServer.tryShutdown(finish);
        injector.drain(2000);
        setTimeout(() => {
          grpcServer.forceShutdown();
          finish();
        }, 2000).unref();
      }),
  };
}

/**
 * The listening socket: cleartext, or mTLS with the peer's identity checked. Accepted connections
 * go to `accept`; refused ones are counted.
 */
function listen(options: AccessLogServerOptions, limits: AccessLogLimits, drop: (reason: AccessLogDrop) => void, accept: (socket: Socket) => void): NetServer {
  const tls = options.tls;
  let server: NetServer;
  if (tls) {
    const allowed = options.allowedPeers ?? [];
    const refused = new Set<string>();
    const tlsServer = createTlsServer({ ...tlsServerOptions(tls, 10_000), rejectUnauthorized: true, ALPNProtocols: ["h2"], noDelay: true }, (socket: TLSSocket) => {
      if (!socket.authorized) {
        drop("handshake");
        socket.destroy();
        return;
      }
      const cert = socket.getPeerX509Certificate();
      if (allowed.length > 0 && !peerAllowed(peerIdentities(cert), allowed)) {
        drop("peer");
        // Each refused identity is logged once (a bounded set): the counter tells how often.
        const who = cert?.subjectAltName ?? cert?.subject.replaceAll("\n", ", ") ?? "";
        if (!refused.has(who) && refused.size < MAX_REPORTED_PEERS) {
          refused.add(who);
          options.log.info("access log sender refused: its certificate names no allowed identity", { subjectAltName: who });
        }
        socket.destroy();
        return;
      }
      accept(socket);
    });
    followTls(tlsServer, tls);
    tlsServer.on("tlsClientError", () => {
      drop("handshake");
    });
    server = tlsServer;
  } else {
    server = createServer({ noDelay: true }, accept);
  }
  server.maxConnections = limits.maxConnections;
  server.on("drop", () => {
    drop("connections");
  });
  return server;
}
