// The usage API as the aggregated API usage.keyward.dev/v1alpha1, through the real
// kube-apiserver's aggregation layer: keyward's data plane (a real `keyward authz`
// process, with the shipped RBAC) serves a seeded SQLite store on this machine's
// first non-loopback IPv4 address, behind a selector-less Service and its
// EndpointSlice, and the shipped APIService (config/aggregated-api/) becomes
// Available. Tenants call it with kubectl and their own credentials: a client
// certificate user and a ServiceAccount token user, each with the tenant Role of
// config/rbac/tenant/ in namespace A only. Each sees A's usage, gets 403 for B's;
// a cluster admin sees both. X-Remote-* headers sent to keyward without the
// apiserver's front-proxy certificate change nothing. `kubectl keyward usage`, found
// by kubectl's plugin discovery, prints for each tenant exactly what `keyward usage`
// prints from the store for their namespace, and refuses the other namespace.
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import type { RequestOptions } from "node:http";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { openAnalyticsStore } from "../../src/analytics/store.ts";
import { applyObjects, parseManifests } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import { freePort, hostAddress, issueClientCertificate } from "../controlplane/controlplane.ts";
import { DAY, keysIn, NOW, seedRows } from "../support/analytics-seed.ts";
import { certDir, type CertDir } from "../support/certs.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { startKeyward, type KeywardProcess } from "../support/keyward.ts";
import { kubectlDir, kubectlPath, run, type Run } from "../support/kubectl.ts";
import { tokenKubeConfig, usageApiDataPlaneKubeConfig } from "../support/rbac.ts";

const root = resolve(import.meta.dirname, "..", "..");
const APISERVICE = "v1alpha1.usage.keyward.dev";
const SERVICE = "keyward-usage";
const range = `since=${new Date(NOW - 45 * DAY).toISOString()}&until=${new Date(NOW).toISOString()}`;
const viewPath = (view: string, query = ""): string => `/apis/usage.keyward.dev/v1alpha1/views/${view}?${query ? `${query}&` : ""}${range}`;

interface Answer {
  namespaces?: string[] | "all";
  items?: { namespace?: string; name?: string }[];
  error?: string;
}

let adminKc: KubeConfig;
let admin: KubeRest;
let nsA: string;
let nsB: string;
let serviceNs: string;
let scratch: string;
let certs: CertDir;
let keyward: KeywardProcess | undefined;
let usagePort: number;
let host: string;
let servingCa: Buffer;
let sqlitePath: string;
/** kubeconfig files by who they are. */
const kubeconfigs: Record<"certTenant" | "tokenTenant" | "admin", string> = { certTenant: "", tokenTenant: "", admin: "" };
let linkDir: string;

const manifest = (file: string): KubernetesObject[] => parseManifests(readFileSync(join(root, file), "utf8"), file);

/** kubectl as `who`, with the plugin (as npm links it) and kubectl on PATH. */
function kubectlAs(who: keyof typeof kubeconfigs, ...args: string[]): Promise<Run> {
  return run(kubectlPath, args, { env: { PATH: [linkDir, kubectlDir, "/usr/bin", "/bin"].join(delimiter), HOME: scratch, KUBECONFIG: kubeconfigs[who] } });
}

async function raw(who: keyof typeof kubeconfigs, path: string): Promise<{ code: number | null; answer: Answer; stderr: string }> {
  const r = await kubectlAs(who, "get", "--raw", path);
  return { code: r.code, answer: r.code === 0 ? (JSON.parse(r.stdout) as Answer) : {}, stderr: r.stderr };
}

/** The tenant Role of config/rbac/tenant/ in `ns`, bound to `subject`. */
async function tenantRole(ns: string, subject: Record<string, string>): Promise<void> {
  const role = manifest("config/rbac/tenant/role.yaml").map((r) => ({ ...r, metadata: { ...r.metadata, namespace: ns } }));
  const binding = { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: `tenant-${randomBytes(3).toString("hex")}`, namespace: ns }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "keyward-tenant" }, subjects: [subject] };
  await applyObjects(admin, [...role, binding]);
}

function writeKubeconfig(name: string, user: Record<string, string>): string {
  const cluster = adminKc.getCurrentCluster();
  if (!cluster?.caData) throw new Error("the admin kubeconfig has no cluster CA");
  const file = join(scratch, `${name}.kubeconfig`);
  const config = {
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "c", cluster: { server: cluster.server, "certificate-authority-data": cluster.caData } }],
    users: [{ name, user }],
    contexts: [{ name, context: { cluster: "c", user: name, namespace: nsA } }],
    "current-context": name,
  };
  writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
  return file;
}

