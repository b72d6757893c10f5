// The gRPC front on @grpc/grpc-js (--grpc-transport grpc-js, ADR 0023). Its own module, loaded
// only for that transport (ext-authz-grpc.ts imports it on demand), so the default transport
// never loads grpc-js or node:http2.
import * as grpc from "@grpc/grpc-js";
import { KeywardError } from "../errors.ts";
import type { TlsMaterial, TlsSource } from "../tls/source.ts";
import { checkMethod, checkResponder, provenResponder, type CheckAnswer } from "./check-messages.ts";
import { answerCheck, healthOf, HEALTH_SERVICE, MAX_MESSAGE, SERVICE_UNKNOWN, STOP_GRACE_MS, type GrpcFront, type GrpcFrontOptions } from "./ext-authz-grpc.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckRequestMessage, type CheckResponseMessage } from "./proto.ts";

function lookupService(pkg: grpc.GrpcObject, name: string): grpc.ServiceDefinition {
  let node: unknown = pkg;
  for (const part of name.split(".")) node = (node as Record<string, unknown>)[part];
  const svc = (node as { service?: grpc.ServiceDefinition } | undefined)?.service;
  if (!svc) throw new Error(`service ${name} is not in the loaded protos`);
  return svc;
}

/**
 * grpc-js credentials that follow a TlsSource: grpc-js sets each set the source loads as its
 * server's secure context. grpc-js accepts any certificate a client presents when client
 * certificates are optional, so that combination is refused (the keyward transport supports it).
 */
export function grpcJsCredentials(src: TlsSource | undefined): grpc.ServerCredentials {
  if (!src) return grpc.ServerCredentials.createInsecure();
  if (src.requestCert && !src.settings.requireClientCert) {
    throw new KeywardError("ConfigInvalid", "--grpc-transport grpc-js cannot make client certificates optional: set --tls-require-client-cert or use the keyward transport");
  }
  // Each grpc-js listener, and how to stop feeding it.
  const stops = new Map<unknown, () => void>();
  const follow = (fn: unknown, send: (m: TlsMaterial) => void): void => {
    stops.set(fn, src.subscribe(send));
    // grpc-js adds its server's watcher only after it has added these listeners: the current set is
    // delivered after that, or the server would never see it and would drop every connection.
    queueMicrotask(() => {
      send(src.current());
    });
  };
  const unfollow = (fn: unknown): void => {
    stops.get(fn)?.();
    stops.delete(fn);
  };
  const identity: grpc.experimental.CertificateProvider = {
    addIdentityCertificateListener: (fn) => {
      follow(fn, (m) => {
        fn({ certificate: m.cert, privateKey: m.key });
      });
    },
    removeIdentityCertificateListener: unfollow,
    addCaCertificateListener: (fn) => {
      follow(fn, (m) => {
        if (m.ca) fn({ caCertificate: m.ca });
      });
    },
    removeCaCertificateListener: unfollow,
  };
  // grpc-js's constructor takes the identity provider first, then the CA provider (or null).
  return grpc.experimental.createCertificateProviderServerCredentials(identity, src.requestCert ? identity : null, src.settings.requireClientCert);
}

export async function startGrpcJsFront(front: GrpcFrontOptions): Promise<GrpcFront> {
  const pkg = grpc.loadPackageDefinition(loadProtos());
  const server = new grpc.Server({ "grpc.max_receive_message_length": MAX_MESSAGE });
  const loaded = lookupService(pkg, AUTHZ_SERVICE);
  const check = checkMethod(loaded);
  const authz: grpc.ServiceDefinition = { ...loaded, Check: check };
  const serialize = (m: CheckResponseMessage): Buffer => check.responseSerialize(m);
  const respond = provenResponder(checkResponder(front.response, serialize), serialize, front.proof);
  const health = healthOf(front);

  server.addService(authz, {
    Check: (call: grpc.ServerUnaryCall<CheckRequestMessage, CheckAnswer>, cb: grpc.sendUnaryData<CheckAnswer>) => {
      const res = answerCheck(front, respond, call.request, () => call.cancelled);
      if (res instanceof Promise) {
        void res.then((r) => {
          if (!call.cancelled) cb(null, r);
        });
      } else if (!call.cancelled) cb(null, res);
    },
  });

  const watchers = new Set<grpc.ServerWritableStream<{ service?: string }, { status: number }>>();
  server.addService(lookupService(pkg, HEALTH_SERVICE), {
    Check: (call: grpc.ServerUnaryCall<{ service?: string }, { status: number }>, cb: grpc.sendUnaryData<{ status: number }>) => {
      if (!health.known(call.request.service)) {
        cb({ code: grpc.status.NOT_FOUND, details: "unknown service" });
        return;
      }
      cb(null, { status: health.status() });
    },
    Watch: (call: grpc.ServerWritableStream<{ service?: string }, { status: number }>) => {
      if (!health.known(call.request.service)) {
        call.write({ status: SERVICE_UNKNOWN });
        return;
      }
      call.write({ status: health.status() });
      watchers.add(call);
      call.on("cancelled", () => watchers.delete(call));
      call.on("close", () => watchers.delete(call));
    },
  });

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(front.address, grpcJsCredentials(front.tls), (err, p) => {
      if (err) reject(err);
      else resolve(p);
    });
  });
  let last = health.status();
  return {
    port,
    notifyHealth: () => {
      const now = health.status();
      if (now === last) return;
      last = now;
      for (const w of watchers) w.write({ status: now });
    },
    stop: () =>
      new Promise<void>((resolve) => {
        for (const w of watchers) w.end();
        watchers.clear();
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, STOP_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
