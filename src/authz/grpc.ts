// The gRPC front end: envoy.service.auth.v3.Authorization/Check and
// grpc.health.v1.Health. Every Check is answered with a CheckResponse, never a
// gRPC error; anything that throws on the way becomes a 500 denial.
import * as grpc from "@grpc/grpc-js";
import type { CheckInput, Decision } from "./check.ts";
import { deny } from "./check.ts";
import { decodeCheckRequest } from "./decode.ts";
import { decide, type FrontOptions } from "./front.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckRequestMessage, type CheckResponseMessage, type HeaderValueOption, type StructValue } from "./proto.ts";
import { grpcCodeFor } from "./reasons.ts";
import { DecisionCache, responseVariant, type DecisionCacheLimits } from "./response-cache.ts";
import { decisionMetadata, denialBody, denialHeaders, okHeaders, okResponseHeaders, responseVaries, type HeaderList, type ResponseOptions } from "./response.ts";

/** Envoy's HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD. */
const OVERWRITE = 2;

export interface GrpcFront {
  port: number;
  /** Tells health watchers that readiness may have changed. */
  notifyHealth(): void;
  stop(): Promise<void>;
}

function headerLookup(http: NonNullable<NonNullable<CheckRequestMessage["attributes"]>["request"]>["http"]): (n: string) => string | undefined {
  const h = http?.headers;
  const list = http?.header_map?.headers;
  if (list && list.length > 0) {
    // Envoy's encode_raw_headers form: repeated entries, values as bytes.
    const m = new Map<string, string>();
    for (const e of list) {
      if (!e.key) continue;
      const k = e.key.toLowerCase();
      const v = e.raw_value ? Buffer.from(e.raw_value).toString("utf8") : (e.value ?? "");
      const prev = m.get(k);
      m.set(k, prev === undefined ? v : `${prev},${v}`);
    }
    return (n) => m.get(n);
  }
  if (!h) return () => undefined;
  return (n) => (Object.hasOwn(h, n) ? h[n] : undefined);
}

export function toCheckInput(req: CheckRequestMessage): CheckInput {
  const attrs = req.attributes;
  const http = attrs?.request?.http;
  const header = headerLookup(http);
  return {
    method: http?.method,
    host: http?.host,
    path: http?.path,
    header,
    peerAddress: attrs?.source?.address?.socket_address?.address,
    forwardedFor: header("x-forwarded-for"),
  };
}

const hv = (list: HeaderList, append?: number): HeaderValueOption[] =>
  list.map(([key, value]) => (append === undefined ? { header: { key, value } } : { header: { key, value }, append_action: append }));

export function toStruct(m: Record<string, string | readonly string[]>): { fields: Record<string, StructValue> } {
  const fields: Record<string, StructValue> = {};
  for (const [k, v] of Object.entries(m)) {
    fields[k] = typeof v === "string" ? { stringValue: v } : { listValue: { values: v.map((s) => ({ stringValue: s })) } };
  }
  return { fields };
}

/** Renders a Decision as Envoy's CheckResponse. */
export function toCheckResponse(d: Decision, o: ResponseOptions): CheckResponseMessage {
  const metadata = toStruct(decisionMetadata(d));
  if (d.status === 200) {
    return {
      status: { code: 0 },
      ok_response: {
        headers: hv(okHeaders(d, o), OVERWRITE),
        headers_to_remove: [...d.removeHeaders],
        response_headers_to_add: hv(okResponseHeaders(d), OVERWRITE),
        query_parameters_to_remove: [...d.removeQueryParams],
      },
      dynamic_metadata: metadata,
    };
  }
  return {
    status: { code: grpcCodeFor(d.status), message: d.reason },
    denied_response: { status: { code: d.status }, headers: hv(denialHeaders(d, o)), body: denialBody(d.status) },
    dynamic_metadata: metadata,
  };
}

/** A CheckResponse, or one already encoded. */
export type CheckAnswer = CheckResponseMessage | Buffer;

