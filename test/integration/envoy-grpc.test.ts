// End to end through a real Envoy 1.40 on deploy/envoy/ext-authz.yaml, the configuration
// docs/authz.md ("Envoy") shows: its gRPC ext_authz filter asks keyward about every
// request to an application that echoes what it received, its file access log carries
// keyward's dynamic metadata, and its gRPC access logger feeds keyward's Access Log Service
// receiver. One keyward (data plane and usage service) and one Envoy for the whole file;
// the last test stops keyward.
import { credentials, loadPackageDefinition, type ClientWritableStream, type GrpcObject, type ServiceClientConstructor } from "@grpc/grpc-js";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createPolicy, httpRequest, startAuthzEnv, type AuthzEnv, type HttpAnswer, type TestKey } from "../conformance/harness.ts";
import { applyUsageRbac, startTestUsage, type TestUsage } from "../conformance/go-als/env.ts";
import { startEnvoy, type Envoy } from "../e2e/envoy.ts";
import { createShopKeys, expectNoKey, expectOwnAddressChecked, expectRateLimited, expectUnauthenticated, reaching as reachingApp, startEchoUpstream, startSilentGrpcServer, untilShopKeysIndexed, type EchoUpstream, type Received, type ShopKeys } from "../e2e/upstream.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { getApiKey } from "../support/operator.ts";
import { alsTls, type AlsTls } from "../support/als-tls.ts";
import { denialBody } from "../../src/authz/response.ts";
import { loadAccessLogProtos, type StreamAccessLogsMessage } from "../../src/accesslog/proto.ts";

const HOST = "envoy-grpc.example.com";

