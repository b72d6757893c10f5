// The gRPC Access Log Service receiver: Envoy streams its HTTP access logs here
// (envoy.service.accesslog.v3.AccessLogService/StreamAccessLogs, configured as
// an envoy.access_loggers.http_grpc logger), and every entry that carries
// keyward's ext_authz metadata becomes an upstream answer for that key.
import { Server, ServerCredentials, loadPackageDefinition, type GrpcObject, type ServerReadableStream, type ServiceClientConstructor, type sendUnaryData } from "@grpc/grpc-js";
import { KeywardError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { DEFAULT_METADATA_NAMESPACES, joinEntry, type JoinKind, type JoinedEntry } from "./join.ts";
import { loadAccessLogProtos, type HttpLogEntry, type StreamAccessLogsMessage } from "./proto.ts";

export interface AccessLogServerOptions {
  address: string;
  /** One upstream answer joined to a key (never a request an authorizer denied). */
  onUpstream: (apikey: string, keyId: string, e: { at: number; responseCode: number; upstreamSeconds?: number }) => void;
  onEntry?: (result: JoinKind) => void;
  /** Every HTTP entry as received (the analytics rows, src/usage/access-rows.ts). */
  onHttpEntry?: (entry: HttpLogEntry) => void;
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

export async function startAccessLogServer(options: AccessLogServerOptions): Promise<AccessLogServer> {
  const now = options.now ?? Date.now;
  const namespaces = options.namespaces ?? DEFAULT_METADATA_NAMESPACES;
  const server = new Server({ "grpc.max_receive_message_length": 16 * 1024 * 1024 });
  const deliver = (j: JoinedEntry): void => {
    options.onUpstream(j.apikey, j.keyId, { at: j.at ?? now(), responseCode: j.responseCode, ...(j.upstreamSeconds !== undefined ? { upstreamSeconds: j.upstreamSeconds } : {}) });
  };
  server.addService(serviceOf(loadPackageDefinition(loadAccessLogProtos())).service, {
    StreamAccessLogs: (call: ServerReadableStream<StreamAccessLogsMessage, object>, callback: sendUnaryData<object>) => {
      let invalid = 0;
      call.on("data", (msg: StreamAccessLogsMessage) => {
        for (const entry of msg.http_logs?.log_entry ?? []) {
          let result: JoinKind;
          try {
            const j = joinEntry(entry, namespaces);
            result = j.kind;
            if (j.kind === "joined") deliver(j.entry);
          } catch (err) {
            result = "invalid";
            options.log.debug("access log entry could not be read", { err });
          }
          if (result === "invalid") invalid++;
          options.onEntry?.(result);
          try {
            options.onHttpEntry?.(entry);
          } catch (err) {
            options.log.debug("access log entry not recorded", { err });
          }
        }
      });
      call.on("end", () => {
        if (invalid > 0) options.log.debug("access log stream had entries keyward could not join", { invalid });
        callback(null, {});
      });
      call.on("error", (err) => {
        options.log.debug("access log stream ended with an error", { err });
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(options.address, ServerCredentials.createInsecure(), (err, p) => {
      if (err) reject(new KeywardError("ConfigInvalid", `access log service could not listen on ${options.address}: ${err.message}`, { cause: err }));
      else resolve(p);
    });
  });
  return {
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => {
          resolve();
        });
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000).unref();
      }),
  };
}
