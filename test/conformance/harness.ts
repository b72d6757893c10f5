// The harness the authz suites share: runs keyward's data plane against the real
// control plane with the data plane's own RBAC (config/rbac/authz-*.yaml, a
// TokenRequest token), creates ApiKeys whose status the test writes in the
// operator's place, and talks Envoy's ext_authz protocol to it.
//
// Plaintext keys exist only in the test's memory: never printed, never logged.
import { createHash, randomBytes } from "node:crypto";
import { request, type IncomingHttpHeaders } from "node:http";
import { join, resolve } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { KubeConfig } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import type { ApiKey, ApiKeyPolicy, ApiKeyPolicySpec, ApiKeySpec } from "../../src/api/types.ts";
import { loadProtos, type CheckRequestMessage, type CheckResponseMessage } from "../../src/authz/proto.ts";
import { startAuthz, type AuthzHandle } from "../../src/authz/service.ts";
import { defaultConfig, type Config } from "../../src/config/config.ts";
import { applyManifestFiles } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest, KubeApiError } from "../../src/k8s/rest.ts";
import { silentLogger, type Logger } from "../../src/log.ts";
import { eventually } from "../support/k8s.ts";

const repoRoot = resolve(import.meta.dirname, "..", "..");
const BASE = "/apis/keyward.dev/v1alpha1";

export interface AuthzEnv {
  admin: KubeRest;
  adminKc: KubeConfig;
  /** The data plane's kubeconfig: a ServiceAccount token bound to config/rbac/authz-role.yaml. */
  authzKc: KubeConfig;
  authzRest: KubeRest;
  authz: AuthzHandle;
  registry: Registry;
  /** Moves the data plane's clock (for expiry). */
  clock: { offsetMs: number };
  stop(): Promise<void>;
}

/** Applies the shipped authz RBAC and returns a kubeconfig holding a fresh token of its ServiceAccount. */
export async function authzKubeConfig(adminKc: KubeConfig, admin: KubeRest): Promise<KubeConfig> {
  await admin.request("POST", "/api/v1/namespaces", { body: { apiVersion: "v1", kind: "Namespace", metadata: { name: "keyward-system" } } }).catch((err: unknown) => {
    if (!(err instanceof KubeApiError && err.status === 409)) throw err;
  });
  await applyManifestFiles(
    admin,
    [
      ...["authz-account.yaml", "authz-role.yaml", "authz-binding.yaml"].map((f) => join(repoRoot, "config/rbac", f)),
      // The data plane's status writes are narrowed to status.usage, as in a real install.
      join(repoRoot, "config/admission/authz-status-policy.yaml"),
    ],
  );
  const tr = await admin.request<{ status: { token: string } }>("POST", "/api/v1/namespaces/keyward-system/serviceaccounts/keyward-authz/token", {
    body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
  });
  return tokenKubeConfig(adminKc, "keyward-authz", tr.status.token);
}

/** A kubeconfig for the admin's cluster that authenticates as `user` with a bearer token. */
export function tokenKubeConfig(adminKc: KubeConfig, user: string, token: string): KubeConfig {
  const cluster = adminKc.getCurrentCluster();
  if (!cluster) throw new Error("admin kubeconfig has no cluster");
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: "c", server: cluster.server, caData: cluster.caData, caFile: cluster.caFile, skipTLSVerify: cluster.skipTLSVerify }],
    users: [{ name: user, token }],
    contexts: [{ name: user, cluster: "c", user }],
    currentContext: user,
  });
  return kc;
}

export async function startAuthzEnv(kubeconfigPath: string, overrides: Partial<Config> = {}, log: Logger = silentLogger): Promise<AuthzEnv> {
  const adminKc = loadKubeConfig(kubeconfigPath);
  const admin = new KubeRest(adminKc, { qps: 0 });
  const authzKc = await authzKubeConfig(adminKc, admin);
  const authzRest = new KubeRest(authzKc);
  const registry = new Registry();
  const clock = { offsetMs: 0 };
  const config = defaultConfig({ grpcAddress: "127.0.0.1:0", httpAuthAddress: "127.0.0.1:0", httpAuthProxy: "nginx", metricsAddress: "", ...overrides });
  const authz = await startAuthz({ config, kc: authzKc, rest: authzRest, log, registry, now: () => Date.now() + clock.offsetMs });
  await eventually(() => Promise.resolve(authz.ready() ? true : undefined), 20_000, "the authz watches to sync");
  return {
    admin,
    adminKc,
    authzKc,
    authzRest,
    authz,
    registry,
    clock,
    stop: async () => {
      await authz.stop();
      authzRest.close();
      admin.close();
    },
  };
}

export interface TestKey {
  /** The plaintext; keep it in memory only. */
  readonly key: string;
  readonly id: string;
  readonly hash: string;
  readonly name: string;
  readonly namespace: string;
}

export function generateKey(prefix = "kwt"): { key: string; id: string; hash: string } {
  const key = `${prefix}_${randomBytes(32).toString("base64url")}`;
  const hash = `sha256:${createHash("sha256").update(key).digest("hex")}`;
  return { key, id: `${prefix}_${randomBytes(4).toString("hex")}`, hash };
}

/** Creates an ApiKey declaring a key's hash and writes its status as the operator would. */
export async function createKey(
  rest: KubeRest,
  namespace: string,
  name: string,
  spec: Partial<ApiKeySpec> = {},
  labels: Record<string, string> = {},
): Promise<TestKey> {
  const k = generateKey();
  const obj: ApiKey = {
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKey",
    metadata: { name, namespace, labels },
    spec: { owner: "acme", keyHash: k.hash, ...spec },
  };
  await rest.request("POST", `${BASE}/namespaces/${namespace}/apikeys`, { body: obj });
  await writeKeyStatus(rest, namespace, name, [{ id: k.id, hash: k.hash, state: "active", createdAt: new Date().toISOString() }]);
  return { ...k, name, namespace };
}

