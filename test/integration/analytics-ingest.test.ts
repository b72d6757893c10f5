// Every request on record, end to end: a real Envoy (deploy/envoy/ext-authz-accesslog.yaml)
// asks keyward's ext_authz gRPC port and streams its access log to keyward's access log
// service; the usage service hands rows and key records to a writer that records them.
// With the access log on, an allowed request's row carries the upstream's answer (status,
// latency, body sizes), a request keyward denied is a row from its check and never an
// upstream answer (Envoy's UAEX entry), and every request is exactly one row. With the
// access log off, the decision alone is the row. Requests without a known key are no row,
// and no row holds the key.
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { KubeConfig } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { RecordingWriter } from "../../src/analytics/fixtures.test-support.ts";
import type { RequestRow } from "../../src/analytics/row.ts";
import { startAuthz } from "../../src/authz/service.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { silentLogger } from "../../src/log.ts";
import { startUsage, type UsageHandle } from "../../src/usage/service.ts";
import { applyUsageRbac } from "../conformance/go-als/env.ts";
import { authzKubeConfig, createKey, createPolicy, deleteKey, type TestKey } from "../conformance/harness.ts";
import { startEnvoy } from "../e2e/envoy.ts";
import { freePort } from "../e2e/nginx.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { alsTls } from "../support/als-tls.ts";

const HOST = "ledger.example.com";

/** A request through Envoy on its own connection: the status. */
function send(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<number> {
  return new Promise((res, rej) => {
    const req = request({ host: "127.0.0.1", port, method, path, agent: false, headers: { host: HOST, ...headers } }, (r) => {
      r.resume();
      r.on("end", () => { res(r.statusCode ?? 0); });
    });
    req.on("error", rej);
    req.end(body);
  });
}

interface Stack {
  ns: string;
  buyer: TestKey;
  limited: TestKey;
  writer: RecordingWriter;
  registry: Registry;
  usage: UsageHandle;
  envoyPort: number;
  /** Rows with this path (each request of the tests has a path of its own). */
  rowsAt(path: string): RequestRow[];
  stop(): Promise<void>;
}

async function startStack(adminKc: KubeConfig, admin: KubeRest, accessLog: boolean): Promise<Stack> {
  const undo: (() => Promise<unknown>)[] = [];
  const stop = async (): Promise<void> => {
    for (const f of undo.reverse()) await f();
  };
  try {
    const kc = await authzKubeConfig(adminKc, admin);
    const ns = await createTestNamespace(adminKc, accessLog ? "rows-als" : "rows-checks");
    undo.push(() => deleteNamespace(adminKc, ns));
    await createPolicy(admin, ns, "ledger", {
      hosts: [HOST],
      credentials: { headers: ["x-api-key"], queryParams: ["api_key"] },
      rules: [{ name: "entries", paths: ["/entries/**"], methods: ["GET", "POST"] }],
    });
    const buyer = await createKey(admin, ns, "buyer", { owner: "team-a", scopes: ["entries:write"] }, { tier: "gold" });
    const limited = await createKey(admin, ns, "limited", { owner: "team-b", limits: { rate: { requests: 1, per: "1h" } } });

    const app: Server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        res.writeHead(req.method === "POST" ? 201 : 200, { "content-type": "text/plain" });
        res.end("created");
      });
    });
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", () => { r(); }));
    undo.push(() => new Promise<void>((r) => app.close(() => { r(); })));
    const als = await alsTls();
    undo.push(() => als.remove());

    const writer = new RecordingWriter();
    const registry = new Registry();
    const config = defaultConfig({
      grpcAddress: "127.0.0.1:0",
      httpAuthAddress: "",
      metricsAddress: "",
      namespaces: [ns],
      usageStatus: false,
      usageAlerts: false,
      accessLogAddress: accessLog ? "127.0.0.1:0" : "",
      analyticsFlushInterval: 50,
      // Every row is counted here: none shed while this busy process's thread waits for a CPU (ADR 76).
      analyticsShedRunDelay: 0,
      ...(accessLog ? als.config : {}),
    });
    const usageRest = new KubeRest(kc, { qps: 0 });
    const usage = await startUsage({ config, kc, rest: usageRest, log: silentLogger, registry, decisionLogSink: () => undefined, analyticsWriter: writer });
    undo.push(async () => {
      await usage.stop();
      usageRest.close();
    });
    const authzRest = new KubeRest(kc, { qps: 0 });
    const authz = await startAuthz({
      config,
      kc,
      rest: authzRest,
      log: silentLogger,
      registry: new Registry(),
      onDecision: (front, d, seconds, input, cancelled) => { usage.onDecision(front, d, seconds, input, cancelled); },
    });
    undo.push(async () => {
      await authz.stop();
      authzRest.close();
    });
    const envoy = await startEnvoy("ext-authz-accesslog.yaml", {
      ...als.envoyVars,
      APP_ADDRESS: "127.0.0.1",
      APP_PORT: (app.address() as AddressInfo).port,
      KEYWARD_ADDRESS: "127.0.0.1",
      KEYWARD_PORT: authz.grpcPort,
      // Without keyward's access log service, Envoy's stream goes nowhere.
      ACCESS_LOG_PORT: usage.accessLogPort ?? (await freePort()),
    });
    undo.push(() => envoy.stop());
    await eventually(() => (authz.ready() && usage.ready() ? true : undefined), 20_000, "the watches");
    await eventually(async () => ((await send(envoy.port, "GET", "/entries/warm-up", { "x-api-key": buyer.key })) === 200 ? true : undefined), 20_000, "the key allowed through Envoy");
    return { ns, buyer, limited, writer, registry, usage, envoyPort: envoy.port, rowsAt: (path) => writer.rows.filter((r) => r.path === path), stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** The rows of `path` once `n` are there (the access log arrives after the answer), flushing the queue. */
async function rowsOf(s: Stack, path: string, n: number): Promise<RequestRow[]> {
  return eventually(async () => {
    await s.usage.flush();
    const got = s.rowsAt(path);
    return got.length >= n ? got : undefined;
  }, 10_000, `${n} row(s) of ${path}`);
}

/** Starts a stack before the suite's tests and stops it after them; `admin` is the cluster admin's client. */
function suiteStack(accessLog: boolean): { stack: () => Stack; admin: () => KubeRest } {
  let admin: KubeRest | undefined;
  let s: Stack | undefined;
  beforeAll(async () => {
    const adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    await applyUsageRbac(admin);
    s = await startStack(adminKc, admin, accessLog);
  });
  afterAll(async () => {
    await s?.stop();
    admin?.close();
  });
  const get = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error("the stack did not start");
    return v;
  };
  return { stack: () => get(s), admin: () => get(admin) };
}

