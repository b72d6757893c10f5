// The Helm chart: rendered by helm, every object accepted by the real apiserver
// (server-side dry run), CRDs identical to crds/, RBAC identical to config/rbac/
// (cluster-wide, or namespaced Roles with watchNamespaces), the tenant roles of config/rbac/tenant/,
// the admission policy of config/admission/.
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadConfig } from "../../src/config/config.ts";
import { parseManifests } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest, isConflict } from "../../src/k8s/rest.ts";

const root = resolve(import.meta.dirname, "..", "..");
const cache = process.env.KEYWARD_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "keyward");
const helm = join(cache, "tools", "bin", "helm");
const NS = "keyward-chart";
/** The roles of config/rbac/tenant/ as the chart names them (release kw). */
const TENANT_ROLES = ["kw-tenant", "kw-viewer"];

let kc: KubeConfig;
let rest: KubeRest;

const render = (...args: string[]): KubernetesObject[] =>
  parseManifests(
    execFileSync(helm, ["template", "kw", join(root, "charts", "keyward"), "--namespace", NS, ...args.flatMap((a) => (a.startsWith("--") ? [a] : ["--set", a]))], {
      encoding: "utf8",
      // helm's error is in the thrown error's message; nothing on the test's stderr.
      stdio: ["ignore", "pipe", "pipe"],
    }),
    "helm template",
  );

/** The manifests in a directory of the repository (files only, not subdirectories). */
const manifestsIn = (...path: string[]): KubernetesObject[] =>
  readdirSync(join(root, ...path))
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((f) => parseManifests(readFileSync(join(root, ...path, f), "utf8")));

interface Deployment extends KubernetesObject {
  spec: {
    template: {
      spec: {
        containers: {
          args?: string[];
          env?: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
          volumeMounts?: { name: string; mountPath: string; subPath?: string }[];
          readinessProbe?: { grpc?: unknown; httpGet?: { path: string; port: string } };
        }[];
        volumes?: { name: string; secret?: { secretName: string }; emptyDir?: object; persistentVolumeClaim?: { claimName: string } }[];
      };
    };
  };
}

interface Role extends KubernetesObject {
  rules: unknown[];
}

beforeAll(async () => {
  kc = loadKubeConfig(inject("kubeconfig"));
  rest = new KubeRest(kc, { qps: 0 });
  await rest.request("POST", "/api/v1/namespaces", { body: { metadata: { name: NS } } }).catch((err: unknown) => {
    if (!isConflict(err)) throw err;
  });
});
afterAll(() => {
  rest.close();
});

