// keyward's data plane against a real control plane, running with its own RBAC
// (a ServiceAccount token that can read ApiKeys and ApiKeyPolicies only).
// The test plays the operator: it writes ApiKey status through /status.
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KubeRest, KubeApiError } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import {
  authzClient,
  checkRequest,
  createKey,
  createPolicy,
  deleteKey,
  nginxStyleCheck,
  patchKeySpec,
  percentile,
  startAuthzEnv,
  summarize,
  writeKeyStatus,
  type AuthzEnv,
} from "../conformance/harness.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";

const HOST = "orders.example.com";

describe("authz data plane", () => {
  let env: AuthzEnv;
  let ns: string;
  let other: string;
  let client: ReturnType<typeof authzClient>;
  // Every log line the data plane writes, at debug level, to prove no key ever reaches them.
  const logLines: string[] = [];
  const keysUsed: string[] = [];

  beforeAll(async () => {
    env = await startAuthzEnv(inject("kubeconfig"), {}, createLogger({ level: "debug", sink: (l) => logLines.push(l) }));
    ns = await createTestNamespace(env.adminKc, "authz");
    other = await createTestNamespace(env.adminKc, "authz-other");
    client = authzClient(env.authz.grpcPort);
    await createPolicy(env.admin, ns, "orders", {
      hosts: [HOST, `*.${HOST}`],
      credentials: { headers: ["x-api-key"], bearer: true, queryParams: ["api_key"] },
      keys: { namespaces: [ns, other], selector: { matchLabels: { tier: "pro" } } },
      rules: [
        { name: "read", paths: ["/v1/orders", "/v1/orders/*"], methods: ["GET"], scopes: ["orders:read"] },
        { name: "write", paths: ["/v1/orders"], methods: ["POST"], scopes: ["orders:write"] },
        { name: "rest", paths: ["/**"], scopes: ["orders:admin"] },
      ],
    });
  });

  afterAll(async () => {
    client.close();
    await env.stop();
    await deleteNamespace(env.adminKc, ns);
    await deleteNamespace(env.adminKc, other);
  });

  const check = async (path: string, headers: Record<string, string>, more: { method?: string; source?: string; host?: string } = {}) => {
    for (const v of Object.values(headers)) keysUsed.push(v.replace(/^Bearer /, ""));
    for (const m of path.matchAll(/api_key=([^&]*)/g)) keysUsed.push(decodeURIComponent(m[1] ?? ""));
    return summarize(await client.check(checkRequest({ host: more.host ?? HOST, path, headers, method: more.method, source: more.source })));
  };

  /** Polls until the key's first Check returns `status`, so tests start after the watch delivered it. */
  const until = (path: string, headers: Record<string, string>, status: number) =>
    eventually(async () => ((await check(path, headers)).httpStatus === status ? true : undefined), 10_000, `status ${status}`);

  it("runs with a token that can read ApiKeys but gets 403 on Secrets", async () => {
    const rest = new KubeRest(env.authzKc);
    try {
      const list = await rest.request<{ items: unknown[] }>("GET", "/apis/keyward.dev/v1alpha1/apikeys");
      expect(Array.isArray(list.items)).toBe(true);
      for (const path of ["/api/v1/secrets", `/api/v1/namespaces/${ns}/secrets`]) {
        const err = await rest.request("GET", path).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(KubeApiError);
        expect((err as KubeApiError).status).toBe(403);
      }
    } finally {
      rest.close();
    }
    expect(await client.health()).toBe(1);
  });

  it("allows a valid key with key id and owner headers, strips the key and reports metadata", async () => {
    const k = await createKey(env.admin, ns, "reader", { owner: "acme", scopes: ["orders:read"] }, { tier: "pro" });
    await until("/v1/orders/1", { "x-api-key": k.key }, 200);
    const r = await check("/v1/orders/1", { "x-api-key": k.key, "x-keyward-owner": "spoofed" });
    expect(r.code).toBe(0);
    expect(r.headers).toEqual({ "x-keyward-key-id": k.id, "x-keyward-owner": "acme" });
    expect(r.headersToRemove).toEqual(["x-api-key"]);
    expect(r.metadata).toMatchObject({ decision: "allowed", reason: "ok", key_id: k.id, owner: "acme", scopes: ["orders:read"], policy: `${ns}/orders`, rule: "read" });
    const q = await check(`/v1/orders?api_key=${encodeURIComponent(k.key)}&page=2`, {});
    expect(q).toMatchObject({ code: 0, queryToRemove: ["api_key"] });
    const b = await check("/v1/orders", { authorization: `Bearer ${k.key}` });
    expect(b).toMatchObject({ code: 0, headersToRemove: ["authorization"] });
    // Two different keys in one request: always refused.
    const other = await createKey(env.admin, ns, "reader-2", { scopes: ["orders:read"] }, { tier: "pro" });
    await until("/v1/orders", { "x-api-key": other.key }, 200);
    for (let i = 0; i < 3; i++) {
      expect(await check("/v1/orders", { "x-api-key": k.key, authorization: `Bearer ${other.key}` })).toMatchObject({ httpStatus: 401, metadata: { reason: "conflicting_keys" } });
    }
  });

  it("answers 401, 403 and no-policy denials with the right statuses and reason codes", async () => {
    const reader = await createKey(env.admin, ns, "scoped", { scopes: ["orders:read"] }, { tier: "pro" });
    const foreign = await createKey(env.admin, other, "foreign", { scopes: ["orders:read"] }, { tier: "free" });
    const sourced = await createKey(env.admin, ns, "sourced", { scopes: ["orders:read"], allowedSources: ["198.51.100.0/24", "2001:db8::/32"] }, { tier: "pro" });
    await until("/v1/orders", { "x-api-key": reader.key }, 200);
    await until("/v1/orders", { "x-api-key": foreign.key }, 403);
    await until("/v1/orders", { "x-api-key": sourced.key }, 403);

    const missing = await check("/v1/orders", {});
    expect(missing).toMatchObject({ code: 16, httpStatus: 401, metadata: { reason: "missing_key" } });
    expect(missing.headers["www-authenticate"]).toBe('Bearer realm="keyward"');
    const unknown = await check("/v1/orders", { "x-api-key": "kwt_not-a-key" });
    expect(unknown).toMatchObject({ code: 16, httpStatus: 401, metadata: { reason: "unknown_key" } });
    expect(unknown.headers["www-authenticate"]).toBe('Bearer realm="keyward", error="invalid_token"');

    expect(await check("/v1/orders", { "x-api-key": reader.key }, { method: "POST" })).toMatchObject({ code: 7, httpStatus: 403, metadata: { reason: "scope_missing", rule: "write" } });
    expect(await check("/v1/orders", { "x-api-key": foreign.key })).toMatchObject({ httpStatus: 403, metadata: { reason: "wrong_tenant" } });
    expect(await check("/v1/orders", { "x-api-key": sourced.key })).toMatchObject({ httpStatus: 403, metadata: { reason: "source_not_allowed" } });
    expect(await check("/v1/orders", { "x-api-key": sourced.key }, { source: "198.51.100.20" })).toMatchObject({ httpStatus: 200 });
    expect(await check("/v1/orders", { "x-api-key": sourced.key }, { source: "2001:db8:5::1" })).toMatchObject({ httpStatus: 200 });
    expect(await check("/v1/orders", { "x-api-key": sourced.key }, { source: "::ffff:198.51.100.20" })).toMatchObject({ httpStatus: 200 });
    // Spellings that parsers read differently are refused, not guessed at.
    for (const source of ["198.051.100.20", "2001:db8:5::1%eth0", " 198.51.100.20"]) {
      expect(await check("/v1/orders", { "x-api-key": sourced.key }, { source })).toMatchObject({ httpStatus: 403, metadata: { reason: "source_unknown" } });
    }
    expect(await check("/v1/orders", { "x-api-key": reader.key }, { host: "unknown.example.com" })).toMatchObject({ code: 7, httpStatus: 403, metadata: { reason: "no_policy" } });
  });

  it("gives unknown, disabled, expired and ended-grace keys one identical answer", async () => {
    const dis = await createKey(env.admin, ns, "same-dis", { scopes: ["orders:read"], disabled: true }, { tier: "pro" });
    const exp = await createKey(env.admin, ns, "same-exp", { scopes: ["orders:read"], expiresAt: "2020-01-01T00:00:00Z" }, { tier: "pro" });
    const gr = await createKey(env.admin, ns, "same-grace", { scopes: ["orders:read"] }, { tier: "pro" });
    await writeKeyStatus(env.admin, ns, "same-grace", [{ id: gr.id, hash: gr.hash, state: "grace", expiresAt: "2020-01-01T00:00:00Z" }], "Rotating");
    const reasons = { "kwt_never-issued": "unknown_key", [dis.key]: "key_disabled", [exp.key]: "key_expired", [gr.key]: "key_grace_ended" };
    const seen = await eventually(
      async () => {
        const out = await Promise.all(Object.keys(reasons).map((key) => check("/v1/orders", { "x-api-key": key })));
        return out.every((r, i) => r.metadata.reason === Object.values(reasons)[i]) ? out : undefined;
      },
      10_000,
      "all four reasons",
    );
    const visible = new Set(seen.map((r) => JSON.stringify([r.code, r.httpStatus, r.headers, r.body])));
    expect(visible.size).toBe(1);
  });

  it("admits exactly the burst and exactly the quota under many concurrent checks", async () => {
    const rate = await createKey(env.admin, ns, "burst", { scopes: ["orders:read"], limits: { rate: { requests: 40, per: "24h", burst: 40 } } }, { tier: "pro" });
    const quota = await createKey(env.admin, ns, "quota", { scopes: ["orders:read"], limits: { quota: { requests: 25, per: "day" } } }, { tier: "pro" });
    // Both keys must be indexed before counting. A request the key has no scope for
    // (403, not 401) proves it is indexed without spending any of its limits.
    for (const k of [rate, quota]) {
      await eventually(async () => ((await check("/admin", { "x-api-key": k.key }, { method: "DELETE" })).httpStatus === 403 ? true : undefined), 10_000, "key indexed");
    }
    for (const [k, admitted, reason] of [
      [rate, 40, "rate_limited"],
      [quota, 25, "quota_exceeded"],
    ] as const) {
      const results = await Promise.all(Array.from({ length: 200 }, () => check("/v1/orders", { "x-api-key": k.key })));
      const ok = results.filter((r) => r.httpStatus === 200).length;
      expect(ok).toBe(admitted);
      const limited = results.filter((r) => r.httpStatus === 429);
      expect(limited.length).toBe(200 - admitted);
      expect(limited[0]!.metadata.reason).toBe(reason);
      expect(limited[0]!.code).toBe(8);
      expect(Number(limited[0]!.headers["retry-after"])).toBeGreaterThan(0);
      expect(limited[0]!.headers).toMatchObject({ "ratelimit-limit": String(admitted), "ratelimit-remaining": "0" });
      expect(Number(limited[0]!.headers["ratelimit-reset"])).toBeGreaterThan(0);
    }
  });

  it("denies a disabled, deleted or expired key within one second (100 revocations)", async () => {
    const latencies: number[] = [];
    const modes = ["disable", "delete", "expire"] as const;
    for (let i = 0; i < 100; i++) {
      const mode = modes[i % 3]!;
      const name = `rev-${i}`;
      const k = await createKey(env.admin, ns, name, { scopes: ["orders:read"] }, { tier: "pro" });
      await until("/v1/orders", { "x-api-key": k.key }, 200);
      const t0 = performance.now();
      if (mode === "disable") await patchKeySpec(env.admin, ns, name, { disabled: true });
      else if (mode === "delete") await deleteKey(env.admin, ns, name);
      else await patchKeySpec(env.admin, ns, name, { expiresAt: new Date(Date.now() - 1000).toISOString() });
      const deadline = t0 + 1000;
      let denied = false;
      while (performance.now() < deadline) {
        const r = await check("/v1/orders", { "x-api-key": k.key });
        if (r.httpStatus === 401) {
          denied = true;
          break;
        }
        await new Promise((res) => setImmediate(res));
      }
      expect(denied, `${mode} #${i} denied within 1 s`).toBe(true);
      latencies.push(performance.now() - t0);
      if (mode !== "delete") await deleteKey(env.admin, ns, name);
    }
    latencies.sort((a, b) => a - b);
    const fmt = (n: number): string => n.toFixed(1);
    console.log(
      `revocation latency over ${latencies.length} revocations (apiserver write to first denied Check): p50 ${fmt(percentile(latencies, 50))} ms, p99 ${fmt(percentile(latencies, 99))} ms, max ${fmt(latencies[latencies.length - 1] ?? NaN)} ms`,
    );
    expect(percentile(latencies, 99)).toBeLessThan(1000);
  });

  it("expires a key by the clock without any watch event", async () => {
    const soon = new Date(Date.now() + 60_000).toISOString();
    const k = await createKey(env.admin, ns, "clock", { scopes: ["orders:read"], expiresAt: soon }, { tier: "pro" });
    await until("/v1/orders", { "x-api-key": k.key }, 200);
    env.clock.offsetMs = 61_000;
    try {
      expect(await check("/v1/orders", { "x-api-key": k.key })).toMatchObject({ httpStatus: 401, metadata: { reason: "key_expired" } });
    } finally {
      env.clock.offsetMs = 0;
    }
  });

  it("serves the same decisions over HTTP", async () => {
    const k = await createKey(env.admin, ns, "http", { scopes: ["orders:read"] }, { tier: "pro" });
    await until("/v1/orders", { "x-api-key": k.key }, 200);
    const port = env.authz.httpPort!;
    const get = (headers: Record<string, string>, method = "GET") => nginxStyleCheck(port, { method, host: HOST, uri: "/v1/orders/7" }, headers);
    const ok = await get({ "x-api-key": k.key });
    expect(ok.status).toBe(200);
    expect(ok.headers["x-keyward-key-id"]).toBe(k.id);
    expect(ok.headers["x-keyward-owner"]).toBe("acme");
    const no = await get({});
    expect(no.status).toBe(401);
    expect(no.headers["www-authenticate"]).toBe('Bearer realm="keyward"');
    const bad = await get({ "x-api-key": "kwt_nope" });
    expect(bad.status).toBe(401);
    expect(bad.body).toBe((await get({ "x-api-key": "kwt_other-nope" })).body);
    expect((await get({ "x-api-key": k.key }, "DELETE")).status).toBe(403);
  });

  it("counts decisions by outcome and reason, and reports the index size", async () => {
    const text = await env.registry.metrics();
    const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
    expect(value(/keyward_authz_decisions_total\{outcome="allowed",reason="ok",front="grpc"\} (\d+)/)).toBeGreaterThan(100);
    expect(value(/keyward_authz_decisions_total\{outcome="unauthenticated",reason="key_disabled",front="grpc"\} (\d+)/)).toBeGreaterThan(0);
    expect(value(/keyward_authz_decisions_total\{outcome="limited",reason="rate_limited",front="grpc"\} (\d+)/)).toBe(160);
    expect(value(/keyward_authz_decisions_total\{outcome="allowed",reason="ok",front="http"\} (\d+)/)).toBeGreaterThan(0);
    expect(value(/keyward_authz_check_duration_seconds_count\{front="grpc"\} (\d+)/)).toBeGreaterThan(100);
    expect(value(/keyward_authz_index_policies (\d+)/)).toBeGreaterThanOrEqual(1);
    expect(value(/keyward_authz_index_keys (\d+)/)).toBeGreaterThanOrEqual(10);
    expect(value(/keyward_authz_watch_events_total\{resource="apikeys",event="list"\} (\d+)/)).toBe(1);
  });

  it("never writes a key to its logs, at debug level, over every check above", () => {
    const secrets = [...new Set(keysUsed)].filter((k) => k.length >= 20);
    expect(secrets.length).toBeGreaterThan(100);
    expect(logLines.length).toBeGreaterThan(100);
    const all = logLines.join("\n");
    for (const k of secrets) expect(all.includes(k), "a key appeared in the logs").toBe(false);
    expect(logLines.some((l) => l.includes('"reason":"ok"') && l.includes('"key_id"'))).toBe(true);
  });
});