describe("analytics rows with Envoy's access log", () => {
  const suite = suiteStack(true);
  let s: Stack;
  beforeAll(() => {
    s = suite.stack();
  });

  it("joins the upstream's answer to an allowed request's row, once", async () => {
    expect(await send(s.envoyPort, "POST", "/entries/new-1", { "x-api-key": s.buyer.key, "content-type": "text/plain" }, "0123456789")).toBe(201);
    const [row, ...more] = await rowsOf(s, "/entries/new-1", 1);
    expect(more).toEqual([]);
    expect(row).toMatchObject({
      keyId: s.buyer.id,
      front: "grpc",
      policy: `${s.ns}/ledger`,
      rule: "entries",
      route: "POST /entries/**",
      method: "POST",
      host: HOST,
      outcome: "allowed",
      reason: "ok",
      status: 200,
      source: "127.0.0.1",
      network: "127.0.0.0/24",
      country: "private",
      upstreamStatus: 201,
      requestBytes: 10,
      responseBytes: 7,
    });
    expect(row?.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(row?.upstreamMicros).toBeGreaterThan(0);
    expect(row?.checkMicros).toBeGreaterThanOrEqual(0);
    // The key record that goes with it: owner, labels and scopes from the ApiKey.
    const rec = s.writer.keys.find((k) => k.uid === row?.uid);
    expect(rec).toMatchObject({ namespace: s.ns, name: "buyer", owner: "team-a", labels: { tier: "gold" }, scopes: ["entries:write"] });
  });

  it("makes a request keyward denied a row from its check, never an upstream answer (Envoy's UAEX entry)", async () => {
    const before = await s.registry.getSingleMetric("keyward_upstream_responses_total")?.get();
    expect(await send(s.envoyPort, "GET", "/entries/lim-1", { "x-api-key": s.limited.key })).toBe(200);
    expect(await send(s.envoyPort, "GET", "/entries/lim-2", { "x-api-key": s.limited.key })).toBe(429);
    const [allowed] = await rowsOf(s, "/entries/lim-1", 1);
    expect(allowed).toMatchObject({ status: 200, upstreamStatus: 200 });
    // Envoy has logged the denial once the access log shows it.
    await eventually(async () => ((await s.registry.getSingleMetric("keyward_access_log_entries_total")?.get())?.values.some((v) => v.labels.result === "denied" && v.value >= 1) ? true : undefined), 10_000, "Envoy's UAEX entry");
    const denied = await rowsOf(s, "/entries/lim-2", 1);
    expect(denied).toHaveLength(1);
    expect(denied[0]).toMatchObject({ keyId: s.limited.id, outcome: "limited", reason: "rate_limited", status: 429, route: "GET /entries/**" });
    expect(denied[0]?.requestId).toMatch(/^[0-9a-f-]{36}$/);
    for (const field of ["upstreamStatus", "upstreamMicros", "requestBytes", "responseBytes"]) expect(denied[0]).not.toHaveProperty(field);
    const after = await s.registry.getSingleMetric("keyward_upstream_responses_total")?.get();
    const fourxx = (m: typeof after) => m?.values.find((v) => v.labels.class === "4xx")?.value ?? 0;
    expect(fourxx(after)).toBe(fourxx(before));
  });

  it("never makes a row without a known key, never holds the key, and counts no request twice", async () => {
    expect(await send(s.envoyPort, "GET", "/entries/unknown", { "x-api-key": "kwt_not_a_key_at_all" })).toBe(401);
    expect(await send(s.envoyPort, "GET", `/entries/q-1?api_key=${encodeURIComponent(s.buyer.key)}&page=2`, {})).toBe(200);
    await rowsOf(s, "/entries/q-1", 1);
    await s.usage.flush();
    expect(s.rowsAt("/entries/unknown")).toEqual([]);
    const ids = s.writer.rows.map((r) => r.requestId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(s.rowsAt("/entries/q-1")).toHaveLength(1);
    const everything = JSON.stringify([s.writer.rows, s.writer.keys]);
    expect(everything).not.toContain(s.buyer.key);
    expect(everything).not.toContain(encodeURIComponent(s.buyer.key));
    expect(everything).not.toContain(s.limited.key);
  });

  it("keeps a deleted ApiKey's record, marked deleted", async () => {
    await deleteKey(suite.admin(), s.ns, "limited");
    const rec = await eventually(async () => {
      await s.usage.flush();
      return s.writer.keys.find((k) => k.name === "limited" && k.deletedAt !== undefined);
    }, 10_000, "the deleted key's record");
    expect(rec).toMatchObject({ namespace: s.ns, owner: "team-b" });
  });
});

describe("analytics rows without the access log", () => {
  const suite = suiteStack(false);
  let s: Stack;
  beforeAll(() => {
    s = suite.stack();
  });

  it("makes the decision alone the row, allowed or denied", async () => {
    expect(await send(s.envoyPort, "POST", "/entries/new-2", { "x-api-key": s.buyer.key }, "abc")).toBe(201);
    expect(await send(s.envoyPort, "GET", "/entries/lim-3", { "x-api-key": s.limited.key })).toBe(200);
    expect(await send(s.envoyPort, "GET", "/entries/lim-4", { "x-api-key": s.limited.key })).toBe(429);
    const [ok] = await rowsOf(s, "/entries/new-2", 1);
    expect(ok).toMatchObject({ keyId: s.buyer.id, status: 200, route: "POST /entries/**", country: "private" });
    expect(ok).not.toHaveProperty("upstreamStatus");
    expect(ok?.checkMicros).toBeGreaterThan(0);
    expect((await rowsOf(s, "/entries/lim-4", 1))[0]).toMatchObject({ status: 429, reason: "rate_limited" });
    await s.usage.flush();
    for (const p of ["/entries/new-2", "/entries/lim-3", "/entries/lim-4"]) expect(s.rowsAt(p), p).toHaveLength(1);
  });
});