describe("Envoy's gRPC ext_authz filter in front of an application (deploy/envoy/ext-authz.yaml)", () => {
  let env: AuthzEnv;
  let usage: TestUsage;
  let ns: string;
  let app: EchoUpstream;
  let envoy: Envoy;
  let logDir: string;
  let accessLog: string;
  let keys: ShopKeys;
  let reader: TestKey;
  let noScope: TestKey;
  let limited: TestKey;
  let keywardStopped = false;
  let als: AlsTls;
  const cleanups: (() => Promise<unknown>)[] = [];

  const vars = (keywardPort: number, alsPort: number, log: string) => ({
    APP_ADDRESS: "127.0.0.1",
    APP_PORT: app.port,
    KEYWARD_ADDRESS: "127.0.0.1",
    KEYWARD_PORT: keywardPort,
    KEYWARD_ALS_PORT: alsPort,
    ACCESS_LOG_PATH: log,
    ...als.envoyVars,
  });
  const get = (path: string, headers: Record<string, string> = {}, port = envoy.port): Promise<HttpAnswer> => httpRequest(port, "GET", path, { host: HOST, ...headers });
  const reaching = (fn: () => Promise<unknown>): Promise<Received[]> => reachingApp(app, fn);
  const logLines = async (): Promise<Record<string, string>[]> =>
    (await readFile(accessLog, "utf8").catch(() => "")).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Record<string, string>);

  beforeAll(async () => {
    app = await startEchoUpstream();
    cleanups.push(() => app.close());
    logDir = await mkdtemp(join(tmpdir(), "keyward-envoy-log-"));
    cleanups.push(() => rm(logDir, { recursive: true, force: true }));
    accessLog = join(logDir, "access.log");
    als = await alsTls();
    cleanups.push(() => als.remove());
    env = await startAuthzEnv(inject("kubeconfig"), { accessLogProofKeyFile: als.config.accessLogProofKeyFile ?? "" });
    cleanups.push(() => (keywardStopped ? Promise.resolve() : env.stop()));
    await applyUsageRbac(env.admin);
    ns = await createTestNamespace(env.adminKc, "envoy-grpc");
    cleanups.push(() => deleteNamespace(env.adminKc, ns));
    usage = await startTestUsage(env.authzKc, { namespaces: [ns], accessLogAddress: "127.0.0.1:0", ...als.config });
    cleanups.push(() => usage.stop());
    await createPolicy(env.admin, ns, "orders", {
      hosts: [HOST],
      credentials: { headers: ["x-api-key"], bearer: true, queryParams: ["api_key"] },
      rules: [{ name: "read", paths: ["/orders/**", "/fail/**"], methods: ["GET"], scopes: ["orders:read"] }],
    });
    keys = await createShopKeys(env.admin, ns);
    ({ reader, noScope, limited } = keys);
    envoy = await startEnvoy("ext-authz.yaml", vars(env.authz.grpcPort, usage.handle.accessLogPort ?? 0, accessLog));
    cleanups.push(() => envoy.stop());
    await untilShopKeysIndexed(get, keys);
  });

  afterAll(async () => {
    for (const undo of cleanups.reverse()) await undo();
  });

  it("runs the ext_authz filter over gRPC, with failure_mode_allow false and a timeout, as Envoy loaded it", async () => {
    const dump = await httpRequest(envoy.adminPort, "GET", "/config_dump", {});
    const filter = findExtAuthz(JSON.parse(dump.body) as unknown);
    expect(filter?.failure_mode_allow ?? false).toBe(false); // false is proto3's default: the dump leaves it out
    expect(filter).toMatchObject({ grpc_service: { envoy_grpc: { cluster_name: "keyward-authz" }, timeout: "0.250s" }, transport_api_version: "V3" });
  });

  it("allowed: the application answers, and gets the request with keyward's x-keyward-* headers", async () => {
    const seen = await reaching(async () => {
      const r = await get("/orders/7", { "x-api-key": reader.key });
      expect(r.status).toBe(200);
      expect((JSON.parse(r.body) as Received).url).toBe("/orders/7");
      expect(r.headers["ratelimit-limit"]).toBeUndefined(); // a key without limits
    });
    expect(seen).toHaveLength(1);
    expect(seen[0]?.headers["x-keyward-key-id"]).toBe(reader.id);
    expect(seen[0]?.headers["x-keyward-owner"]).toBe("shop-team");
  });

  it("401 as the client sees it: no key, or an unknown one, with WWW-Authenticate and keyward's body; nothing reaches the application", async () => {
    const seen = await reaching(() => expectUnauthenticated(get, { authorization: "Bearer kwt_unknownkey" }));
    expect(seen).toEqual([]);
  });

  it("403 as the client sees it: a key without the rule's scope, and a path no rule covers", async () => {
    const seen = await reaching(async () => {
      for (const path of ["/orders/1", "/admin"]) {
        const r = await get(path, { "x-api-key": path === "/admin" ? reader.key : noScope.key });
        expect(r.status).toBe(403);
        expect(r.body).toBe(denialBody(403));
        expect(r.headers["www-authenticate"]).toBeUndefined();
      }
    });
    expect(seen).toEqual([]);
  });

  it("429 as the client sees it: RateLimit-* on allowed answers, then Retry-After and RateLimit-* on the refusal", async () => {
    const seen = await expectRateLimited(app, get, limited.key, 2);
    expect(seen.map((s) => s.url)).toEqual(["/orders/1", "/orders/2"]);
  });

  it("the key and forged x-keyward-* identity headers never reach the application", async () => {
    const seen = await reaching(async () => {
      expect((await get("/orders/1", { "x-api-key": reader.key, "x-keyward-key-id": "kwt_forged", "x-keyward-owner": "someone-else", "x-keyward-scopes": "admin" })).status).toBe(200);
      expect((await get("/orders/2", { authorization: `Bearer ${reader.key}`, "x-keyward-key-id": "kwt_forged" })).status).toBe(200);
    });
    expect(seen).toHaveLength(2);
    expectNoKey(seen, reader.key);
    // Only keyward's own x-keyward-* headers: the client's are dropped before keyward and the application.
    expect(seen.map((s) => Object.keys(s.headers).filter((h) => h.startsWith("x-keyward-")).sort())).toEqual([
      ["x-keyward-key-id", "x-keyward-owner"],
      ["x-keyward-key-id", "x-keyward-owner"],
    ]);
    expect(seen.map((s) => [s.headers["x-keyward-key-id"], s.headers["x-keyward-owner"]])).toEqual([
      [reader.id, "shop-team"],
      [reader.id, "shop-team"],
    ]);
  });

  it("a key in the query string is removed before the application; the other parameters stay, in order", async () => {
    const seen = await reaching(async () => {
      expect((await get(`/orders/1?a=1&api_key=${reader.key}&b=2`)).status).toBe(200);
      expect((await get(`/orders/2?api_key=${reader.key}`)).status).toBe(200);
    });
    expect(seen.map((s) => s.url)).toEqual(["/orders/1?a=1&b=2", "/orders/2"]);
    expect(seen.map((s) => s.headers["x-keyward-key-id"])).toEqual([reader.id, reader.id]);
  });

  it("Envoy's own access log carries keyward's dynamic metadata (key id, owner, decision, reason), never a key", async () => {
    await get("/orders/11", { "x-api-key": reader.key });
    await get(`/orders/12?api_key=${noScope.key}`);
    await get("/orders/13");
    const byPath = await eventually(async () => {
      const lines = await logLines();
      const m = new Map(lines.map((l) => [l.path, l]));
      return ["/orders/11", "/orders/12", "/orders/13"].every((p) => m.has(p)) ? m : undefined;
    }, 10_000, "the three requests in Envoy's access log");
    expect(byPath.get("/orders/11")).toMatchObject({ status: 200, key_id: reader.id, owner: "shop-team", decision: "allowed", reason: "ok" });
    expect(byPath.get("/orders/12")).toMatchObject({ status: 403, key_id: noScope.id, decision: "forbidden", reason: "scope_missing", flags: "UAEX" });
    expect(byPath.get("/orders/13")).toMatchObject({ status: 401, key_id: null, decision: "unauthenticated", reason: "missing_key" });
    const text = await readFile(accessLog, "utf8");
    for (const k of [reader, noScope, limited]) expect(text.includes(k.key)).toBe(false);
  });

  it("the gRPC access logger feeds keyward's receiver: upstream answers counted per key, denials never as upstream answers", async () => {
    for (let i = 0; i < 3; i++) expect((await get(`/orders/${i}`, { "x-api-key": reader.key })).status).toBe(200);
    expect((await get("/fail/1", { "x-api-key": reader.key })).status).toBe(503);
    await eventually(async () => {
      const m = await usage.registry.metrics();
      return /keyward_upstream_responses_total\{class="5xx"\} 1\b/.test(m) && /keyward_access_log_entries_total\{result="denied"\} [1-9]/.test(m) ? true : undefined;
    }, 15_000, "Envoy's access log entries joined by keyward");
    await usage.handle.flush();
    const ak = await eventually(async () => {
      const got = await getApiKey(env.admin, ns, "reader");
      const day = got?.status?.usage?.daily?.[0];
      return day?.upstream5xx === 1 && (day.upstream2xx ?? 0) > 0 ? day : undefined;
    }, 15_000, "the reader's upstream answers in status.usage.daily");
    expect(ak.upstream4xx).toBeUndefined();
    const noScopeKey = await getApiKey(env.admin, ns, "no-scope");
    expect(noScopeKey?.status?.usage?.daily?.[0]?.upstream4xx).toBeUndefined();
    expect(usage.logs.join("\n").includes(reader.key)).toBe(false);
  });

  it("an Envoy whose access log certificate keyward does not trust, or that names another identity, writes no upstream answer", async () => {
    const metric = async (re: RegExp): Promise<number> => Number(re.exec(await usage.registry.metrics())?.[1] ?? 0);
    const upstream5xx = /keyward_upstream_responses_total\{class="5xx"\} (\d+)/;
    const before = await metric(upstream5xx);
    for (const kind of ["other-ca", "other-identity"] as const) {
      const stranger = await startEnvoy("ext-authz.yaml", { ...vars(env.authz.grpcPort, usage.handle.accessLogPort ?? 0, join(logDir, `${kind}.log`)), ...(await als.refusedEnvoyVars(kind)) });
      try {
        // Checked by keyward and answered by the application; only the access log entries are refused.
        for (let i = 0; i < 3; i++) expect((await get(`/fail/${kind}-${i}`, { "x-api-key": reader.key }, stranger.port)).status).toBe(503);
        const reason = kind === "other-ca" ? "handshake" : "peer";
        await eventually(async () => ((await metric(new RegExp(`keyward_access_log_dropped_total\\{reason="${reason}"\\} ([1-9]\\d*)`))) > 0 ? true : undefined), 15_000, `the ${kind} Envoy refused (${reason})`);
      } finally {
        await stranger.stop();
      }
    }
    // The trusted Envoy's entry still arrives, and is the only one counted.
    expect((await get("/fail/trusted", { "x-api-key": reader.key })).status).toBe(503);
    await eventually(async () => ((await metric(upstream5xx)) >= before + 1 ? true : undefined), 15_000, "the trusted Envoy's entry");
    expect(await metric(upstream5xx)).toBe(before + 1);
  });

  it("an entry for a request keyward never checked, sent by a trusted sender, writes no upstream answer", async () => {
    const metric = async (re: RegExp): Promise<number> => Number(re.exec(await usage.registry.metrics())?.[1] ?? 0);
    const upstream5xx = /keyward_upstream_responses_total\{class="5xx"\} (\d+)/;
    const unproven = /keyward_access_log_dropped_total\{reason="unproven"\} (\d+)/;
    const before = await metric(upstream5xx);
    const droppedBefore = await metric(unproven);
    const creds = credentials.createSsl(await readFile(als.envoy.ca), await readFile(als.envoy.key), await readFile(als.envoy.cert));
    const pkg = loadPackageDefinition(loadAccessLogProtos());
    const Ctor = (((pkg.envoy as GrpcObject).service as GrpcObject).accesslog as GrpcObject).v3 as GrpcObject;
    const c = new (Ctor.AccessLogService as ServiceClientConstructor)(`127.0.0.1:${usage.handle.accessLogPort ?? 0}`, creds, { "grpc.ssl_target_name_override": "localhost" }) as unknown as {
      StreamAccessLogs(cb: (err: Error | null) => void): ClientWritableStream<StreamAccessLogsMessage>;
      close(): void;
    };
    const fields = { key_id: { stringValue: reader.id }, apikey: { stringValue: `${ns}/reader` }, decision: { stringValue: "allowed" } };
    const forged = (i: number, proof?: string) => ({
      common_properties: { start_time: { seconds: String(Math.floor(Date.now() / 1000)) }, metadata: { filter_metadata: { "envoy.filters.http.ext_authz": { fields: { ...fields, ...(proof ? { proof: { stringValue: proof } } : {}) } } } } },
      request: { request_id: `forged-${i}` },
      response: { response_code: { value: 503 } },
    });
    await new Promise<void>((resolve, reject) => {
      const s = c.StreamAccessLogs((err) => {
        if (err) reject(err);
        else resolve();
      });
      s.write({ identifier: { log_name: "keyward" }, http_logs: { log_entry: [forged(1), forged(2, `${Math.floor(Date.now() / 1000)}.${"A".repeat(22)}`)] } });
      s.end();
    });
    c.close();
    await eventually(async () => ((await metric(unproven)) >= droppedBefore + 2 ? true : undefined), 10_000, "the forged entries dropped as unproven");
    // A real request through Envoy still counts: the proof keyward added survived Envoy's metadata merge.
    expect((await get("/fail/proven", { "x-api-key": reader.key })).status).toBe(503);
    await eventually(async () => ((await metric(upstream5xx)) >= before + 1 ? true : undefined), 15_000, "the real entry");
    expect(await metric(upstream5xx)).toBe(before + 1);
  });

  it("keyward hung: after the filter's timeout Envoy denies with 403 and nothing reaches the application", async () => {
    const silent = await startSilentGrpcServer();
    const hung = await startEnvoy("ext-authz.yaml", vars(silent.port, usage.handle.accessLogPort ?? 0, join(logDir, "hung.log")));
    try {
      const seen = await reaching(async () => {
        const started = Date.now();
        const r = await get("/orders/1", { "x-api-key": reader.key }, hung.port);
        const took = Date.now() - started;
        expect(r.status).toBe(403);
        expect(took).toBeGreaterThanOrEqual(240);
        expect(took).toBeLessThan(5_000);
      });
      expect(seen).toEqual([]);
      expect(silent.calls()).toBeGreaterThan(0);
      expect(await hung.stat("http.ingress.ext_authz.error")).toBeGreaterThan(0);
    } finally {
      await hung.stop();
      await silent.close();
    }
  });

  it("allowedSources is checked against the client's own address; an X-Forwarded-For the client made up changes nothing", async () => {
    await expectOwnAddressChecked(get, keys);
  });

  it("keyward stopped: Envoy denies with 403 and nothing reaches the application", async () => {
    keywardStopped = true;
    await env.stop();
    const seen = await reaching(async () => {
      for (const headers of [{ "x-api-key": reader.key }, {}] as Record<string, string>[]) {
        const r = await get("/orders/1", headers);
        expect(r.status).toBe(403);
      }
    });
    expect(seen).toEqual([]);
  });
});

/** The ExtAuthz typed_config anywhere in a parsed Envoy configuration (or admin config_dump). */
function findExtAuthz(node: unknown): Record<string, unknown> | undefined {
  if (Array.isArray(node)) {
    for (const n of node) {
      const f = findExtAuthz(n);
      if (f) return f;
    }
    return undefined;
  }
  if (node === null || typeof node !== "object") return undefined;
  const o = node as Record<string, unknown>;
  if (o["@type"] === "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz") return o;
  for (const v of Object.values(o)) {
    const f = findExtAuthz(v);
    if (f) return f;
  }
  return undefined;
}
