// The Helm chart: rendered by helm, every object accepted by the real apiserver
// (server-side dry run), CRDs identical to crds/, RBAC identical to config/rbac/.
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

let kc: KubeConfig;
let rest: KubeRest;

const render = (...args: string[]): KubernetesObject[] =>
  parseManifests(
    execFileSync(helm, ["template", "kw", join(root, "charts", "keyward"), "--namespace", NS, ...args.flatMap((a) => (a.startsWith("--") ? [a] : ["--set", a]))], {
      encoding: "utf8",
    }),
    "helm template",
  );

interface Deployment extends KubernetesObject {
  spec: { template: { spec: { containers: { args?: string[] }[] } } };
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
    const authz = (render("authz.workers=3,authz.grpcTransport=grpc-js").filter((o) => o.kind === "Deployment") as Deployment[]).find((d) => d.metadata?.name === "kw-authz");
    const set = loadConfig(authz?.spec.template.spec.containers[0]?.args?.slice(1) ?? [], {}).config;
    expect(set.authzWorkers).toBe(3);
    expect(set.grpcTransport).toBe("grpc-js");
    const guarded = (render("authz.unknownKeys.threshold=0,authz.unknownKeys.blockAll=true,authz.maxIndexStaleness=10m").filter((o) => o.kind === "Deployment") as Deployment[]).find((d) => d.metadata?.name === "kw-authz");
    const g = loadConfig(guarded?.spec.template.spec.containers[0]?.args?.slice(1) ?? [], {}).config;
    expect(g).toMatchObject({ unknownKeyThreshold: 0, unknownKeyBlockAll: true, maxIndexStaleness: 600_000 });
  });

  it("ships the CRDs of crds/", () => {
    // charts/keyward/crds links to crds/: what helm installs is what the tests validated.
    const rendered = render("--include-crds").filter((o) => o.kind === "CustomResourceDefinition");
    const shipped = readdirSync(join(root, "crds")).flatMap((f) => parseManifests(readFileSync(join(root, "crds", f), "utf8")));
    expect(rendered.length).toBe(2);
    expect(rendered).toEqual(expect.arrayContaining(shipped));
  });

  it("grants the same RBAC as config/rbac/", () => {
    const rendered = render();
    const shipped = readdirSync(join(root, "config", "rbac")).flatMap((f) => parseManifests(readFileSync(join(root, "config", "rbac", f), "utf8")));
    for (const kind of ["ClusterRole", "Role"]) {
      const a = rendered.filter((o) => o.kind === kind).map((o) => JSON.stringify((o as Role).rules)).sort();
      const b = shipped.filter((o) => o.kind === kind).map((o) => JSON.stringify((o as Role).rules)).sort();
      expect(a, kind).toEqual(b);
    }
  });
});
