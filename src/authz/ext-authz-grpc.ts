// The gRPC front end: envoy.service.auth.v3.Authorization/Check and
// grpc.health.v1.Health (Check and Watch), on one of two transports:
//   keyward  keyward's own HTTP/2 server (src/h2, src/grpc), the default
//   grpc-js  @grpc/grpc-js on node:http2
// Both answer every decodable Check with a CheckResponse, never a gRPC error;
// anything that throws on the way becomes a 500 denial. ADR 0023 says why the
// default is keyward's own.
import * as grpc from "@grpc/grpc-js";
import type { MethodDefinition, PackageDefinition, ServiceDefinition } from "@grpc/proto-loader";
import { KeywardError } from "../errors.ts";
import { GrpcError, GrpcServer, GrpcStatus, type GrpcMethod, type StreamCall } from "../grpc/over-h2.ts";
import type { H2Limits, H2Violation } from "../h2/limits.ts";
import { startH2Server } from "../h2/server.ts";
import type { TlsMaterial, TlsSource } from "../tls/source.ts";
import { deny, type CheckInput, type Decision } from "../check/decision.ts";
import { decodeCheckRequest } from "./decode.ts";
import { decide, type Decided, type FrontOptions } from "./front.ts";
import { checkMethod, checkResponder, provenResponder, toCheckInput, type CheckAnswer, type CheckProof } from "./check-messages.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckRequestMessage, type CheckResponseMessage } from "./proto.ts";

export const GRPC_TRANSPORTS = ["keyward", "grpc-js"] as const;
export type GrpcTransport = (typeof GRPC_TRANSPORTS)[number];

export interface GrpcFrontOptions extends FrontOptions {
  /** Default keyward. */
  transport?: GrpcTransport;
  /** keyward transport: HTTP/2 limits other than the defaults (src/h2/limits.ts). */
  h2Limits?: Partial<H2Limits>;
  /** keyward transport: a connection was closed for a flood (or refused past maxConnections). */
  onViolation?: (kind: H2Violation) => void;
  /** The proof added to each allowed answer's metadata for the access log service (ADR 0053); none without. */
  proof?: CheckProof;
}

export interface GrpcFront {
  port: number;
  /** Tells health watchers that readiness may have changed. */
  notifyHealth(): void;
  stop(): Promise<void>;
}

const HEALTH_SERVICE = "grpc.health.v1.Health";
/** grpc.health.v1.HealthCheckResponse.ServingStatus */
const SERVING = 1;
const NOT_SERVING = 2;
const SERVICE_UNKNOWN = 3;
/** How long stop() lets open calls finish before closing their connections. */
const STOP_GRACE_MS = 5000;
const MAX_MESSAGE = 4 * 1024 * 1024;

const INTERNAL_ANSWER: CheckResponseMessage = { status: { code: 13, message: "internal_error" } };

/** Decides one Check, reports it, and returns the answer to send (never throws; a Promise never rejects). */
function answerCheck(front: FrontOptions, respond: (d: Decision, input: CheckInput | undefined) => CheckAnswer, request: CheckRequestMessage, cancelled: () => boolean): CheckAnswer | Promise<CheckAnswer> {
  const t0 = performance.now();
  const answer = (done: Decided): CheckAnswer => {
    let d = done.decision;
    let res: CheckAnswer;
    try {
      res = respond(d, done.input);
    } catch (err) {
      front.onError(err);
      d = deny("internal_error");
      res = INTERNAL_ANSWER;
    }
    front.onDecision(d, (performance.now() - t0) / 1000, done.input, cancelled());
    return res;
  };
  const done = decide(front, request, toCheckInput);
  return done instanceof Promise ? done.then(answer) : answer(done);
}

/** Readiness as the health service reports it, and the services it knows. */
function healthOf(front: FrontOptions): { status: () => number; known: (service: string | undefined) => boolean } {
  return {
    status: () => (front.ready() ? SERVING : NOT_SERVING),
    known: (svc) => !svc || svc === AUTHZ_SERVICE,
  };
}

