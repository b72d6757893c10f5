// The Helm chart's toggles and monitoring objects: `helm lint`; kubeconform over
// every combination of the chart's `enabled` toggles, against schemas generated
// from the real apiserver's OpenAPI (our CRDs and the Prometheus Operator's
// included); the PrometheusRule and dashboards are the files under deploy/; the
// NetworkPolicy, the access-log port and topology spread; and a server-side dry run
// of the monitoring objects.
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type { KubernetesObject } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse, stringify } from "yaml";
import { loadConfig } from "../../src/config/config.ts";
import { parseManifests, waitForCrds } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest, isConflict } from "../../src/k8s/rest.ts";
import { schemaLocation, writeSchemas } from "../support/kube-schemas.ts";

const root = resolve(import.meta.dirname, "..", "..");
const chart = join(root, "charts", "keyward");
const cache = process.env.KEYWARD_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "keyward");
const helm = join(cache, "tools", "bin", "helm");
const kubeconform = join(cache, "tools", "bin", "kubeconform");
/** The Prometheus Operator's CRDs, copied out of its Go module by scripts/chart-tools.sh. */
const monitoringCrds = join(cache, "tools", "crds", "monitoring");
const NS = "keyward-chart-toggles";
const run = promisify(execFile);

/** Values a toggle needs beside itself to render (a required value). */
const COMPANIONS: Record<string, string[]> = {
  "networkPolicy.enabled": ["networkPolicy.checkClientNamespaces={istio-system,ingress-nginx}"],
  "authz.tls.enabled": ["authz.tls.secretName=kw-authz-tls"],
  "authz.usageApi.apiService.enabled": ["authz.usageApi.port=9004", "authz.tls.enabled=true", "authz.tls.secretName=kw-authz-tls", "authz.usageApi.apiService.certManagerCertificate=keyward/kw-authz"],
};

/** One value set: each toggle on or off, then the companions of those on (a companion may turn another toggle on). */
const toggleSet = (names: readonly string[], on: (i: number) => boolean): string[] => [
  ...names.map((t, i) => `${t}=${String(on(i))}`),
  ...names.flatMap((t, i) => (on(i) ? (COMPANIONS[t] ?? []) : [])),
];

/** Every boolean `enabled` in values.yaml, by its dotted path. */
function toggles(): string[] {
  const out: string[] = [];
  const walk = (v: unknown, path: string[]): void => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return;
    for (const [k, c] of Object.entries(v)) {
      if (k === "enabled" && typeof c === "boolean") out.push([...path, k].join("."));
      else walk(c, [...path, k]);
    }
  };
  walk(parse(readFileSync(join(chart, "values.yaml"), "utf8")), []);
  return out;
}

const setArgs = (values: readonly string[]): string[] => values.flatMap((v) => (v.startsWith("--") ? [v] : ["--set", v]));
const render = (...values: string[]): KubernetesObject[] =>
  parseManifests(execFileSync(helm, ["template", "kw", chart, "--namespace", NS, ...setArgs(values)], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }), "helm template");

/** A `--set` value as helm reads it: booleans, null, integers, {a,b} lists, else a string. */
function setValue(text: string): unknown {
  if (text === "true" || text === "false") return text === "true";
  if (text === "null") return null;
  if (/^-?\d+$/.test(text)) return Number(text);
  if (text.startsWith("{") && text.endsWith("}")) return text.slice(1, -1).split(",");
  return text;
}

/** `--set` strings (a.b=v, a dot in a key escaped as \\.) as one values object. */
function valuesOf(sets: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of sets) {
    const eq = s.indexOf("=");
    const path = s.slice(0, eq).split(/(?<!\\)\./).map((p) => p.replace(/\\\./g, "."));
    let node = out;
    for (const p of path.slice(0, -1)) node = (node[p] ??= {}) as Record<string, unknown>;
    node[path.at(-1) ?? ""] = setValue(s.slice(eq + 1));
  }
  return out;
}