export async function writeKeyStatus(rest: KubeRest, namespace: string, name: string, keys: NonNullable<ApiKey["status"]>["keys"], state = "Active"): Promise<void> {
  await rest.request("PATCH", `${BASE}/namespaces/${namespace}/apikeys/${name}/status`, {
    body: { status: { state, keys } },
    contentType: "application/merge-patch+json",
  });
}

export async function patchKeySpec(rest: KubeRest, namespace: string, name: string, spec: Partial<ApiKeySpec>): Promise<void> {
  await rest.request("PATCH", `${BASE}/namespaces/${namespace}/apikeys/${name}`, { body: { spec }, contentType: "application/merge-patch+json" });
}

export async function deleteKey(rest: KubeRest, namespace: string, name: string): Promise<void> {
  await rest.request("DELETE", `${BASE}/namespaces/${namespace}/apikeys/${name}`);
}

export async function createPolicy(rest: KubeRest, namespace: string, name: string, spec: ApiKeyPolicySpec): Promise<void> {
  const obj: ApiKeyPolicy = { apiVersion: "keyward.dev/v1alpha1", kind: "ApiKeyPolicy", metadata: { name, namespace }, spec };
  await rest.request("POST", `${BASE}/namespaces/${namespace}/apikeypolicies`, { body: obj });
}

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One HTTP/1.1 request to 127.0.0.1:`port` with exactly these headers (fetch() would replace Host). */
export function httpRequest(port: number, method: string, path: string, headers: Record<string, string | string[]>): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/**
 * Asks keyward's HTTP endpoint (--http-auth-proxy=nginx) the way the nginx recipe does:
 * X-Original-Method, X-Original-URI and Host name the original request, and nginx appends
 * the client's address to X-Forwarded-For. `headers` are the client's own.
 */
export function nginxStyleCheck(port: number, original: { method: string; host: string; uri: string }, headers: Record<string, string> = {}): Promise<HttpAnswer> {
  return httpRequest(port, "GET", "/auth", { "x-forwarded-for": "127.0.0.1", ...headers, host: original.host, "x-original-method": original.method, "x-original-uri": original.uri });
}

export interface HttpReq {
  method?: string;
  host: string;
  path: string;
  headers?: Record<string, string>;
  source?: string;
}

export function checkRequest(r: HttpReq): CheckRequestMessage {
  return {
    attributes: {
      source: { address: { socket_address: { address: r.source ?? "127.0.0.1" } } },
      request: { http: { method: r.method ?? "GET", host: r.host, path: r.path, headers: r.headers ?? {} } },
    },
  };
}

type CheckFn = (req: CheckRequestMessage, opts?: { deadlineMs?: number }) => Promise<CheckResponseMessage>;

/**
 * A grpc-js client for Authorization/Check and Health/Check on the loaded project protos.
 * Clients share one connection per address unless `ownConnection` (grpc-js's global subchannel pool).
 */
export function authzClient(
  port: number,
  o: { ownConnection?: boolean; credentials?: grpc.ChannelCredentials } = {},
): { check: CheckFn; health: () => Promise<number>; close(): void } {
  const pkg = grpc.loadPackageDefinition(loadProtos()) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } };
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  };
  const options: grpc.ChannelOptions = o.ownConnection ? { "grpc.use_local_subchannel_pool": 1 } : {};
  const creds = o.credentials ?? grpc.credentials.createInsecure();
  const client = new pkg.envoy.service.auth.v3.Authorization(`127.0.0.1:${port}`, creds, options);
  const health = new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, creds, options);
  type Unary = (req: unknown, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;
  const call = <T>(c: grpc.Client, method: string, req: unknown, deadlineMs = 5000): Promise<T> =>
    new Promise((res, rej) => {
      const fn = (c as unknown as Record<string, Unary>)[method]!.bind(c);
      fn(req, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err, out) => {
        if (err) rej(err);
        else res(out as T);
      });
    });
  return {
    check: (req, opts) => call<CheckResponseMessage>(client, "Check", req, opts?.deadlineMs),
    health: async () => (await call<{ status: number }>(health, "Check", { service: "" })).status,
    close: () => {
      client.close();
      health.close();
    },
  };
}

/** Flattens a CheckResponse for assertions: http status, headers by name, metadata strings. */
export function summarize(res: CheckResponseMessage): {
  code: number;
  httpStatus: number;
  headers: Record<string, string>;
  headersToRemove: string[];
  queryToRemove: string[];
  body: string;
  metadata: Record<string, string | string[]>;
} {
  const headers: Record<string, string> = {};
  for (const h of res.ok_response?.headers ?? res.denied_response?.headers ?? []) headers[h.header.key] = h.header.value;
  const metadata: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(res.dynamic_metadata?.fields ?? {})) {
    // An empty list (a key without scopes) arrives as a listValue without values.
    const list = v.listValue ? ((v.listValue as { values?: { stringValue?: string }[] }).values ?? []) : undefined;
    metadata[k] = list ? list.map((x) => x.stringValue ?? "") : (v.stringValue ?? "");
  }
  return {
    code: (res.status as { code?: number } | undefined)?.code ?? 0,
    httpStatus: res.denied_response ? res.denied_response.status.code : 200,
    headers,
    headersToRemove: res.ok_response?.headers_to_remove ?? [],
    queryToRemove: res.ok_response?.query_parameters_to_remove ?? [],
    body: res.denied_response?.body ?? "",
    metadata,
  };
}

/** Percentile of sorted numbers (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? NaN;
}
