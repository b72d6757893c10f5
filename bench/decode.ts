// Decoding one CheckRequest: proto-loader's deserializer (what keyward uses
// today) against the prototype in bench/servers/lazy-decode.ts. First proves
// the prototype yields the same CheckInput for every request of the bench mix,
// then times both, and the two ways of hashing a key.
//
//   node bench/decode.ts
import { createHash, hash } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { toCheckInput } from "../src/authz/grpc.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckRequestMessage } from "../src/authz/proto.ts";
import { requestMix, keyFor } from "./lib/fixture.ts";
import { decodeCheckRequest } from "./servers/lazy-decode.ts";
import { ResponseCache } from "./servers/lazy-front.ts";
import { Checker } from "../src/authz/check.ts";
import { toCheckResponse } from "../src/authz/grpc.ts";
import { PolicyIndex } from "../src/authz/policy.ts";
import { KeyIndex } from "../src/index/keys.ts";
import { Limiter } from "../src/limits/limiter.ts";
import { defaultConfig } from "../src/config/config.ts";
import { benchPolicy, fillIndex } from "./lib/fixture.ts";

export interface DecodeResult {
  requests: number;
  /** Decisions whose cached answer (bench/servers/lazy-front.ts) was compared byte for byte with a fresh one. */
  cacheCompared: number;
  protoLoaderNs: number;
  lazyNs: number;
  createHashNs: number;
  oneShotHashNs: number;
}

function checkMethod(): grpc.MethodDefinition<CheckRequestMessage, unknown> {
  let node: unknown = grpc.loadPackageDefinition(loadProtos());
  for (const part of AUTHZ_SERVICE.split(".")) node = (node as Record<string, unknown>)[part];
  return (node as { service: Record<string, grpc.MethodDefinition<CheckRequestMessage, unknown>> }).service.Check!;
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
    if (!same(m.requestDeserialize(b), decodeCheckRequest(b))) throw new Error("the lazy decoder disagrees with proto-loader");
  }
  // The encoded-response cache: every decision of the mix (through the lazy decoder and
  // keyward's Checker), answered from the cache and afresh, must be the same bytes.
  const index = new KeyIndex();
  fillIndex(index, 100_000);
  const policies = new PolicyIndex();
  policies.apply("add", benchPolicy());
  const checker = new Checker({ keys: index, policies, limiter: new Limiter(), now: Date.now, xffTrustedHops: 0 });
  const cfg = defaultConfig();
  const ro = { keyIdHeader: cfg.keyIdHeader.toLowerCase(), ownerHeader: cfg.ownerHeader.toLowerCase(), realm: cfg.authRealm };
  const encode = (d: Parameters<typeof toCheckResponse>[0]): Buffer => m.responseSerialize(toCheckResponse(d, ro));
  const cache = new ResponseCache(encode);
  let cacheCompared = 0;
  for (let round = 0; round < 2; round++) {
    for (const b of bufs) {
      const d = checker.check(toCheckInput(decodeCheckRequest(b)));
      const cached = cache.get(d);
      if (cached && !cached.equals(encode(d))) throw new Error(`a cached answer differs (${d.reason})`);
      if (cached) cacheCompared++;
    }
  }
  const keys = Array.from({ length: 1000 }, (_, i) => keyFor(i));
  const n = 200_000;
  const best = (fn: (i: number) => unknown): number => Math.min(bench(n, fn), bench(n, fn), bench(n, fn));
  return {
    requests: bufs.length,
    cacheCompared,
    protoLoaderNs: best((i) => m.requestDeserialize(bufs[i % 1000]!)),
    lazyNs: best((i) => decodeCheckRequest(bufs[i % 1000]!)),
    createHashNs: best((i) => createHash("sha256").update(keys[i % 1000]!).digest("hex")),
    oneShotHashNs: best((i) => hash("sha256", keys[i % 1000]!, "hex")),
  };
}

if (import.meta.main) console.log(JSON.stringify(runDecodeBench(), null, 2));