/**
 * Renders the chart once per value set in a single helm run: an umbrella chart whose
 * dependencies are the chart under one alias per set (set0, set1, ...), each given its set.
 */
function renderAll(sets: readonly string[][]): string {
  const umbrella = join(dir, "combinations");
  mkdirSync(join(umbrella, "charts"), { recursive: true });
  symlinkSync(chart, join(umbrella, "charts", "keyward"));
  const version = (parse(readFileSync(join(chart, "Chart.yaml"), "utf8")) as { version: string }).version;
  writeFileSync(
    join(umbrella, "Chart.yaml"),
    stringify({ apiVersion: "v2", name: "combinations", version: "0.0.0", dependencies: sets.map((_, i) => ({ name: "keyward", version, alias: `set${i}` })) }),
  );
  writeFileSync(join(umbrella, "values.yaml"), stringify(Object.fromEntries(sets.map((s, i) => [`set${i}`, valuesOf(s)]))));
  return execFileSync(helm, ["template", "kw", umbrella, "--namespace", NS], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 512 * 1024 * 1024 });
}

let rest: KubeRest;
let dir: string;
/** kubeconform's schema directory, and how many kinds it has. */
let schemas: string;
let schemaKinds: number;

beforeAll(async () => {
  rest = new KubeRest(loadKubeConfig(inject("kubeconfig")), { qps: 0 });
  await rest.request("POST", "/api/v1/namespaces", { body: { metadata: { name: NS } } }).catch((err: unknown) => {
    if (!isConflict(err)) throw err;
  });
  // The monitoring CRDs, so the apiserver can check ServiceMonitor and PrometheusRule objects too.
  const crds = readdirSync(monitoringCrds)
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((f) => parseManifests(readFileSync(join(monitoringCrds, f), "utf8")));
  for (const crd of crds) {
    await rest.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", { body: crd }).catch((err: unknown) => {
      if (!isConflict(err)) throw err;
    });
  }
  await waitForCrds(
    rest,
    crds.map((c) => c.metadata?.name ?? ""),
    30_000,
  );
  dir = mkdtempSync(join(tmpdir(), "keyward-chart-toggles-"));
  // kubeconform's schemas, from the OpenAPI of the apiserver the suite runs, into keyward's cache.
  const version = (await rest.request<{ gitVersion: string }>("GET", "/version")).gitVersion;
  schemas = join(cache, "kubeconform-schemas", version);
  schemaKinds = await writeSchemas(rest, schemas, ["apps/v1/Deployment", "keyward.dev/v1alpha1/ApiKey", "monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"]);
}, 90_000);

