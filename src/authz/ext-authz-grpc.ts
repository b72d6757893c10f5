// The gRPC front end: envoy.service.auth.v3.Authorization/Check and
// grpc.health.v1.Health (Check and Watch), on one of two transports:
//   keyward  keyward's own HTTP/2 server (src/h2, src/grpc), the default
//   grpc-js  @grpc/grpc-js on node:http2
// Both answer every decodable Check with a CheckResponse, never a gRPC error;
// anything that throws on the way becomes a 500 denial. ADR 0023 says why the
// default is keyward's own.
import type { MethodDefinition, PackageDefinition, ServiceDefinition } from "@grpc/proto-loader";
import { GrpcError, GrpcServer, GrpcStatus, type GrpcMethod, type StreamCall } from "../grpc/over-h2.ts";
import type { H2Limits, H2Violation } from "../h2/limits.ts";
import { startH2Server } from "../h2/server.ts";
import { deny, type CheckInput, type Decision } from "../check/decision.ts";
import { decodeCheckRequest } from "./decode.ts";
import { decide, type Decided, type FrontOptions } from "./front.ts";
import { checkResponder, provenResponder, toCheckInput, type CheckAnswer, type CheckProof } from "./check-messages.ts";
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

export const HEALTH_SERVICE = "grpc.health.v1.Health";
/** grpc.health.v1.HealthCheckResponse.ServingStatus */
const SERVING = 1;
const NOT_SERVING = 2;
export const SERVICE_UNKNOWN = 3;
/** How long stop() lets open calls finish before closing their connections. */
export const STOP_GRACE_MS = 5000;
export const MAX_MESSAGE = 4 * 1024 * 1024;

const INTERNAL_ANSWER: CheckResponseMessage = { status: { code: 13, message: "internal_error" } };

/** Decides one Check, reports it, and returns the answer to send (never throws; a Promise never rejects). */
export function answerCheck(front: FrontOptions, respond: (d: Decision, input: CheckInput | undefined) => CheckAnswer, request: CheckRequestMessage, cancelled: () => boolean): CheckAnswer | Promise<CheckAnswer> {
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
export function healthOf(front: FrontOptions): { status: () => number; known: (service: string | undefined) => boolean } {
  return {
    status: () => (front.ready() ? SERVING : NOT_SERVING),
    known: (svc) => !svc || svc === AUTHZ_SERVICE,
  };
}

/**
 * The gRPC front on its transport. grpc-js (and with it node:http2) loads only for the grpc-js
 * transport: the default never touches it, which keeps about 15 MiB of its code and node's
 * HTTP/2 out of the process.
 */
export async function startGrpcFront(front: GrpcFrontOptions): Promise<GrpcFront> {
  if ((front.transport ?? "keyward") !== "grpc-js") return startKeywardFront(front);
  const { startGrpcJsFront } = await import("./ext-authz-grpc-js.ts");
  return startGrpcJsFront(front);
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