beforeAll(async () => {
  adminKc = loadKubeConfig(inject("kubeconfig"));
  admin = new KubeRest(adminKc, { qps: 0 });
  scratch = mkdtempSync(join(tmpdir(), "keyward-aggregated-"));
  certs = await certDir();
  const address = hostAddress();
  if (address === undefined) {
    throw new Error("this machine has no non-internal IPv4 address: the apiserver refuses loopback endpoints, so it cannot reach an aggregated API here and this suite cannot run");
  }
  host = address;
  nsA = await createTestNamespace(adminKc, "usage-agg-a");
  nsB = await createTestNamespace(adminKc, "usage-agg-b");
  serviceNs = await createTestNamespace(adminKc, "usage-agg-svc");
  linkDir = join(scratch, "bin");
  mkdirSync(linkDir);
  symlinkSync(join(root, "bin", "kubectl-keyward"), join(linkDir, "kubectl-keyward"));

  // The data plane, with its shipped RBAC: the usage API's reviews and the front proxy's ConfigMap.
  const dataPlaneKc = await usageApiDataPlaneKubeConfig(adminKc, ["config/rbac/aggregated-api/authz-front-proxy.yaml"]);
  const dpKubeconfig = join(scratch, "data-plane.kubeconfig");
  writeFileSync(dpKubeconfig, dataPlaneKc.exportConfig(), { mode: 0o600 });

  // The store: the seed's keys in A and B.
  sqlitePath = join(scratch, "analytics.sqlite");
  const store = await openAnalyticsStore(
    { store: "sqlite", sqlitePath, postgresUrl: "", retentionMs: 3650 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => NOW },
    createLogger({ sink: () => {} }),
  );
  await store.upsertKeys(keysIn(nsA, nsB));
  await store.writeRequests(seedRows());
  await store.close();

  // Its serving certificate, valid for the Service's name, which the aggregator verifies with the APIService's caBundle.
  const ca = await certs.ca("usage-serving-ca");
  const serving = await ca.server("usage-api", [`${SERVICE}.${serviceNs}.svc`]);
  servingCa = readFileSync(ca.cert);

  usagePort = await freePort();
  const metricsPort = await freePort();
  keyward = startKeyward([
    "authz",
    `--kubeconfig=${dpKubeconfig}`,
    `--namespaces=${nsA},${nsB}`,
    "--grpc-address=127.0.0.1:0",
    "--http-auth-address=",
    `--metrics-address=127.0.0.1:${metricsPort}`,
    "--usage-status=false",
    "--usage-alerts=false",
    "--analytics-store=sqlite",
    `--analytics-sqlite-path=${sqlitePath}`,
    "--analytics-retention=87600h",
    `--usage-api-address=${host}:${usagePort}`,
    `--tls-cert-file=${serving.cert}`,
    `--tls-key-file=${serving.key}`,
    "--usage-api-front-proxy=cluster",
    "--usage-api-cache-ttl=0",
  ]);
  await keyward.ready(metricsPort);

  // A selector-less Service and its EndpointSlice: the apiserver reaches keyward at this machine's address.
  await applyObjects(admin, [
    { apiVersion: "v1", kind: "Service", metadata: { name: SERVICE, namespace: serviceNs }, spec: { ports: [{ name: "https", port: 443, targetPort: usagePort, protocol: "TCP" }] } } as KubernetesObject,
    {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name: SERVICE, namespace: serviceNs, labels: { "kubernetes.io/service-name": SERVICE } },
      addressType: "IPv4",
      endpoints: [{ addresses: [host], conditions: { ready: true } }],
      ports: [{ name: "https", port: usagePort, protocol: "TCP" }],
    } as KubernetesObject,
  ]);
  // Who may ask the apiserver for the views: every authenticated user, as shipped.
  await applyObjects(admin, manifest("config/rbac/aggregated-api/views.yaml"));
  // The shipped APIService, pointed at that Service and given the serving CA.
  const [apiService] = manifest("config/aggregated-api/apiservice.yaml") as (KubernetesObject & { spec: Record<string, unknown> })[];
  if (!apiService) throw new Error("config/aggregated-api/apiservice.yaml holds no APIService");
  apiService.spec.service = { name: SERVICE, namespace: serviceNs, port: 443 };
  apiService.spec.caBundle = servingCa.toString("base64");
  await applyObjects(admin, [apiService]);
  await eventually(
    async () => {
      const s = await admin.request<{ status?: { conditions?: { type: string; status: string; message?: string }[] } }>("GET", `/apis/apiregistration.k8s.io/v1/apiservices/${APISERVICE}`);
      return s.status?.conditions?.some((c) => c.type === "Available" && c.status === "True") ? true : undefined;
    },
    60_000,
    `APIService ${APISERVICE} Available`,
  );

  // The tenants: a client-certificate user and a ServiceAccount, each with the tenant Role in A only.
  const cert = await issueClientCertificate(inject("controlPlaneDir"), scratch, "alice@tenant-a.example", ["tenant-a-developers"]);
  await tenantRole(nsA, { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "alice@tenant-a.example" });
  kubeconfigs.certTenant = writeKubeconfig("alice", { "client-certificate": cert.cert, "client-key": cert.key });
  await admin.request("POST", `/api/v1/namespaces/${nsA}/serviceaccounts`, { body: { metadata: { name: "reader" } } });
  await tenantRole(nsA, { kind: "ServiceAccount", name: "reader", namespace: nsA });
  const token = (await tokenKubeConfig(adminKc, admin, { namespace: nsA, name: "reader" })).getCurrentUser()?.token ?? "";
  kubeconfigs.tokenTenant = writeKubeconfig("reader", { token });
  kubeconfigs.admin = inject("kubeconfig");
}, 240_000);