/**
 * Renders decisions as CheckResponses, encoded once and then answered from a
 * DecisionCache whenever the response is a pure function of the decision (see
 * responseVaries); the others (keys with limits) as messages to encode afresh.
 */
export function checkResponder(o: ResponseOptions, serialize: (m: CheckResponseMessage) => Buffer, limits?: DecisionCacheLimits): (d: Decision) => CheckAnswer {
  const cache = new DecisionCache<Buffer>((d) => serialize(toCheckResponse(d, o)), limits);
  return (d) => (responseVaries(d) ? toCheckResponse(d, o) : cache.get(d, responseVariant(d)));
}

/** The Check method as loaded, decoding requests with decode.ts and passing encoded answers through. */
export function checkMethod(loaded: grpc.ServiceDefinition): grpc.MethodDefinition<CheckRequestMessage, CheckAnswer> {
  const m = loaded.Check as grpc.MethodDefinition<CheckRequestMessage, CheckResponseMessage>;
  const serialize = m.responseSerialize;
  return {
    ...m,
    // decode.ts keeps only what toCheckInput reads.
    requestDeserialize: decodeCheckRequest,
    responseSerialize: (v: CheckAnswer) => (Buffer.isBuffer(v) ? v : serialize(v)),
  };
}

export async function startGrpcFront(o: FrontOptions): Promise<GrpcFront> {
  const pkg = grpc.loadPackageDefinition(loadProtos());
  const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
  const loaded = lookupService(pkg, AUTHZ_SERVICE);
  const check = checkMethod(loaded);
  const authz: grpc.ServiceDefinition = { ...loaded, Check: check };
  const health = lookupService(pkg, "grpc.health.v1.Health");
  const respond = checkResponder(o.response, (m) => check.responseSerialize(m));

  server.addService(authz, {
    Check: (call: grpc.ServerUnaryCall<CheckRequestMessage, CheckAnswer>, cb: grpc.sendUnaryData<CheckAnswer>) => {
      const t0 = performance.now();
      const done = decide(o, call.request, toCheckInput);
      const input = done.input;
      let d = done.decision;
      const cancelled = call.cancelled;
      let res: CheckAnswer;
      try {
        res = respond(d);
      } catch (err) {
        o.onError(err);
        d = deny("internal_error");
        res = { status: { code: 13, message: "internal_error" } };
      }
      if (!cancelled) cb(null, res);
      o.onDecision(d, (performance.now() - t0) / 1000, input, cancelled);
    },
  });

  const watchers = new Set<grpc.ServerWritableStream<{ service?: string }, { status: number }>>();
  const status = (): number => (o.ready() ? 1 : 2);
  const known = (svc: string | undefined): boolean => !svc || svc === AUTHZ_SERVICE;
  server.addService(health, {
    Check: (call: grpc.ServerUnaryCall<{ service?: string }, { status: number }>, cb: grpc.sendUnaryData<{ status: number }>) => {
      if (!known(call.request.service)) {
        cb({ code: grpc.status.NOT_FOUND, details: "unknown service" });
        return;
      }
      cb(null, { status: status() });
    },
    Watch: (call: grpc.ServerWritableStream<{ service?: string }, { status: number }>) => {
      if (!known(call.request.service)) {
        call.write({ status: 3 });
        return;
      }
      call.write({ status: status() });
      watchers.add(call);
      call.on("cancelled", () => watchers.delete(call));
      call.on("close", () => watchers.delete(call));
    },
  });

  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(o.address, grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err) reject(err);
      else resolve(p);
    });
  });
  let last = status();
  return {
    port,
    notifyHealth: () => {
      const now = status();
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
        }, 5000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}

function lookupService(pkg: grpc.GrpcObject, name: string): grpc.ServiceDefinition {
  let node: unknown = pkg;
  for (const part of name.split(".")) node = (node as Record<string, unknown>)[part];
  const svc = (node as { service?: grpc.ServiceDefinition } | undefined)?.service;
  if (!svc) throw new Error(`service ${name} is not in the loaded protos`);
  return svc;
}