describe("Helm chart", () => {
  it("renders objects the apiserver accepts", async () => {
    const objects = render("serviceMonitor.enabled=false");
    expect(objects.map((o) => o.kind).sort()).toEqual(
      expect.arrayContaining(["ClusterRole", "ClusterRoleBinding", "Deployment", "PodDisruptionBudget", "Role", "RoleBinding", "Service", "ServiceAccount"]),
    );
    for (const obj of objects) {
      await expect(rest.create(obj, { dryRun: true }), `${obj.kind ?? ""}/${obj.metadata?.name ?? ""}`).resolves.toBeDefined();
    }
  });

  it("passes keyward only flags it knows, with valid values", () => {
    const deployments = render("watchNamespaces={a,b}").filter((o) => o.kind === "Deployment") as Deployment[];
    expect(deployments).toHaveLength(2);
    for (const d of deployments) {
      const [command, ...args] = d.spec.template.spec.containers[0]?.args ?? [];
      expect(["operator", "authz"]).toContain(command);
      const { config } = loadConfig(args, {});
      expect(config.namespaces).toEqual(["a", "b"]);
      if (command === "operator") expect(config.leaderElect).toBe(true);
      if (command === "authz") {
        expect(config.authzWorkers).toBe(1);
        expect(config.grpcTransport).toBe("keyward");
        expect(config).toMatchObject({ unknownKeyThreshold: 100, unknownKeyWindow: 60_000, unknownKeyCooldown: 300_000, unknownKeyMaxNetworks: 65_536, unknownKeyBlockAll: false, maxIndexStaleness: 0 });
      }
    }
    // Both roles get the same host owners, so they agree on who owns a host.
    for (const d of render('--set-json=hostOwners={"api.example.com":["a","b"],"*":["platform"]}').filter((o) => o.kind === "Deployment") as Deployment[]) {
      const { config } = loadConfig(d.spec.template.spec.containers[0]?.args?.slice(1) ?? [], {});
      expect(config.hostOwners.sort()).toEqual(["*=platform", "api.example.com=a", "api.example.com=b"]);
    }
    const authz = (render("authz.workers=3,authz.grpcTransport=grpc-js").filter((o) => o.kind === "Deployment") as Deployment[]).find((d) => d.metadata?.name === "kw-authz");
    const set = loadConfig(authz?.spec.template.spec.containers[0]?.args?.slice(1) ?? [], {}).config;
    expect(set.authzWorkers).toBe(3);
    expect(set.grpcTransport).toBe("grpc-js");
    expect(set.httpAuthProxy).toBe("");
    const envoy = (render("authz.httpAuthProxy=envoy,authz.httpAuthPathPrefix=/ext-authz").filter((o) => o.kind === "Deployment") as Deployment[]).find((d) => d.metadata?.name === "kw-authz");
    expect(loadConfig(envoy?.spec.template.spec.containers[0]?.args?.slice(1) ?? [], {}).config).toMatchObject({ httpAuthProxy: "envoy", httpAuthPathPrefix: "/ext-authz" });
    const guarded = (render("authz.unknownKeys.threshold=0,authz.unknownKeys.blockAll=true,authz.maxIndexStaleness=10m").filter((o) => o.kind === "Deployment") as Deployment[]).find((d) => d.metadata?.name === "kw-authz");
    const g = loadConfig(guarded?.spec.template.spec.containers[0]?.args?.slice(1) ?? [], {}).config;
    expect(g).toMatchObject({ unknownKeyThreshold: 0, unknownKeyBlockAll: true, maxIndexStaleness: 600_000 });
  });

  describe("TLS on the check ports", () => {
    const authzOf = (...values: string[]): Deployment => {
      const d = (render(...values).filter((o) => o.kind === "Deployment") as Deployment[]).find((o) => o.metadata?.name === "kw-authz");
      if (!d) throw new Error("no authz Deployment rendered");
      return d;
    };
    /** The Secret and key a file path of the container reads, through its volume mounts. */
    const secretFileOf = (d: Deployment, path: string): string | undefined => {
      const pod = d.spec.template.spec;
      const mount = pod.containers[0]?.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`));
      if (!mount || mount.subPath) return undefined;
      const secret = pod.volumes?.find((v) => v.name === mount.name)?.secret?.secretName;
      return secret && `${secret}:${path.slice(mount.mountPath.length + 1)}`;
    };
    const configOf = (d: Deployment) => loadConfig(d.spec.template.spec.containers[0]?.args?.slice(1) ?? [], {}).config;

    it("is off by default: cleartext ports, no volumes, the gRPC readiness probe", () => {
      const d = authzOf();
      const c = configOf(d);
      expect([c.tlsCertFile, c.tlsKeyFile, c.tlsClientCaFile]).toEqual(["", "", ""]);
      expect(d.spec.template.spec.volumes?.filter((v) => v.secret)).toEqual([]);
      expect(d.spec.template.spec.containers[0]?.readinessProbe?.grpc).toBeDefined();
    });

    it("mounts the certificate Secret, passes its files, reloads them, and probes readiness over /readyz", async () => {
      const values = ["authz.tls.enabled=true", "authz.tls.secretName=kw-authz-tls", "authz.tls.reloadInterval=30s"];
      const d = authzOf(...values);
      const c = configOf(d);
      expect(secretFileOf(d, c.tlsCertFile)).toBe("kw-authz-tls:tls.crt");
      expect(secretFileOf(d, c.tlsKeyFile)).toBe("kw-authz-tls:tls.key");
      expect(c.tlsClientCaFile).toBe("");
      expect(c.tlsReloadInterval).toBe(30_000);
      expect(d.spec.template.spec.containers[0]?.readinessProbe).toEqual({ httpGet: { path: "/readyz", port: "metrics" } });
      await expect(rest.create(d, { dryRun: true })).resolves.toBeDefined();
    });

    it("mTLS: the client CA from the TLS Secret's ca.crt or its own Secret, required or optional", async () => {
      const same = authzOf("authz.tls.enabled=true", "authz.tls.secretName=kw-authz-tls", "authz.tls.clientCA.enabled=true");
      const s = configOf(same);
      expect(secretFileOf(same, s.tlsClientCaFile)).toBe("kw-authz-tls:ca.crt");
      expect(s.tlsRequireClientCert).toBe(true);
      const own = authzOf(
        "authz.tls.enabled=true",
        "authz.tls.secretName=kw-authz-tls",
        "authz.tls.clientCA.enabled=true",
        "authz.tls.clientCA.secretName=envoy-ca",
        "authz.tls.clientCA.key=bundle.pem",
        "authz.tls.clientCA.required=false",
      );
      const o = configOf(own);
      expect(secretFileOf(own, o.tlsClientCaFile)).toBe("envoy-ca:bundle.pem");
      expect(secretFileOf(own, o.tlsCertFile)).toBe("kw-authz-tls:tls.crt");
      expect(o.tlsRequireClientCert).toBe(false);
      for (const d of [same, own]) await expect(rest.create(d, { dryRun: true })).resolves.toBeDefined();
    });

    it("refuses tls.enabled without a secretName", () => {
      expect(() => render("authz.tls.enabled=true")).toThrow(/authz.tls.secretName is required/);
    });

    it("limits on Redis: the store, its URLs, the password and CA from Secrets, beside TLS", async () => {
      expect(configOf(authzOf()).limitsStore).toBe("memory");
      const d = authzOf(
        "authz.limits.store=redis",
        "authz.limits.redis.mode=cluster",
        "authz.limits.redis.urls={rediss://redis-0.redis:6379,rediss://redis-1.redis:6379}",
        "authz.limits.redis.passwordSecret.name=redis-auth",
        "authz.limits.redis.tls.caSecret.name=redis-ca",
        "authz.limits.redis.failure=deny",
        "authz.tls.enabled=true",
        "authz.tls.secretName=kw-authz-tls",
      );
      const c = configOf(d);
      expect(c).toMatchObject({ limitsStore: "redis", limitsRedisMode: "cluster", limitsRedisUrl: ["rediss://redis-0.redis:6379", "rediss://redis-1.redis:6379"], limitsRedisFailure: "deny", limitsRedisTimeout: 10 });
      expect(secretFileOf(d, c.limitsRedisPasswordFile)).toBe("redis-auth:password");
      expect(secretFileOf(d, c.limitsRedisCaFile)).toBe("redis-ca:ca.crt");
      expect(secretFileOf(d, c.tlsCertFile)).toBe("kw-authz-tls:tls.crt");
      expect(c.limitsRedisKeyPrefix).toBe("keyward:");
      await expect(rest.create(d, { dryRun: true })).resolves.toBeDefined();
      expect(() => render("authz.limits.store=redis")).toThrow(/authz.limits.redis.urls is required/);
    });
  });

  describe("analytics store", () => {
    const authzOf = (...values: string[]): Deployment => {
      const d = (render(...values).filter((o) => o.kind === "Deployment") as Deployment[]).find((o) => o.metadata?.name === "kw-authz");
      if (!d) throw new Error("no authz Deployment rendered");
      return d;
    };
    const configOf = (d: Deployment) => loadConfig(d.spec.template.spec.containers[0]?.args?.slice(1) ?? [], {}).config;

    it("is SQLite by default, on an emptyDir mounted where the file is", async () => {
      const d = authzOf();
      const c = configOf(d);
      expect(c).toMatchObject({ analyticsStore: "sqlite", analyticsSqlitePath: "/var/lib/keyward/analytics.sqlite", analyticsRetention: 30 * 86_400_000, analyticsRollupRetention: 0, analyticsReaderIdle: 5 * 60_000 });
      expect(configOf(authzOf("authz.analytics.sqlite.readerIdle=0")).analyticsReaderIdle).toBe(0);
      // The store's threads run below the checks; the chart passes its value on (0 keeps them level).
      expect(c.analyticsThreadNice).toBe(19);
      expect(configOf(authzOf("authz.analytics.threadNice=0")).analyticsThreadNice).toBe(0);
      // Rows are shed while the pod's CPU limit is hit (ADR 75); the chart can turn it off.
      expect(c.analyticsShedWhenThrottled).toBe(true);
      expect(configOf(authzOf("authz.analytics.shedWhenThrottled=false")).analyticsShedWhenThrottled).toBe(false);
      // And while the check thread waits for a CPU (ADR 76); "0" turns it off.
      expect(c.analyticsShedRunDelay).toBe(0.25);
      expect(configOf(authzOf("authz.analytics.shedRunDelay=0.5")).analyticsShedRunDelay).toBe(0.5);
      expect(configOf(authzOf("authz.analytics.shedRunDelay=0")).analyticsShedRunDelay).toBe(0);
      // The writer thread ends when idle (ADR 71); "0" keeps it.
      expect(c.analyticsWriterIdle).toBe(60_000);
      expect(configOf(authzOf("authz.analytics.writerIdle=0")).analyticsWriterIdle).toBe(0);
      const pod = d.spec.template.spec;
      const mount = pod.containers[0]?.volumeMounts?.find((m) => m.mountPath === "/var/lib/keyward");
      expect(pod.volumes?.find((v) => v.name === mount?.name)?.emptyDir).toBeDefined();
      await expect(rest.create(d, { dryRun: true })).resolves.toBeDefined();
      const claimed = authzOf("authz.replicas=1", "authz.analytics.sqlite.existingClaim=kw-analytics", "authz.analytics.retention=2160h");
      expect(configOf(claimed).analyticsRetention).toBe(90 * 86_400_000);
      expect(claimed.spec.template.spec.volumes?.find((v) => v.name === mount?.name)?.persistentVolumeClaim).toEqual({ claimName: "kw-analytics" });
      expect(() => render("authz.analytics.sqlite.existingClaim=kw-analytics")).toThrow(/needs authz.replicas: 1/);
    });

    it("PostgreSQL: the URL from an existing Secret, in the environment only", async () => {
      const d = authzOf("authz.analytics.store=postgres", "authz.analytics.postgres.urlSecret.name=kw-pg", "authz.analytics.postgres.poolSize=8");
      const c = configOf(d);
      expect(c).toMatchObject({ analyticsStore: "postgres", analyticsPostgresUrl: "", analyticsPostgresPoolSize: 8 });
      const env = d.spec.template.spec.containers[0]?.env?.find((e) => e.name === "KEYWARD_ANALYTICS_POSTGRES_URL");
      expect(env?.valueFrom?.secretKeyRef).toEqual({ name: "kw-pg", key: "url" });
      expect(d.spec.template.spec.volumes ?? []).toEqual([]);
      await expect(rest.create(d, { dryRun: true })).resolves.toBeDefined();
      expect(() => render("authz.analytics.store=postgres")).toThrow(/urlSecret.name is required/);
      expect(configOf(authzOf("authz.analytics.store=off")).analyticsStore).toBe("off");
    });
  });

  it("ships the CRDs of crds/", () => {
    // charts/keyward/crds links to crds/: what helm installs is what the tests validated.
    const rendered = render("--include-crds").filter((o) => o.kind === "CustomResourceDefinition");
    const shipped = readdirSync(join(root, "crds")).flatMap((f) => parseManifests(readFileSync(join(root, "crds", f), "utf8")));
    expect(rendered.length).toBe(2);
    expect(rendered).toEqual(expect.arrayContaining(shipped));
  });

  it("grants the same RBAC as config/rbac/", () => {
    const rendered = render().filter((o) => !TENANT_ROLES.includes(o.metadata?.name ?? ""));
    const shipped = manifestsIn("config", "rbac");
    for (const kind of ["ClusterRole", "Role"]) {
      const a = rendered.filter((o) => o.kind === kind).map((o) => JSON.stringify((o as Role).rules)).sort();
      const b = shipped.filter((o) => o.kind === kind).map((o) => JSON.stringify((o as Role).rules)).sort();
      expect(a, kind).toEqual(b);
    }
  });

  it("renders the tenant and viewer roles of config/rbac/tenant/, unbound: ClusterRoles, or Roles in each watched namespace", async () => {
    const shipped = manifestsIn("config", "rbac", "tenant");
    const rulesOf = (name: string): unknown[] => (shipped.find((o) => o.metadata?.name === name) as Role).rules;
    const cluster = render();
    for (const [rendered, shippedName] of [["kw-tenant", "keyward-tenant"], ["kw-viewer", "keyward-viewer"]] as const) {
      const role = cluster.find((o) => o.kind === "ClusterRole" && o.metadata?.name === rendered) as Role;
      expect(role.rules, rendered).toEqual(rulesOf(shippedName));
      await expect(rest.create(role, { dryRun: true }), rendered).resolves.toBeDefined();
    }
    // The viewer's rules name no Secret; the chart binds neither role to anybody.
    expect(JSON.stringify(rulesOf("keyward-viewer"))).not.toContain("secrets");
    const bound = cluster.filter((o) => o.kind === "RoleBinding" || o.kind === "ClusterRoleBinding").map((o) => (o as KubernetesObject & { roleRef: { name: string } }).roleRef.name);
    expect(bound.filter((n) => TENANT_ROLES.includes(n))).toEqual([]);
    const namespaced = render("watchNamespaces={team-a,team-b}").filter((o) => TENANT_ROLES.includes(o.metadata?.name ?? ""));
    expect(namespaced.map((o) => `${o.kind ?? ""} ${o.metadata?.namespace ?? ""}/${o.metadata?.name ?? ""}`).sort()).toEqual([
      "Role team-a/kw-tenant",
      "Role team-a/kw-viewer",
      "Role team-b/kw-tenant",
      "Role team-b/kw-viewer",
    ]);
    expect(render("tenantRoles.create=false").filter((o) => TENANT_ROLES.includes(o.metadata?.name ?? ""))).toEqual([]);
  });

  it("with authz.usageApi.port: serves the usage API on the Service and grants config/rbac/usage-api/'s ClusterRole, with or without watchNamespaces", async () => {
    const shipped = manifestsIn("config", "rbac", "usage-api");
    const rules = (shipped.find((o) => o.kind === "ClusterRole") as Role).rules;
    for (const extra of [[], ["watchNamespaces={team-a}"]]) {
      const rendered = render("authz.usageApi.port=9004", "networkPolicy.enabled=true", "networkPolicy.checkClientNamespaces={istio-system}", ...extra);
      expect((rendered.find((o) => o.kind === "ClusterRole" && o.metadata?.name === "kw-authz-usage-api") as Role).rules).toEqual(rules);
      expect(rendered.find((o) => o.kind === "ClusterRoleBinding" && o.metadata?.name === "kw-authz-usage-api")).toMatchObject({
        roleRef: { kind: "ClusterRole", name: "kw-authz-usage-api" },
        subjects: [{ kind: "ServiceAccount", name: "kw-authz", namespace: NS }],
      });
      const d = rendered.find((o) => o.kind === "Deployment" && o.metadata?.name === "kw-authz") as Deployment;
      const c = loadConfig(d.spec.template.spec.containers[0]?.args?.slice(1) ?? [], {}).config;
      expect(c).toMatchObject({ usageApiAddress: "0.0.0.0:9004", usageApiCacheTtl: 10_000, usageApiAudiences: [] });
      const svc = rendered.find((o) => o.kind === "Service" && o.metadata?.name === "kw-authz") as KubernetesObject & { spec: { ports: { name: string; port: number }[] } };
      expect(svc.spec.ports).toContainEqual(expect.objectContaining({ name: "usage-api", port: 9004 }));
      const policy = rendered.find((o) => o.kind === "NetworkPolicy" && o.metadata?.name === "kw-authz") as KubernetesObject & { spec: { ingress: { ports: { port: string }[]; from?: unknown }[] } };
      expect(policy.spec.ingress.find((i) => i.ports.some((p) => p.port === "usage-api"))).toEqual({ ports: [{ port: "usage-api", protocol: "TCP" }] });
      for (const o of rendered.filter((x) => x.metadata?.name === "kw-authz-usage-api")) await expect(rest.create(o, { dryRun: true })).resolves.toBeDefined();
    }
    expect(render().filter((o) => o.metadata?.name === "kw-authz-usage-api")).toEqual([]);
    expect(() => render("authz.usageApi.port=9004", "authz.analytics.store=off")).toThrow(/needs authz.analytics.store sqlite or postgres/);
  });

  it("with authz.usageApi.apiService.enabled: the APIService, the front proxy from the cluster, and the RBAC of config/rbac/aggregated-api/", async () => {
    const base = ["authz.usageApi.port=9004", "authz.usageApi.apiService.enabled=true", "authz.tls.enabled=true", "authz.tls.secretName=kw-authz-tls"];
    const rendered = render(...base, "authz.usageApi.apiService.caBundle=-----BEGIN CERTIFICATE-----");
    const d = rendered.find((o) => o.kind === "Deployment" && o.metadata?.name === "kw-authz") as Deployment;
    const c = loadConfig(d.spec.template.spec.containers[0]?.args?.slice(1) ?? [], {}).config;
    expect(c).toMatchObject({ usageApiFrontProxy: "cluster", usageApiRequestheaderRefresh: 60_000, usageApiAddress: "0.0.0.0:9004" });
    expect(rendered.find((o) => o.kind === "APIService")).toMatchObject({
      metadata: { name: "v1alpha1.usage.keyward.dev" },
      spec: { group: "usage.keyward.dev", version: "v1alpha1", service: { name: "kw-authz", namespace: NS, port: 9004 }, caBundle: Buffer.from("-----BEGIN CERTIFICATE-----").toString("base64"), insecureSkipTLSVerify: false },
    });
    const shipped = manifestsIn("config", "rbac", "aggregated-api");
    const views = (shipped.find((o) => o.kind === "ClusterRole") as Role).rules;
    expect((rendered.find((o) => o.kind === "ClusterRole" && o.metadata?.name === "kw-usage-views") as Role).rules).toEqual(views);
    const subjectsOf = (name: string): unknown => (rendered.find((o) => o.kind?.endsWith("Binding") && o.metadata?.name === name) as KubernetesObject & { subjects: unknown }).subjects;
    expect(subjectsOf("kw-usage-views")).toEqual([{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "system:authenticated" }]);
    for (const name of ["kw-authz-auth-reader", "kw-authz-auth-delegator"]) expect(subjectsOf(name)).toEqual([{ kind: "ServiceAccount", name: "kw-authz", namespace: NS }]);
    expect(rendered.find((o) => o.metadata?.name === "kw-authz-auth-reader")?.metadata?.namespace).toBe("kube-system");
    for (const o of rendered.filter((x) => ["APIService", "ClusterRole", "ClusterRoleBinding", "RoleBinding"].includes(x.kind ?? "") && /usage|auth-|v1alpha1/.test(x.metadata?.name ?? ""))) {
      await expect(rest.create(o, { dryRun: true }), `${o.kind ?? ""}/${o.metadata?.name ?? ""}`).resolves.toBeDefined();
    }
    // cert-manager's cainjector fills the caBundle; without a binding to system:authenticated, only the ClusterRole.
    const injected = render(...base, "authz.usageApi.apiService.certManagerCertificate=keyward/kw-authz", "authz.usageApi.apiService.bindAuthenticated=false");
    expect(injected.find((o) => o.kind === "APIService")?.metadata?.annotations).toEqual({ "cert-manager.io/inject-ca-from": "keyward/kw-authz" });
    expect(injected.filter((o) => o.metadata?.name === "kw-usage-views").map((o) => o.kind)).toEqual(["ClusterRole"]);
    expect(() => render(...base)).toThrow(/give caBundle, certManagerCertificate, or insecureSkipTLSVerify/);
    expect(() => render("authz.usageApi.port=9004", "authz.usageApi.apiService.enabled=true", "authz.usageApi.apiService.insecureSkipTLSVerify=true")).toThrow(/needs authz.tls.enabled/);
    expect(render().filter((o) => o.kind === "APIService")).toEqual([]);
  });

  it("grants only namespaced Roles, one per watched namespace, when watchNamespaces is set", async () => {
    const rendered = render("watchNamespaces={team-a,team-b}");
    expect(rendered.filter((o) => o.kind === "ClusterRole" || o.kind === "ClusterRoleBinding")).toEqual([]);
    const shipped = manifestsIn("config", "rbac", "namespaced");
    for (const component of ["operator", "authz"]) {
      const rules = (shipped.find((o) => o.kind === "Role" && o.metadata?.name === `keyward-${component}`) as Role).rules;
      for (const ns of ["team-a", "team-b"]) {
        const role = rendered.find((o) => o.kind === "Role" && o.metadata?.name === `kw-${component}` && o.metadata.namespace === ns) as Role;
        expect(role.rules, `${component} in ${ns}`).toEqual(rules);
        const binding = rendered.find((o) => o.kind === "RoleBinding" && o.metadata?.name === `kw-${component}` && o.metadata.namespace === ns);
        expect(binding).toMatchObject({
          roleRef: { kind: "Role", name: `kw-${component}` },
          subjects: [{ kind: "ServiceAccount", name: `kw-${component}`, namespace: NS }],
        });
      }
    }
    // The Leases (the operator's, the alert evaluator's) stay in the release namespace.
    expect(rendered.filter((o) => o.kind === "Role" && o.metadata?.namespace === NS).map((o) => o.metadata?.name).sort()).toEqual(["kw-authz-alerts-election", "kw-operator-leader-election"]);
    for (const ns of ["team-a", "team-b"]) {
      await rest.request("POST", "/api/v1/namespaces", { body: { metadata: { name: ns } } }).catch((err: unknown) => {
        if (!isConflict(err)) throw err;
      });
    }
    for (const obj of rendered.filter((o) => o.kind === "Role" || o.kind === "RoleBinding")) {
      await expect(rest.create(obj, { dryRun: true }), `${obj.kind ?? ""}/${obj.metadata?.name ?? ""}`).resolves.toBeDefined();
    }
  });

  it("ships the data plane's status admission policy for its own ServiceAccount", () => {
    const rendered = render();
    const policy = rendered.find((o) => o.kind === "ValidatingAdmissionPolicy") as KubernetesObject & {
      spec: { matchConditions: { expression: string }[]; validations: unknown[] };
    };
    const shipped = manifestsIn("config", "admission").find((o) => o.kind === "ValidatingAdmissionPolicy") as typeof policy;
    expect(policy.spec.matchConditions[0]?.expression).toBe(`request.userInfo.username == 'system:serviceaccount:${NS}:kw-authz'`);
    expect(policy.spec.validations).toEqual(shipped.spec.validations);
    expect(rendered.find((o) => o.kind === "ValidatingAdmissionPolicyBinding")).toMatchObject({ spec: { policyName: policy.metadata?.name, validationActions: ["Deny"] } });
    expect(render("authz.statusPolicy.enabled=false").filter((o) => o.kind?.startsWith("ValidatingAdmissionPolicy"))).toEqual([]);
  });
});