export function startGrpcFront(front: GrpcFrontOptions): Promise<GrpcFront> {
  return (front.transport ?? "keyward") === "grpc-js" ? startGrpcJsFront(front) : startKeywardFront(front);
}

function method(pkg: PackageDefinition, service: string, name: string): MethodDefinition<object, object> {
  const svc = pkg[service] as ServiceDefinition | undefined;
  const m = svc?.[name];
  if (!m) throw new Error(`${service}/${name} is not in the loaded protos`);
  return m;
}

async function startKeywardFront(front: GrpcFrontOptions): Promise<GrpcFront> {
  const pkg = loadProtos();
  const check = method(pkg, AUTHZ_SERVICE, "Check");
  const serialize = check.responseSerialize as (m: CheckResponseMessage) => Buffer;
  const respond = provenResponder(checkResponder(front.response, serialize), serialize, front.proof);
  // Watch takes and sends the same messages as Check.
  const hc = method(pkg, HEALTH_SERVICE, "Check");
  const healthRequest = (b: Buffer): { service?: string } => {
    try {
      const request: { service?: string } = hc.requestDeserialize(b);
      return request;
    } catch (err) {
      throw new GrpcError(GrpcStatus.INTERNAL, "request message could not be decoded", { cause: err });
    }
  };
  const healthAnswer = (status: number): Buffer => hc.responseSerialize({ status });
  const health = healthOf(front);
  const watchers = new Set<StreamCall>();

  const methods = new Map<string, GrpcMethod>([
    [
      `/${AUTHZ_SERVICE}/Check`,
      {
        kind: "unary",
        handle: (body) => {
          let request: CheckRequestMessage;
          try {
            // The headers map stays in `body` (LazyHeaders) until the check asks for a header; `body`
            // is this request's own bytes, unchanged until the answer is sent.
            request = decodeCheckRequest(body, true);
          } catch (err) {
            throw new GrpcError(GrpcStatus.INTERNAL, "request message could not be decoded", { cause: err });
          }
          const toBuffer = (res: CheckAnswer): Buffer => (Buffer.isBuffer(res) ? res : serialize(res));
          const res = answerCheck(front, respond, request, () => false);
          return res instanceof Promise ? res.then(toBuffer) : toBuffer(res);
        },
      },
    ],
    [
      `/${HEALTH_SERVICE}/Check`,
      {
        kind: "unary",
        handle: (body) => {
          if (!health.known(healthRequest(body).service)) throw new GrpcError(GrpcStatus.NOT_FOUND, "unknown service");
          return healthAnswer(health.status());
        },
      },
    ],
    [
      `/${HEALTH_SERVICE}/Watch`,
      {
        kind: "server-stream",
        open: (body, call) => {
          const known = health.known(healthRequest(body).service);
          if (!known) {
            call.write(healthAnswer(SERVICE_UNKNOWN));
            return;
          }
          call.write(healthAnswer(health.status()));
          watchers.add(call);
          call.onCancel = () => watchers.delete(call);
        },
      },
    ],
  ]);
  const grpcServer = new GrpcServer({ methods, maxMessage: MAX_MESSAGE, onError: front.onError });
  const server = await startH2Server({
    address: front.address,
    handler: grpcServer,
    limits: { ...front.h2Limits, maxBody: grpcServer.maxBody },
    onInternalError: front.onError,
    tls: front.tls,
    ...(front.onViolation ? { onViolation: front.onViolation } : {}),
  });
  let last = health.status();
  return {
    port: server.port,
    notifyHealth: () => {
      const now = health.status();
      if (now === last) return;
      last = now;
      for (const w of watchers) w.write(healthAnswer(now));
    },
    stop: async () => {
      for (const w of watchers) w.end();
      watchers.clear();
      await server.close(STOP_GRACE_MS);
    },
  };
}

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

async function startGrpcJsFront(front: GrpcFrontOptions): Promise<GrpcFront> {
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
