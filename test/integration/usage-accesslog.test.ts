// Upstream outcome per key: a real Check through keyward's ext_authz server
// (asked by the Go client on go-control-plane's types) yields the dynamic
// metadata Envoy would keep; an independent Go client on go-control-plane's
// accesslog types streams HTTP access log entries carrying that metadata to
// keyward's Access Log Service receiver, and the upstream answers land on the
// right key: in status.usage.daily, in the metrics, and as an alert Event.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createKey, createPolicy, startAuthzEnv, type AuthzEnv, type TestKey } from "../conformance/harness.ts";
import { applyUsageRbac, buildAlsClient, startTestUsage, type TestUsage } from "../conformance/go-als/env.ts";
import { buildTools, run } from "../conformance/tools.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { eventsFor, getApiKey } from "../support/operator.ts";

const HOST = "als.example.com";

describe("Envoy access logs joined to keys", () => {
  let env: AuthzEnv;
  let usage: TestUsage;
  let ns: string;
  let key: TestKey;
  let alsBin: string;
  let checkBin: string;

  beforeAll(async () => {
    [alsBin, checkBin] = await Promise.all([buildAlsClient(), buildTools().then((d) => join(d, "keyward-conformance-go"))]);
    env = await startAuthzEnv(inject("kubeconfig"));
    await applyUsageRbac(env.admin);
    ns = await createTestNamespace(env.adminKc, "usage-als");
    await createPolicy(env.admin, ns, "api", { hosts: [HOST], credentials: { headers: ["x-api-key"] }, rules: [{ name: "read", paths: ["/items/**"], methods: ["GET"], scopes: ["items:read"] }] });
    key = await createKey(env.admin, ns, "shipper", { owner: "logistics", scopes: ["items:read"] });
    usage = await startTestUsage(env.authzKc, { namespaces: [ns], accessLogAddress: "127.0.0.1:0" });
    await eventually(() => (usage.handle.ready() ? true : undefined), 10_000, "the usage watch");
  });

  afterAll(async () => {
    await usage.stop();
    await env.stop();
    await deleteNamespace(env.adminKc, ns);
  });

  it("streams entries from a go-control-plane client, joins them through the ext_authz metadata, and counts upstream answers per key", async () => {
    const port = usage.handle.accessLogPort;
    expect(port).toBeGreaterThan(0);
    // The metadata a real Check returns, as Envoy would file it for the access log.
    const checked = await eventually(async () => {
      const out = await run(checkBin, ["-addr", `127.0.0.1:${env.authz.grpcPort}`], JSON.stringify({ name: "ok", method: "GET", host: HOST, path: "/items/1", headers: { "x-api-key": key.key }, source: "192.0.2.10" }) + "\n");
      const o = JSON.parse(out.trim()) as { code: number; dynamicMetadata?: Record<string, unknown> };
      return o.code === 0 ? o : undefined;
    }, 10_000, "the key to be accepted");
    expect(checked.dynamicMetadata).toMatchObject({ key_id: key.id, apikey: `${ns}/shipper`, owner: "logistics" });

    const lines: string[] = [];
    for (let i = 0; i < 97; i++) lines.push(JSON.stringify({ metadata: checked.dynamicMetadata, status: 200, upstreamMs: 12, method: "GET", authority: HOST, path: `/items/${i}` }));
    for (let i = 0; i < 3; i++) lines.push(JSON.stringify({ metadata: checked.dynamicMetadata, status: 503, upstreamMs: 40, method: "GET", authority: HOST, path: "/items/x" }));
    lines.push(JSON.stringify({ metadata: { decision: "unauthenticated", reason: "missing_key" }, status: 401, method: "GET", authority: HOST, path: "/items/y" }));
    // A key in the query string of an entry's path: it must not travel anywhere.
    lines.push(JSON.stringify({ metadata: checked.dynamicMetadata, status: 200, upstreamMs: 5, method: "GET", authority: HOST, path: `/items/1?api_key=${key.key}` }));
    const out = await run(alsBin, ["-addr", `127.0.0.1:${String(port)}`, "-batch", "7"], lines.join("\n") + "\n");
    expect(JSON.parse(out)).toEqual({ sent: 102, messages: 15 });

    await usage.handle.flush();
    const ak = await eventually(async () => {
      const got = await getApiKey(env.admin, ns, "shipper");
      return got?.status?.usage?.daily?.[0]?.upstream2xx === 98 ? got : undefined;
    }, 10_000, "upstream counts in status");
    expect(ak.status?.usage?.daily?.[0]).toMatchObject({ upstream2xx: 98, upstream5xx: 3 });

    const metrics = await usage.registry.metrics();
    expect(metrics).toContain('keyward_upstream_responses_total{class="2xx"} 98');
    expect(metrics).toContain('keyward_upstream_responses_total{class="5xx"} 3');
    expect(metrics).toContain('keyward_access_log_entries_total{result="joined"} 101');
    expect(metrics).toContain('keyward_access_log_entries_total{result="unattributed"} 1');
    expect(metrics).toMatch(/keyward_upstream_duration_seconds_count 101/);

    // Upstream-error alerts come from the analytics store's evaluator (test/integration/analytics-alerts.test.ts).
    const events = await eventsFor(env.admin, ns, "shipper");
    const everything = [JSON.stringify(ak), metrics, ...usage.logs, JSON.stringify(events)].join("\n");
    expect(everything).not.toContain(key.key);
  });

  it("never counts a request the ext_authz server denied (Envoy's own 429, flagged UAEX) as an upstream answer", async () => {
    const limited = await createKey(env.admin, ns, "limited", { owner: "logistics", scopes: ["items:read"], limits: { rate: { requests: 1, per: "1h" } } });
    const check = async (): Promise<{ code: number; dynamicMetadata?: Record<string, unknown> }> => {
      const out = await run(checkBin, ["-addr", `127.0.0.1:${env.authz.grpcPort}`], JSON.stringify({ name: "l", method: "GET", host: HOST, path: "/items/1", headers: { "x-api-key": limited.key }, source: "192.0.2.10" }) + "\n");
      return JSON.parse(out.trim()) as { code: number; dynamicMetadata?: Record<string, unknown> };
    };
    const allowed = await eventually(async () => {
      const o = await check();
      return o.code === 0 ? o : undefined;
    }, 10_000, "the limited key to be accepted once");
    const denied = await check();
    expect(denied.code).toBe(8); // RESOURCE_EXHAUSTED: Envoy answers 429 itself
    expect(denied.dynamicMetadata).toMatchObject({ key_id: limited.id, apikey: `${ns}/limited`, decision: "limited", reason: "rate_limited" });

    const before = counters(await usage.registry.metrics());
    const lines = [JSON.stringify({ metadata: allowed.dynamicMetadata, status: 200, upstreamMs: 9, method: "GET", authority: HOST, path: "/items/1" })];
    for (let i = 0; i < 5; i++) lines.push(JSON.stringify({ metadata: denied.dynamicMetadata, status: 429, unauthorized: true, method: "GET", authority: HOST, path: "/items/1" }));
    // The UAEX flag alone (metadata without keyward's decision) is enough.
    const { decision: _d, reason: _r, ...keyOnly } = denied.dynamicMetadata ?? {};
    lines.push(JSON.stringify({ metadata: keyOnly, status: 429, unauthorized: true, method: "GET", authority: HOST, path: "/items/1" }));
    expect(JSON.parse(await run(alsBin, ["-addr", `127.0.0.1:${String(usage.handle.accessLogPort)}`, "-batch", "3"], lines.join("\n") + "\n"))).toEqual({ sent: 7, messages: 3 });

    await usage.handle.flush();
    const ak = await eventually(async () => {
      const got = await getApiKey(env.admin, ns, "limited");
      return got?.status?.usage?.daily?.[0]?.upstream2xx === 1 ? got : undefined;
    }, 10_000, "the allowed request's upstream answer in status");
    expect(ak.status?.usage?.daily?.[0]?.upstream4xx).toBeUndefined();
    const after = counters(await usage.registry.metrics());
    expect(delta(before, after, 'keyward_access_log_entries_total{result="denied"}')).toBe(6);
    expect(delta(before, after, 'keyward_access_log_entries_total{result="joined"}')).toBe(1);
    expect(delta(before, after, 'keyward_upstream_responses_total{class="4xx"}')).toBe(0);
    expect(delta(before, after, 'keyward_upstream_responses_total{class="2xx"}')).toBe(1);
  });
});

/** Counter values by series, from the Prometheus text format. */
function counters(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(\w+(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m?.[1] && m[2]) out.set(m[1], Number(m[2]));
  }
  return out;
}

function delta(before: Map<string, number>, after: Map<string, number>, series: string): number {
  return (after.get(series) ?? 0) - (before.get(series) ?? 0);
}
