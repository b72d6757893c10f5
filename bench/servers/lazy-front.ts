// Prototype of the proposed gRPC front: src/authz/grpc.ts's Check handler, with
// the service definition's requestDeserialize replaced by the lazy decoder
// (bench/servers/lazy-decode.ts). Everything after decoding is keyward's own code.
import * as grpc from "@grpc/grpc-js";
import { deny } from "../../src/authz/check.ts";
import { decide, type FrontOptions } from "../../src/authz/front.ts";
import { toCheckInput, toCheckResponse } from "../../src/authz/grpc.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckRequestMessage, type CheckResponseMessage } from "../../src/authz/proto.ts";
import { decodeCheckRequest } from "./lazy-decode.ts";

export async function startLazyFront(o: FrontOptions): Promise<{ port: number }> {
  let node: unknown = grpc.loadPackageDefinition(loadProtos());
  for (const part of AUTHZ_SERVICE.split(".")) node = (node as Record<string, unknown>)[part];
  const loaded = (node as { service: grpc.ServiceDefinition }).service;
  const check = loaded.Check as grpc.MethodDefinition<CheckRequestMessage, CheckResponseMessage>;
  const svc: grpc.ServiceDefinition = { Check: { ...check, requestDeserialize: decodeCheckRequest } };
  const server = new grpc.Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
  server.addService(svc, {
    Check: (call: grpc.ServerUnaryCall<CheckRequestMessage, CheckResponseMessage>, cb: grpc.sendUnaryData<CheckResponseMessage>) => {
      const t0 = performance.now();
      const done = decide(o, call.request, toCheckInput);
      const input = done.input;
      let d = done.decision;
      const cancelled = call.cancelled;
      let res: CheckResponseMessage;
      try {
        res = toCheckResponse(d, o.response);
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
