// The bench fixture: deterministic keys, the ApiKey objects the watch would
// deliver for them, one policy, and the request mix the load generator sends.
//
// Key i is `kwb_` + base64url(sha256("keyward-bench/" + i)): any process can
// recompute any key without a shared file, and nothing here is a real secret.
import { createHash } from "node:crypto";
import type { ApiKey, ApiKeyPolicy } from "../../src/api/types.ts";
import type { CheckRequestMessage } from "../../src/authz/proto.ts";
import { seededRandom } from "../../test/support/random.ts";
import type { KeyIndex } from "../../src/index/keys.ts";

export const BENCH_NAMESPACE = "bench";
export const BENCH_HOST = "api.example.com";

export function keyFor(i: number): string {
  return `kwb_${createHash("sha256").update(`keyward-bench/${i}`).digest("base64url")}`;
}

export function hashHex(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

/** The ApiKey object for key i, as the watch delivers it once the operator has written its status. */
export function apiKeyObject(i: number, namespace = BENCH_NAMESPACE): ApiKey {
  const key = keyFor(i);
  const hash = `sha256:${hashHex(key)}`;
  const name = `k-${i}`;
  return {
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKey",
    metadata: { name, namespace, uid: `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`, labels: { tier: "pro" } },
    spec: { owner: `owner-${i % 1000}`, scopes: ["orders:read", "orders:write"], keyHash: hash },
    status: {
      state: "Active",
      keys: [{ id: `kwb_${i.toString(36).padStart(8, "0")}`, hash, state: "active", createdAt: "2026-01-01T00:00:00Z" }],
      conditions: [{ type: "Ready", status: "True", reason: "Issued", message: "key issued", lastTransitionTime: "2026-01-01T00:00:00Z" }],
    },
  };
}

/** Feeds keys 0..n-1 into an index, as n watch "add" events. */
export function fillIndex(index: Pick<KeyIndex, "apply">, n: number, namespace = BENCH_NAMESPACE): void {
  for (let i = 0; i < n; i++) index.apply("add", apiKeyObject(i, namespace));
}

/**
 * The policy every bench request hits: GET /v1/orders/* needs orders:read
 * (which every bench key has), anything under /v1/admin/** needs admin (which
 * none has: scope_missing).
 */
export function benchPolicy(namespace = BENCH_NAMESPACE): ApiKeyPolicy {
  return {
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKeyPolicy",
    metadata: { name: "bench", namespace },
    spec: {
      hosts: [BENCH_HOST],
      keys: { namespaces: ["*"] },
      rules: [
        { name: "read-orders", paths: ["/v1/orders/*"], methods: ["GET"], scopes: ["orders:read"] },
        { name: "write-orders", paths: ["/v1/orders"], methods: ["POST"], scopes: ["orders:write"] },
        { name: "admin", paths: ["/v1/admin/**"], scopes: ["admin"] },
      ],
    },
  };
}

/** The bench policy with a rate (1000/s, burst 1000) and a quota for every key it admits. */
export function policyWithLimits(quota = 1_000_000_000, namespace?: string): ApiKeyPolicy {
  const p = benchPolicy(namespace);
  return { ...p, spec: { ...p.spec, defaults: { rate: { requests: 1000, per: "1s", burst: 1000 }, quota: { requests: quota, per: "day" } } } };
}

export type Kind = "valid" | "unknown" | "scope_missing";

/** Deterministic PRNG, so every run sends the same requests. */
export const rng = seededRandom;

/** Headers shaped like those Envoy forwards for a typical API call. */
function envoyHeaders(key: string, r: () => number, path: string, method: string): Record<string, string> {
  const id = Math.floor(r() * 2 ** 48).toString(16).padStart(12, "0");
  return {
    ":authority": BENCH_HOST,
    ":method": method,
    ":path": path,
    ":scheme": "https",
    accept: "application/json",
    "user-agent": "acme-orders-client/2.3.1 (linux; node 24)",
    "x-api-key": key,
    "x-forwarded-for": "198.51.100.23",
    "x-forwarded-proto": "https",
    "x-request-id": `5f0c${id}-4e2a-4b7c-9d1e-${id}`,
    "x-envoy-expected-rq-timeout-ms": "15000",
  };
}

export function checkRequestFor(kind: Kind, key: string, r: () => number): CheckRequestMessage {
  const order = Math.floor(r() * 1e6);
  const path = kind === "scope_missing" ? `/v1/admin/orders/${order}` : `/v1/orders/${order}`;
  return {
    attributes: {
      source: { address: { socket_address: { address: "198.51.100.23" } } },
      request: { http: { method: "GET", host: BENCH_HOST, path, headers: envoyHeaders(key, r, path, "GET") } },
    },
  };
}

/**
 * `count` requests over an index of `nKeys` keys: 80% valid keys spread over the
 * whole index, 10% unknown keys, 10% valid keys on a route that needs a scope they
 * lack; shuffled with a fixed seed.
 */
export function requestMix(nKeys: number, count = 1000, seed = 42): { requests: CheckRequestMessage[]; kinds: Record<Kind, number>; order: Kind[] } {
  const r = rng(seed);
  const kinds: Kind[] = [];
  for (let i = 0; i < count; i++) kinds.push(i % 10 === 8 ? "unknown" : i % 10 === 9 ? "scope_missing" : "valid");
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [kinds[i], kinds[j]] = [kinds[j]!, kinds[i]!];
  }
  const tally: Record<Kind, number> = { valid: 0, unknown: 0, scope_missing: 0 };
  const requests = kinds.map((kind, i) => {
    tally[kind]++;
    const key = kind === "unknown" ? keyFor(-1 - i) : keyFor(Math.floor(r() * nKeys));
    return checkRequestFor(kind, key, r);
  });
  return { requests, kinds: tally, order: kinds };
}