afterAll(async () => {
  // The APIService goes first: an unavailable one would trouble every later client's discovery.
  await admin.request("DELETE", `/apis/apiregistration.k8s.io/v1/apiservices/${APISERVICE}`).catch(() => undefined);
  if (keyward) {
    keyward.child.kill("SIGTERM");
    await keyward.exited;
  }
  for (const ns of [nsA, nsB, serviceNs]) if (ns) await deleteNamespace(adminKc, ns);
  admin.close();
  await certs.remove();
  rmSync(scratch, { recursive: true, force: true });
});

describe("the usage API through the apiserver (aggregated API usage.keyward.dev)", () => {
  it("is discovered: the APIService is Available and the group lists the views resource", async () => {
    const r = await kubectlAs("certTenant", "api-resources", "--api-group=usage.keyward.dev", "-o", "name");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("views.usage.keyward.dev");
  });

  for (const who of ["certTenant", "tokenTenant"] as const) {
    it(`gives the ${who === "certTenant" ? "client-certificate" : "ServiceAccount token"} tenant its own namespace's usage, and 403 for the other's`, async () => {
      const own = await raw(who, viewPath("keys", `namespace=${nsA}`));
      expect(own.code, own.stderr).toBe(0);
      expect(own.answer.namespaces).toEqual([nsA]);
      expect(own.answer.items?.map((k) => k.name).sort()).toEqual(["checkout", "search"]);
      // Without a namespace: only those the tenant may get apikeys in.
      const all = await raw(who, viewPath("keys"));
      expect(all.answer.namespaces).toEqual([nsA]);
      expect(new Set(all.answer.items?.map((k) => k.namespace))).toEqual(new Set([nsA]));
      for (const view of ["status-codes", "countries", "networks", "endpoints"]) expect((await raw(who, viewPath(view))).answer.namespaces, view).toEqual([nsA]);
      for (const query of [`namespace=${nsB}`, `key=${nsB}/billing`]) {
        const other = await raw(who, viewPath("keys", query));
        expect(other.code, query).toBe(1);
        expect(other.stderr, query).toMatch(/Forbidden|403/);
      }
    });
  }

  it("passes the ETag through, and If-None-Match to keyward: 304 for an unchanged inventory", async () => {
    const kc = loadKubeConfig(kubeconfigs.tokenTenant);
    const opts: RequestOptions = { headers: {} };
    await kc.applyToHTTPSOptions(opts);
    const server = new URL(kc.getCurrentCluster()?.server ?? "");
    const get = (headers: Record<string, string>): Promise<{ status: number; etag: string | undefined; length: number }> =>
      new Promise((ok, fail) => {
        const req = request(new URL("/apis/usage.keyward.dev/v1alpha1/views/inventory", server), { ...opts, headers: { ...(opts.headers as Record<string, string>), ...headers } }, (res) => {
          let length = 0;
          res.on("data", (c: Buffer) => (length += c.length));
          res.on("end", () => {
            ok({ status: res.statusCode ?? 0, etag: res.headers.etag, length });
          });
        });
        req.on("error", fail);
        req.end();
      });
    const first = await get({});
    expect(first.status).toBe(200);
    expect(first.etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect(await get({ "if-none-match": first.etag ?? "" })).toEqual({ status: 304, etag: first.etag, length: 0 });
  });

  it("gives a cluster admin every namespace", async () => {
    const r = await raw("admin", viewPath("keys"));
    expect(r.code, r.stderr).toBe(0);
    expect(r.answer.namespaces).toBe("all");
    expect(new Set(r.answer.items?.map((k) => k.namespace))).toEqual(new Set([nsA, nsB]));
    expect((await raw("admin", viewPath("keys", `namespace=${nsB}`))).answer.items?.map((k) => k.name)).toEqual(["billing"]);
  });

  it("is refused by the apiserver itself, before keyward, for a user not granted get on views.usage.keyward.dev", async () => {
    const binding = manifest("config/rbac/aggregated-api/views.yaml").find((o) => o.kind === "ClusterRoleBinding");
    if (!binding) throw new Error("views.yaml holds no ClusterRoleBinding");
    await admin.request("DELETE", `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${binding.metadata?.name ?? ""}`);
    try {
      const refused = await eventually(async () => {
        const r = await raw("certTenant", viewPath("keys", `namespace=${nsA}`));
        return r.code === 0 ? undefined : r;
      }, 30_000, "the apiserver to refuse the views");
      expect(refused.stderr).toMatch(/views\.usage\.keyward\.dev "keys" is forbidden/);
    } finally {
      await applyObjects(admin, [binding]);
    }
    await eventually(async () => ((await raw("certTenant", viewPath("keys", `namespace=${nsA}`))).code === 0 ? true : undefined), 30_000, "the views granted again");
  });

  it("believes no X-Remote-User sent straight to keyward without the apiserver's front-proxy certificate", async () => {
    const status = await new Promise<number>((done, fail) => {
      const req = request({ host, port: usagePort, path: viewPath("keys"), ca: servingCa, servername: `${SERVICE}.${serviceNs}.svc`, headers: { "x-remote-user": "keyward-admin", "x-remote-group": "system:masters" } }, (res) => {
        res.resume();
        done(res.statusCode ?? 0);
      });
      req.on("error", fail);
      req.end();
    });
    expect(status).toBe(401);
  });
});

describe("kubectl keyward usage, through the aggregated API with the caller's credentials", () => {
  const window = ["--since", new Date(NOW - 45 * DAY).toISOString(), "--until", new Date(NOW).toISOString()];

  /** What `keyward usage` prints reading the store itself, for namespace A. */
  async function fromStore(...args: string[]): Promise<string> {
    const r = await run(process.execPath, [join(root, "src", "main.ts"), "usage", ...args, "--namespace", nsA, ...window, "--analytics-store=sqlite", `--analytics-sqlite-path=${sqlitePath}`, "--analytics-retention=87600h"], { cwd: root });
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  }

  for (const [who, args] of [
    ["certTenant", ["-o", "json"]],
    ["tokenTenant", ["timeline", "--key", "PLACEHOLDER", "--by", "day", "-o", "csv"]],
    ["certTenant", ["endpoints", "--by", "path"]],
  ] as const) {
    it(`prints for the ${who === "certTenant" ? "client-certificate" : "ServiceAccount token"} tenant what keyward usage prints from the store: ${args.join(" ").replace("PLACEHOLDER", "A/checkout")}`, async () => {
      const line = args.map((a) => (a === "PLACEHOLDER" ? `${nsA}/checkout` : a));
      const r = await kubectlAs(who, "keyward", "usage", ...line, ...window);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(await fromStore(...line));
      expect(r.stdout).not.toContain(nsB);
    });
  }

  it("reads every namespace the tenant may read with -A, and refuses the other namespace", async () => {
    const all = await kubectlAs("tokenTenant", "keyward", "usage", "-A", "-o", "json", ...window);
    expect(all.code, all.stderr).toBe(0);
    expect(new Set((JSON.parse(all.stdout) as { rows: { namespace: string }[] }).rows.map((k) => k.namespace))).toEqual(new Set([nsA]));
    const other = await kubectlAs("certTenant", "keyward", "usage", "-n", nsB, ...window);
    expect(other.code).toBe(1);
    expect(other.stdout).toBe("");
    expect(other.stderr).toMatch(/forbidden: you may not get apikeys/);
  });
});

describe("kubectl keyward review, through the aggregated API with the caller's credentials", () => {
  it("prints the access review of the tenant's namespace, as markdown or JSON, and refuses the other namespace", async () => {
    const md = await kubectlAs("certTenant", "keyward", "review");
    expect(md.code, md.stderr).toBe(0);
    expect(md.stdout).toMatch(/^# Access review, /);
    const json = await kubectlAs("tokenTenant", "keyward", "review", "-A", "-o", "json");
    expect(json.code, json.stderr).toBe(0);
    const review = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(review).toHaveProperty("generatedAt");
    expect(json.stdout).not.toContain(nsB);
    const other = await kubectlAs("certTenant", "keyward", "review", "-n", nsB);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/forbidden: you may not get apikeys/);
  });
});
