// Decoding one CheckRequest: proto-loader's deserializer against keyward's own
// (src/authz/decode.ts). First checks that keyward's decoder yields the same
// CheckInput for every request of the bench mix, and that every answer keyward's
// gRPC front serves from its encoded-response cache is byte for byte the one
// encoded afresh; then times both decoders, and the two ways of hashing a key.
//
//   node bench/decode.ts
import { createHash, hash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { Checker } from "../src/authz/check.ts";
import { decodeCheckRequest } from "../src/authz/decode.ts";
import { checkResponder, toCheckInput, toCheckResponse } from "../src/authz/check-messages.ts";
import { PolicyIndex } from "../src/policy/policy.ts";
import { decisionMetadata } from "../src/authz/response.ts";
import { createLogger } from "../src/log.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckRequestMessage, type CheckResponseMessage } from "../src/authz/proto.ts";
import { defaultConfig } from "../src/config/config.ts";
import { KeyIndex } from "../src/index/keys.ts";
import { Limiter } from "../src/limits/limiter.ts";
import { benchPolicy, fillIndex, keyFor, requestMix } from "./lib/fixture.ts";

export interface DecodeResult {
  requests: number;
  /** Decisions answered from keyward's encoded-response cache, each compared byte for byte with a fresh encoding. */
  cacheCompared: number;
  protoLoaderNs: number;
  /** src/authz/decode.ts */
  decoderNs: number;
  /** The same with the headers map left as byte ranges (what keyward's HTTP/2 front asks for), plus the two lookups a check makes. */
  lazyDecoderNs?: number;
  createHashNs: number;
  oneShotHashNs: number;
  /** Rendering and encoding the CheckResponse of a decision of the mix, afresh (toCheckResponse + proto-loader). */
  encodeNs: number;
  /** The same through keyward's checkResponder: from its cache. */
  cachedAnswerNs: number;
  /** A denial's "check" log line rendered whole (Logger.info), and from its prepared fixed part (Logger.prepare). */
  logLineNs: number;
  preparedLogLineNs: number;
}

function checkMethod(): grpc.MethodDefinition<CheckRequestMessage, CheckResponseMessage> {
  let node: unknown = grpc.loadPackageDefinition(loadProtos());
  for (const part of AUTHZ_SERVICE.split(".")) node = (node as Record<string, unknown>)[part];
  return (node as { service: Record<string, grpc.MethodDefinition<CheckRequestMessage, CheckResponseMessage>> }).service.Check!;
}

function same(a: CheckRequestMessage, b: CheckRequestMessage): boolean {
  const x = toCheckInput(a);
  const y = toCheckInput(b);
  const names = ["x-api-key", "authorization", "x-forwarded-for", "user-agent", ":path"];
  return (
    x.method === y.method &&
    x.host === y.host &&
    x.path === y.path &&
    x.peerAddress === y.peerAddress &&
    x.forwardedFor === y.forwardedFor &&
    names.every((n) => x.header(n) === y.header(n))
  );
}

function bench(n: number, fn: (i: number) => unknown): number {
  let sink = 0;
  for (let i = 0; i < n; i++) if (fn(i)) sink++; // warm up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (fn(i)) sink++;
  const ns = Number(process.hrtime.bigint() - t0) / n;
  if (sink < 0) console.log(sink);
  return Math.round(ns);
}

export function runDecodeBench(): DecodeResult {
  const m = checkMethod();
  const bufs = requestMix(100_000, 1000).requests.map((r) => m.requestSerialize(r));
  for (const b of bufs) {
    if (!same(m.requestDeserialize(b), decodeCheckRequest(b))) throw new Error("keyward's decoder disagrees with proto-loader");
  }
  // The encoded-response cache: every decision of the mix, answered from the cache
  // (the mix twice, so most answers come from it) and afresh, must be the same bytes.
  const index = new KeyIndex();
  fillIndex(index, 100_000);
  const policies = new PolicyIndex();
  policies.apply("add", benchPolicy());
  const checker = new Checker({ keys: index, policies, limiter: new Limiter(), now: Date.now, xffTrustedHops: 0 });
  const cfg = defaultConfig();
  const ro = { keyIdHeader: cfg.keyIdHeader.toLowerCase(), ownerHeader: cfg.ownerHeader.toLowerCase(), realm: cfg.authRealm };
  const encode = (d: Parameters<typeof toCheckResponse>[0]): Buffer => m.responseSerialize(toCheckResponse(d, ro));
  const respond = checkResponder(ro, (r) => m.responseSerialize(r));
  let cacheCompared = 0;
  for (let round = 0; round < 2; round++) {
    for (const b of bufs) {
      const d = checker.check(toCheckInput(decodeCheckRequest(b)));
      const answer = respond(d);
      const bytes = Buffer.isBuffer(answer) ? answer : m.responseSerialize(answer);
      if (!bytes.equals(encode(d))) throw new Error(`a cached answer differs (${d.reason})`);
      if (Buffer.isBuffer(answer)) cacheCompared++;
    }
  }
  const decisions = bufs.map((b) => checker.check(toCheckInput(decodeCheckRequest(b))));
  // Log lines as decisions.ts writes them for the mix's denials, to a sink that drops them.
  let written = 0;
  const log = createLogger({ level: "info", sink: (l) => (written += l.length) });
  const denials = decisions.filter((d) => d.status !== 200);
  const fixed = denials.map((d) => ({ front: "grpc", status: d.status, ...decisionMetadata(d) }));
  const prepared = fixed.map((f) => log.prepare("info", "check", f));
  const request = { method: "GET", host: "api.example.com", path: "/v1/orders/1" };
  const keys = Array.from({ length: 1000 }, (_, i) => keyFor(i));
  const n = 200_000;
  const best = (fn: (i: number) => unknown): number => Math.min(bench(n, fn), bench(n, fn), bench(n, fn));
  return {
    requests: bufs.length,
    cacheCompared,
    protoLoaderNs: best((i) => m.requestDeserialize(bufs[i % 1000]!)),
    decoderNs: best((i) => decodeCheckRequest(bufs[i % 1000]!)),
    lazyDecoderNs: best((i) => {
      const input = toCheckInput(decodeCheckRequest(bufs[i % 1000]!, true));
      return [input.header("x-api-key"), input.forwardedFor];
    }),
    createHashNs: best((i) => createHash("sha256").update(keys[i % 1000]!).digest("hex")),
    oneShotHashNs: best((i) => hash("sha256", keys[i % 1000]!, "hex")),
    encodeNs: best((i) => encode(decisions[i % 1000]!)),
    cachedAnswerNs: best((i) => respond(decisions[i % 1000]!)),
    logLineNs: best((i) => {
      log.info("check", { ...fixed[i % fixed.length]!, ...request });
      return written;
    }),
    preparedLogLineNs: best((i) => {
      prepared[i % prepared.length]!(request);
      return written;
    }),
  };
}

if (import.meta.main) console.log(JSON.stringify(runDecodeBench(), null, 2));
