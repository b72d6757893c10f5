// Prototype of the proposed gRPC front: src/authz/grpc.ts's Check handler, with
//  - the service definition's requestDeserialize replaced by the lazy decoder
//    (bench/servers/lazy-decode.ts), and, with `cache`,
//  - encoded responses cached: a decision's CheckResponse depends only on its
//    reason, key entry, rule and the headers the key was found in, unless the key
//    has limits (RateLimit-* headers change with every call). Those answers are
//    serialized once and then handed to grpc-js as bytes (responseSerialize
//    passes a Buffer through). A watch event replaces the KeyEntry, so a
//    WeakMap keyed by it never serves a stale answer.
// Everything else is keyward's own code.
import * as grpc from "@grpc/grpc-js";
import { deny } from "../../src/authz/check.ts";
import { decide, type FrontOptions } from "../../src/authz/front.ts";
import { toCheckInput, toCheckResponse } from "../../src/authz/grpc.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckRequestMessage, type CheckResponseMessage } from "../../src/authz/proto.ts";
import type { Decision } from "../../src/authz/check.ts";
import type { KeyEntry } from "../../src/index/keys.ts";
import { decodeCheckRequest } from "./lazy-decode.ts";

type Encoded = Buffer;

/** Encoded CheckResponses by entry (or reason, for decisions without a key), then rule and stripped headers. */
export class ResponseCache {
  private readonly byEntry = new WeakMap<KeyEntry, Map<string, Encoded>>();
  private readonly byReason = new Map<string, Encoded>();
  private readonly encode: (d: Decision) => Encoded;
  constructor(encode: (d: Decision) => Encoded) {
    this.encode = encode;
  }
  get(d: Decision): Encoded | undefined {
    if (d.limit?.limit !== undefined) return undefined; // RateLimit-* headers vary per call
    const k = `${d.reason}\u0000${d.rule ? `${d.rule.policy.ref}\u0000${d.rule.name}` : ""}\u0000${d.removeHeaders.join(",")}\u0000${d.removeQueryParams.join(",")}`;
    let m: Map<string, Encoded> | undefined;
    if (d.entry) {
      m = this.byEntry.get(d.entry);
      if (!m) {
        m = new Map();
        this.byEntry.set(d.entry, m);
      }
    }
    const table = m ?? this.byReason;
    let b = table.get(k);
    if (!b) {
      b = this.encode(d);
      if (table.size < 64) table.set(k, b);
    }
    return b;
  }
}

export async function startLazyFront(o: FrontOptions, opts: { cache?: boolean } = {}): Promise<{ port: number }> {
  let node: unknown = grpc.loadPackageDefinition(loadProtos());
  for (const part of AUTHZ_SERVICE.split(".")) node = (node as Record<string, unknown>)[part];
  const loaded = (node as { service: grpc.ServiceDefinition }).service;
  const check = loaded.Check as grpc.MethodDefinition<CheckRequestMessage, CheckResponseMessage>;
  const serialize = check.responseSerialize;
  const svc: grpc.ServiceDefinition = {
    Check: {
      ...check,
      requestDeserialize: decodeCheckRequest,
      // Cached answers arrive already encoded.
      responseSerialize: (v: CheckResponseMessage | Buffer) => (Buffer.isBuffer(v) ? v : serialize(v)),
    },
  };
  const cache = opts.cache ? new ResponseCache((d) => serialize(toCheckResponse(d, o.response))) : undefined;
  const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
  server.addService(svc, {
    Check: (call: grpc.ServerUnaryCall<CheckRequestMessage, CheckResponseMessage>, cb: grpc.sendUnaryData<CheckResponseMessage | Buffer>) => {
      const t0 = performance.now();
      const done = decide(o, call.request, toCheckInput);
      const input = done.input;
      let d = done.decision;
      const cancelled = call.cancelled;
      let res: CheckResponseMessage | Buffer;
      try {
        res = cache?.get(d) ?? toCheckResponse(d, o.response);
      } catch (err) {
        o.onError(err);
        d = deny("internal_error");
        res = { status: { code: 13, message: "internal_error" } };
      }
      if (!cancelled) cb(null, res);
      o.onDecision(d, (performance.now() - t0) / 1000, input, cancelled);
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(o.address, grpc.ServerCredentials.createInsecure(), (err, p) => {
      if (err) reject(err);
      else resolve(p);
    });
  });
  return { port };
}
