// Check over gRPC, whatever the transport: a CheckRequest becomes a CheckInput,
// a Decision becomes Envoy's CheckResponse (encoded once per decision where the
// answer is a pure function of it). The servers are in ext-authz-grpc.ts.
import type * as grpc from "@grpc/grpc-js";
import type { CheckInput, Decision } from "../check/decision.ts";
import { decodeCheckRequest } from "./decode.ts";
import type { CheckRequestMessage, CheckResponseMessage, HeaderValueOption, StructValue } from "./proto.ts";
import { grpcCodeFor } from "../check/reasons.ts";
import { PROOF_FIELD } from "../accesslog/proof.ts";
import { DecisionCache, responseVariant, type DecisionCacheLimits } from "./response-cache.ts";
import { decisionMetadata, denialBody, denialHeaders, okHeaders, okResponseHeaders, responseVaries, type HeaderList, type ResponseOptions } from "./response.ts";

/** Envoy's HeaderValueOption.HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD. */
const OVERWRITE = 2;

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
  const lazy = http?.lazy_headers;
  if (lazy) return (n) => lazy.get(n);
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
export function toCheckResponse(d: Decision, responseOptions: ResponseOptions): CheckResponseMessage {
  const metadata = toStruct(decisionMetadata(d));
  if (d.status === 200) {
    return {
      status: { code: 0 },
      ok_response: {
        headers: hv(okHeaders(d, responseOptions), OVERWRITE),
        headers_to_remove: [...d.removeHeaders],
        response_headers_to_add: hv(okResponseHeaders(d), OVERWRITE),
        query_parameters_to_remove: [...d.removeQueryParams],
      },
      dynamic_metadata: metadata,
    };
  }
  return {
    status: { code: grpcCodeFor(d.status), message: d.reason },
    denied_response: { status: { code: d.status }, headers: hv(denialHeaders(d, responseOptions)), body: denialBody(d.status) },
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
export function checkResponder(responseOptions: ResponseOptions, serialize: (m: CheckResponseMessage) => Buffer, limits?: DecisionCacheLimits): (d: Decision) => CheckAnswer {
  const cache = new DecisionCache<Buffer>((d) => serialize(toCheckResponse(d, responseOptions)), limits);
  return (d) => (responseVaries(d) ? toCheckResponse(d, responseOptions) : cache.get(d, responseVariant(d)));
}

/** Adds a proof (src/accesslog/proof.ts) to an answer's dynamic metadata, or returns it unchanged. */
export type CheckProof = (d: Decision, input: CheckInput | undefined) => string | undefined;

/**
 * `respond` with the proof of each allowed request added to its dynamic metadata. An encoded answer
 * (shared, from the cache) gets a second encoded CheckResponse holding only the proof appended:
 * protobuf merges the two dynamic_metadata fields, so the cached bytes stay as they are.
 */
export function provenResponder(respond: (d: Decision) => CheckAnswer, serialize: (m: CheckResponseMessage) => Buffer, proof: CheckProof | undefined): (d: Decision, input: CheckInput | undefined) => CheckAnswer {
  if (!proof) return (d) => respond(d);
  return (d, input) => {
    const res = respond(d);
    const p = proof(d, input);
    if (p === undefined) return res;
    const field = { [PROOF_FIELD]: { stringValue: p } };
    // Only the field to merge: no status, which would replace the answer's.
    if (Buffer.isBuffer(res)) return Buffer.concat([res, serialize({ dynamic_metadata: { fields: field } } as unknown as CheckResponseMessage)]);
    return { ...res, dynamic_metadata: { fields: { ...res.dynamic_metadata?.fields, ...field } } };
  };
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
