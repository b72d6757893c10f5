// keyward's check handler in process, without a socket: what one Envoy-shaped Check allocates
// and how often the young generation is collected for it, at a given number of keys. The same
// steps as a Check on the gRPC front: decode the request, check it, take the encoded answer,
// record the decision (counter, histogram, log line for denials).
//
// Each key count runs in two child processes: one with 64 MB semi-spaces, where batches of
// checks with no collection in between give the bytes allocated per check; one with the chart's
// Node.js options, counting the scavenges (and longer collections) over a fixed number of checks.
// Both are counts, not times, so they compare across runs on a busy machine.
//
//   node bench/check-alloc.ts [--keys 10,10000] [--checks 300000]
import { spawnSync } from "node:child_process";
import { PerformanceObserver, constants } from "node:perf_hooks";
import { parseArgs } from "node:util";
import type * as grpc from "@grpc/grpc-js";
import { Registry } from "prom-client";
import { Checker } from "../src/authz/check.ts";
import { checkResponder, toCheckInput } from "../src/authz/check-messages.ts";
import { decisionRecorder, type DecisionListener } from "../src/authz/decisions.ts";
import { decodeCheckRequest } from "../src/authz/decode.ts";
import { decide } from "../src/authz/front.ts";
import { createAuthzMetrics } from "../src/authz/metrics.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckRequestMessage, type CheckResponseMessage } from "../src/authz/proto.ts";
import { defaultConfig } from "../src/config/config.ts";
import { KeyIndex } from "../src/index/keys.ts";
import { Limiter } from "../src/limits/limiter.ts";
import { createLogger } from "../src/log.ts";
import { PolicyIndex } from "../src/policy/policy.ts";
import { chartNodeOptions } from "./check.ts";
import { benchPolicy, checkRequestFor, fillIndex, keyFor, rng } from "./lib/fixture.ts";

export interface AllocResult {
  keys: number;
  /** Young-generation bytes per check (64 MB semi-spaces, batches without a collection). */
  bytesPerCheck: number;
  /** Over `checks` checks with the chart's Node.js options. */
  checks: number;
  scavenges: number;
  /** Mark-compacts and other collections that are not scavenges. */
  otherCollections: number;
}

/** One Check as the gRPC front runs it, over an index of `keys` keys; every key is sent in turn. `listener`: what else hears each decision (bench/analytics-thread.ts). */
export function handler(keys: number, listener?: DecisionListener): { bodies: Buffer[]; check: (body: Buffer) => void } {
  const index = new KeyIndex();
  fillIndex(index, keys);
  const policies = new PolicyIndex();
  policies.apply("add", benchPolicy());
  const metrics = createAuthzMetrics(new Registry(), { keys: () => index.size, apiKeys: () => index.apiKeyCount, policies: () => policies.table.policyCount });
  const config = defaultConfig();
  const response = { keyIdHeader: config.keyIdHeader.toLowerCase(), ownerHeader: config.ownerHeader.toLowerCase(), realm: config.authRealm };
  const checker = new Checker({ keys: index, policies, limiter: new Limiter(), now: Date.now, xffTrustedHops: config.xffTrustedHops });
  const method = (loadProtos()[AUTHZ_SERVICE] as grpc.ServiceDefinition).Check!;
  const respond = checkResponder(response, method.responseSerialize as (m: CheckResponseMessage) => Buffer);
  const onDecision = decisionRecorder({ front: "grpc", metrics, log: createLogger({ level: "info" }), ...(listener ? { listener } : {}) });
  const front = { address: "", checker, response, ready: () => true, onDecision, onError: (err: unknown) => { throw err; } };
  const r = rng(7);
  const serialize = method.requestSerialize as (m: CheckRequestMessage) => Buffer;
  const bodies = Array.from({ length: Math.max(1000, keys) }, (_, i) => serialize(checkRequestFor("valid", keyFor(i % keys), r)));
  const check = (body: Buffer): void => {
    const t0 = performance.now();
    // The front decodes the bytes it received, its own copy.
    const done = decide(front, decodeCheckRequest(Buffer.from(body), true), toCheckInput);
    if (done instanceof Promise) throw new Error("the bench policy has no limits: the check answers at once");
    if (done.decision.status !== 200) throw new Error(`the bench request was denied: ${done.decision.reason}`);
    respond(done.decision);
    onDecision(done.decision, (performance.now() - t0) / 1000, done.input, false);
  };
  return { bodies, check };
}

async function child(mode: string, keys: number, checks: number): Promise<void> {
  const { bodies, check } = handler(keys);
  let at = 0;
  const next = (): Buffer => bodies[at++ % bodies.length]!;
  // Three passes: every key's first request and the JIT's compilations before measuring.
  for (let i = 0; i < 3 * bodies.length; i++) check(next());
  const collections: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) collections.push((e as { detail?: { kind?: number } }).detail?.kind ?? 0);
  });
  obs.observe({ entryTypes: ["gc"] });
  // gc entries reach the observer asynchronously, after the synchronous checks that caused them.
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));
  if (mode === "bytes") {
    const perBatch: number[] = [];
    for (let b = 0; b < 40; b++) {
      await settle();
      const seen = collections.length;
      const before = process.memoryUsage().heapUsed;
      for (let i = 0; i < 2000; i++) check(next());
      const after = process.memoryUsage().heapUsed;
      await settle();
      if (collections.length === seen && after > before) perBatch.push((after - before) / 2000);
    }
    perBatch.sort((a, b) => a - b);
    const mid = perBatch[Math.floor(perBatch.length / 2)];
    if (mid === undefined) throw new Error("every batch saw a collection");
    process.stdout.write(`${JSON.stringify({ bytesPerCheck: Math.round(mid) })}\n`);
  } else {
    await settle();
    collections.length = 0;
    for (let i = 0; i < checks; i++) check(next());
    await settle();
    const minor = collections.filter((k) => k === constants.NODE_PERFORMANCE_GC_MINOR).length;
    process.stdout.write(`${JSON.stringify({ scavenges: minor, otherCollections: collections.length - minor })}\n`);
  }
  obs.disconnect();
}

function runChild(flags: string[], mode: string, keys: number, checks: number): Record<string, number> {
  const r = spawnSync(process.execPath, [...flags, import.meta.filename, "--child", mode, "--keys", String(keys), "--checks", String(checks)], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  if (r.status !== 0) throw new Error(`check-alloc child (${mode}, ${keys} keys) exited with ${String(r.status)}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, number>;
}

export function checkAlloc(keys: number, checks: number): AllocResult {
  const bytes = runChild(["--max-semi-space-size=64", "--min-semi-space-size=64"], "bytes", keys, checks);
  const gc = runChild(chartNodeOptions(), "gc", keys, checks);
  return { keys, bytesPerCheck: bytes.bytesPerCheck!, checks, scavenges: gc.scavenges!, otherCollections: gc.otherCollections! };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { keys: { type: "string", default: "10,10000" }, checks: { type: "string", default: "300000" }, child: { type: "string" } } });
  if (values.child) await child(values.child, Number(values.keys), Number(values.checks));
  else for (const k of values.keys.split(",")) console.log(JSON.stringify(checkAlloc(Number(k), Number(values.checks))));
}