afterAll(() => {
  rest.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("Helm chart toggles", () => {
  it("passes helm lint, with every toggle off and on", () => {
    const all = toggles().flatMap((t) => [`${t}=true`, ...(COMPANIONS[t] ?? [])]);
    for (const values of [[], all]) {
      const out = execFileSync(helm, ["lint", chart, "--strict", ...setArgs(values)], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
      expect(out).toContain("0 chart(s) failed");
    }
  });

  it("renders valid objects for every combination of toggles (kubeconform, schemas from the apiserver's OpenAPI)", async () => {
    const names = toggles();
    expect(names).toEqual(
      expect.arrayContaining(["operator.enabled", "authz.enabled", "serviceMonitor.enabled", "prometheusRule.enabled", "grafanaDashboards.enabled", "networkPolicy.enabled", "authz.tls.enabled"]),
    );
    expect(schemaKinds).toBeGreaterThan(100);

    const combinations = Array.from({ length: 2 ** names.length }, (_, bits) => toggleSet(names, (i) => ((bits >> i) & 1) === 1));
    // Value sets beyond the toggles, each with every toggle on.
    const allOn = combinations.at(-1) ?? [];
    const variants = [
      ["watchNamespaces={team-a,team-b}"],
      ["authz.accessLogPort=9003", "authz.httpAuthPort=0", "authz.httpAuthProxy=envoy", "authz.accessLog.tls.secretName=kw-als-tls", "authz.accessLog.tls.clientCASecretName=kw-als-ca", "authz.accessLog.tls.allowedPeers={spiffe://cluster.local/ns/ingress/sa/envoy}", "authz.accessLog.proofKeySecretName=kw-als-proof"],
      ["authz.limits.store=redis", "authz.limits.redis.urls={rediss://redis:6379}", "authz.limits.redis.passwordSecret.name=redis", "authz.limits.redis.tls.caSecret.name=redis-ca"],
      ["authz.topologySpreadConstraints=null", "authz.podDisruptionBudget=null", "networkPolicy.metricsNamespaces=null"],
      ["hostOwners.api\\.example\\.com={a}", "grafanaDashboards.namespace=grafana"],
    ].map((v) => [...allOn, ...v]);
    // One helm run renders them all: an umbrella chart with the chart once per value set (aliases).
    const sets = [...combinations, ...variants];
    const rendered = renderAll(sets);
    // Objects are written once, however many value sets render them alike.
    const seen = new Set<string>();
    const manifests = join(dir, "manifests");
    mkdirSync(manifests);
    const kinds = new Set<string>();
    for (const doc of rendered.split(/^---$/m)) {
      const obj = parse(doc) as KubernetesObject | null;
      if (!obj?.kind) continue;
      const text = JSON.stringify(obj);
      if (seen.has(text)) continue;
      seen.add(text);
      kinds.add(obj.kind);
      writeFileSync(join(manifests, `${seen.size}.json`), text);
    }
    // Each value set rendered its own objects (the release namespace's ServiceAccounts at least).
    expect(rendered.match(/^# Source: combinations\/charts\/set\d+\/templates\/rbac\.yaml$/gm)?.length).toBeGreaterThanOrEqual(sets.length);
    expect([...kinds].sort()).toEqual(
      expect.arrayContaining(["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "Service", "ServiceMonitor", "ValidatingAdmissionPolicy"]),
    );
    const result = await run(kubeconform, ["-schema-location", schemaLocation(schemas), "-strict", "-summary", "-output", "json", "-n", "2", manifests], { maxBuffer: 64 * 1024 * 1024 }).catch(
      (err: unknown) => err as { stdout: string },
    );
    const report = JSON.parse(result.stdout) as { resources?: { filename: string; kind: string; name: string; status: string; msg: string }[]; summary: { valid: number; invalid: number; errors: number; skipped: number } };
    expect(report.resources?.map((r) => `${r.kind}/${r.name} (${r.filename}): ${r.status} ${r.msg}`) ?? []).toEqual([]);
    expect(report.summary).toEqual({ valid: seen.size, invalid: 0, errors: 0, skipped: 0 });
  }, 600_000);

  it("kubeconform's schemas catch a misspelt field and a wrong type", () => {
    const bad = join(dir, "bad");
    mkdirSync(bad);
    writeFileSync(join(bad, "typo.yaml"), "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports: [{port: 80}]\n  selectr: {a: b}\n");
    writeFileSync(join(bad, "type.yaml"), "apiVersion: keyward.dev/v1alpha1\nkind: ApiKey\nmetadata: {name: x}\nspec: {owner: acme, scopes: read}\n");
    let out = "";
    try {
      execFileSync(kubeconform, ["-schema-location", schemaLocation(schemas), "-strict", "-summary", bad], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (err) {
      out = (err as { stdout: string }).stdout;
    }
    expect(out).toMatch(/typo\.yaml.*selectr/);
    expect(out).toMatch(/type\.yaml.*scopes/);
    expect(out).toContain("Invalid: 2");
  });

  it("ships deploy/prometheus/keyward.rules.yaml as the PrometheusRule, with the user's labels", async () => {
    expect(render().filter((o) => o.kind === "PrometheusRule")).toEqual([]);
    const [rule] = render("prometheusRule.enabled=true", "prometheusRule.labels.release=prometheus").filter((o) => o.kind === "PrometheusRule") as (KubernetesObject & { spec: unknown })[];
    expect(rule?.metadata?.labels?.release).toBe("prometheus");
    expect(rule?.spec).toEqual(parse(readFileSync(join(root, "deploy", "prometheus", "keyward.rules.yaml"), "utf8")));
    await expect(rest.create(rule as KubernetesObject, { dryRun: true })).resolves.toBeDefined();
  });

  it("ships every dashboard of deploy/grafana as a ConfigMap with the grafana_dashboard label", async () => {
    expect(render().filter((o) => o.kind === "ConfigMap")).toEqual([]);
    const maps = render("grafanaDashboards.enabled=true", "grafanaDashboards.annotations.grafana_folder=keyward").filter((o) => o.kind === "ConfigMap") as (KubernetesObject & { data: Record<string, string> })[];
    const shipped = readdirSync(join(root, "deploy", "grafana")).filter((f) => f.endsWith(".json"));
    expect(shipped.length).toBeGreaterThan(0);
    expect(maps.flatMap((m) => Object.keys(m.data)).sort()).toEqual(shipped.sort());
    for (const m of maps) {
      expect(m.metadata?.labels?.grafana_dashboard).toBe("1");
      expect(m.metadata?.annotations?.grafana_folder).toBe("keyward");
      for (const [file, json] of Object.entries(m.data)) expect(JSON.parse(json)).toEqual(JSON.parse(readFileSync(join(root, "deploy", "grafana", file), "utf8")));
      await expect(rest.create(m, { dryRun: true })).resolves.toBeDefined();
    }
    expect(render("grafanaDashboards.enabled=true", "grafanaDashboards.namespace=grafana").find((o) => o.kind === "ConfigMap")?.metadata?.namespace).toBe("grafana");
  });

  it("scrapes the data plane and the operator with the ServiceMonitor", async () => {
    const objects = render("serviceMonitor.enabled=true", "serviceMonitor.labels.release=prometheus");
    const monitor = objects.find((o) => o.kind === "ServiceMonitor") as KubernetesObject & { spec: { selector: { matchLabels: Record<string, string> }; endpoints: { port: string }[] } };
    expect(monitor.metadata?.labels?.release).toBe("prometheus");
    const services = objects.filter((o) => o.kind === "Service") as (KubernetesObject & { spec: { ports: { name: string }[] } })[];
    const selected = services.filter((s) => Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => s.metadata?.labels?.[k] === v));
    expect(selected.map((s) => s.metadata?.name).sort()).toEqual(["kw-authz", "kw-operator-metrics"]);
    for (const s of selected) expect(s.spec.ports.map((p) => p.name)).toContain(monitor.spec.endpoints[0]?.port);
    for (const o of [monitor, ...selected]) await expect(rest.create(o, { dryRun: true }), o.kind).resolves.toBeDefined();
  });

  it("puts the access-log receiver on the Service and passes its address to keyward", () => {
    const off = render();
    const svc = (objs: KubernetesObject[]) => (objs.find((o) => o.kind === "Service" && o.metadata?.name === "kw-authz") as KubernetesObject & { spec: { ports: { name: string; port: number; appProtocol?: string }[] } }).spec.ports;
    const args = (objs: KubernetesObject[]) =>
      (objs.find((o) => o.kind === "Deployment" && o.metadata?.name === "kw-authz") as KubernetesObject & { spec: { template: { spec: { containers: { args: string[] }[] } } } }).spec.template.spec.containers[0]?.args ?? [];
    expect(svc(off).map((p) => p.name)).not.toContain("access-log");
    expect(loadConfig(args(off).slice(1), {}).config.accessLogAddress).toBe("");
    const on = render("authz.accessLogPort=9003");
    expect(svc(on).find((p) => p.name === "access-log")).toEqual({ name: "access-log", port: 9003, targetPort: "access-log", appProtocol: "grpc" });
    expect(loadConfig(args(on).slice(1), {}).config.accessLogAddress).toBe("0.0.0.0:9003");
    expect(loadConfig(args(on).slice(1), {}).config).toMatchObject({ accessLogClientCaFile: "", accessLogMaxConnections: 256, accessLogMaxEntryAge: 3_600_000 });
    // mTLS: the Secret mounted whole (kubelet's renewals reach keyward), the flags load.
    const mtls = render("authz.accessLogPort=9003", "authz.accessLog.tls.secretName=als", "authz.accessLog.tls.allowedPeers={spiffe://cluster.local/ns/ingress/sa/envoy,spiffe://cluster.local/ns/edge/*}");
    expect(loadConfig(args(mtls).slice(1), {}).config).toMatchObject({
      accessLogTlsCertFile: "/etc/keyward/access-log-tls/tls.crt",
      accessLogTlsKeyFile: "/etc/keyward/access-log-tls/tls.key",
      accessLogClientCaFile: "/etc/keyward/access-log-tls/ca.crt",
      accessLogAllowedPeers: ["spiffe://cluster.local/ns/ingress/sa/envoy", "spiffe://cluster.local/ns/edge/*"],
    });
    const pod = (mtls.find((o) => o.kind === "Deployment" && o.metadata?.name === "kw-authz") as KubernetesObject & { spec: { template: { spec: { volumes: { name: string; secret?: { secretName: string } }[]; containers: { volumeMounts: { name: string; mountPath: string }[] }[] } } } }).spec.template.spec;
    expect(pod.volumes).toContainEqual({ name: "access-log-tls", secret: { secretName: "als" } });
    expect(pod.containers[0]?.volumeMounts).toContainEqual({ name: "access-log-tls", mountPath: "/etc/keyward/access-log-tls", readOnly: true });
    const proof = render("authz.accessLogPort=9003", "authz.accessLog.proofKeySecretName=als-proof");
    expect(loadConfig(args(proof).slice(1), {}).config.accessLogProofKeyFile).toBe("/etc/keyward/access-log-proof/proof-keys");
    const proofPod = (proof.find((o) => o.kind === "Deployment" && o.metadata?.name === "kw-authz") as typeof mtls[number] & { spec: { template: { spec: { volumes: unknown[] } } } }).spec.template.spec;
    expect(proofPod.volumes).toContainEqual({ name: "access-log-proof", secret: { secretName: "als-proof" } });
    // Without the port, no TLS flags or mounts.
    expect(args(render("authz.accessLog.tls.secretName=als")).some((a) => a.startsWith("--access-log"))).toBe(false);
  });

  it("spreads the data plane over zones and nodes, selecting its own pods", async () => {
    const authz = render().find((o) => o.kind === "Deployment" && o.metadata?.name === "kw-authz") as KubernetesObject & {
      spec: { template: { metadata: { labels: Record<string, string> }; spec: { topologySpreadConstraints?: { topologyKey: string; labelSelector: { matchLabels: Record<string, string> } }[] } } };
    };
    const spread = authz.spec.template.spec.topologySpreadConstraints ?? [];
    expect(spread.map((c) => c.topologyKey)).toEqual(["topology.kubernetes.io/zone", "kubernetes.io/hostname"]);
    for (const c of spread) expect(c.labelSelector.matchLabels).toEqual(authz.spec.template.metadata.labels);
    await expect(rest.create(authz, { dryRun: true })).resolves.toBeDefined();
    const own = render('--set-json=authz.topologySpreadConstraints=[{"maxSkew":2,"topologyKey":"zone","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"tier":"edge"}}}]').find(
      (o) => o.kind === "Deployment" && o.metadata?.name === "kw-authz",
    ) as typeof authz;
    expect(own.spec.template.spec.topologySpreadConstraints).toEqual([{ maxSkew: 2, topologyKey: "zone", whenUnsatisfiable: "DoNotSchedule", labelSelector: { matchLabels: { tier: "edge" } } }]);
    expect(render("authz.topologySpreadConstraints=null").find((o) => o.kind === "Deployment" && o.metadata?.name === "kw-authz")).not.toHaveProperty("spec.template.spec.topologySpreadConstraints");
  });

  describe("NetworkPolicy", () => {
    interface Policy extends KubernetesObject {
      spec: {
        podSelector: { matchLabels: Record<string, string> };
        policyTypes: string[];
        ingress: { from: { namespaceSelector: { matchExpressions: { key: string; operator: string; values: string[] }[] } }[]; ports: { port: string }[] }[];
      };
    }
    const policies = (...values: string[]): Policy[] => render("networkPolicy.enabled=true", ...values).filter((o) => o.kind === "NetworkPolicy") as Policy[];
    /** The ports each named namespace may reach on the pods a policy selects. */
    const admitted = (p: Policy): Record<string, string[]> => {
      const out: Record<string, string[]> = {};
      for (const rule of p.spec.ingress) {
        for (const from of rule.from) {
          const [e] = from.namespaceSelector.matchExpressions;
          expect(e).toMatchObject({ key: "kubernetes.io/metadata.name", operator: "In" });
          for (const ns of e?.values ?? []) out[ns] = [...(out[ns] ?? []), ...rule.ports.map((x) => x.port)];
        }
      }
      return out;
    };

    it("is off by default, and refuses to render without the proxies' namespaces", () => {
      expect(render().filter((o) => o.kind === "NetworkPolicy")).toEqual([]);
      expect(() => render("networkPolicy.enabled=true")).toThrow(/networkPolicy.checkClientNamespaces must name/);
    });

    it("admits the check ports only from the named namespaces and /metrics only from monitoring", async () => {
      const [authz, operator] = policies("networkPolicy.checkClientNamespaces={istio-system,gateways}", "authz.accessLogPort=9003");
      expect(authz?.spec.podSelector.matchLabels["app.kubernetes.io/component"]).toBe("authz");
      expect(authz?.spec.policyTypes).toEqual(["Ingress"]);
      expect(admitted(authz as Policy)).toEqual({ "istio-system": ["grpc", "http-auth", "access-log"], gateways: ["grpc", "http-auth", "access-log"], monitoring: ["metrics"] });
      expect(operator?.spec.podSelector.matchLabels["app.kubernetes.io/component"]).toBe("operator");
      expect(admitted(operator as Policy)).toEqual({ monitoring: ["metrics"] });
      // Every port a policy names is a port of the pods it selects.
      const deployments = render("authz.accessLogPort=9003").filter((o) => o.kind === "Deployment") as (KubernetesObject & {
        spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: { ports: { name: string }[] }[] } } };
      })[];
      for (const p of [authz, operator] as Policy[]) {
        const d = deployments.find((x) => Object.entries(p.spec.podSelector.matchLabels).every(([k, v]) => x.spec.template.metadata.labels[k] === v));
        const ports = d?.spec.template.spec.containers[0]?.ports.map((x) => x.name) ?? [];
        for (const rule of p.spec.ingress) for (const port of rule.ports) expect(ports, `${p.metadata?.name ?? ""}: ${port.port}`).toContain(port.port);
        await expect(rest.create(p, { dryRun: true })).resolves.toBeDefined();
      }
    });

    it("leaves out the HTTP auth port when it is off, and admits no scrapes without metricsNamespaces", () => {
      const [authz, operator] = policies("networkPolicy.checkClientNamespaces={envoy}", "authz.httpAuthPort=0", "networkPolicy.metricsNamespaces=null");
      expect(admitted(authz as Policy)).toEqual({ envoy: ["grpc"] });
      expect(operator?.spec.ingress).toEqual([]);
    });
  });
});
