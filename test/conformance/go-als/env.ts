// Helpers for the usage suites: the RBAC the data plane needs on top of its
// read-only role to write usage and raise alerts, a usage service as the data
// plane runs it, and the Go Access Log Service client (built once into the
// tools cache, rebuilt when its sources change).
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import type { KubeConfig } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { defaultConfig, type Config } from "../../../src/config/config.ts";
import { KubeRest } from "../../../src/k8s/rest.ts";
import { createLogger } from "../../../src/log.ts";
import { startUsage, type UsageHandle } from "../../../src/usage/service.ts";
import { toolsBinDir } from "../tools.ts";

/** What keyward authz needs besides config/rbac/authz-role.yaml for usage: patch apikeys/status, create events. */
export const USAGE_RBAC = [
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRole",
    metadata: { name: "keyward-authz-usage" },
    rules: [
      { apiGroups: ["keyward.dev"], resources: ["apikeys/status"], verbs: ["patch"] },
      { apiGroups: [""], resources: ["events"], verbs: ["create"] },
    ],
  },
  {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "ClusterRoleBinding",
    metadata: { name: "keyward-authz-usage" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "keyward-authz-usage" },
    subjects: [{ kind: "ServiceAccount", name: "keyward-authz", namespace: "keyward-system" }],
  },
];

export async function applyUsageRbac(admin: KubeRest): Promise<void> {
  for (const obj of USAGE_RBAC) await admin.apply(obj, "keyward-tests", { force: true });
}

export interface TestUsage {
  handle: UsageHandle;
  registry: Registry;
  logs: string[];
  /** PATCH requests this usage service sent. */
  patches(): number;
  stop(): Promise<void>;
}

/** A usage service with its own REST client (counting its writes) on the data plane's kubeconfig. */
export async function startTestUsage(kc: KubeConfig, overrides: Partial<Config>): Promise<TestUsage> {
  let patches = 0;
  const rest = new KubeRest(kc, {
    qps: 0,
    onRequest: (m) => {
      if (m === "PATCH") patches++;
    },
  });
  const logs: string[] = [];
  const registry = new Registry();
  const config = defaultConfig({ metricsAddress: "", usageFlushInterval: 1000, ...overrides });
  const handle = await startUsage({ config, kc, rest, log: createLogger({ level: "debug", sink: (l) => logs.push(l) }), registry, decisionLogSink: () => undefined });
  return {
    handle,
    registry,
    logs,
    patches: () => patches,
    stop: async () => {
      await handle.stop();
      rest.close();
    },
  };
}

/** Builds test/conformance/go-als into the tools cache when missing or changed; returns the binary. */
export async function buildAlsClient(): Promise<string> {
  const src = import.meta.dirname;
  const files = ["go.mod", "go.sum", ...readdirSync(src).filter((f) => f.endsWith(".go")).sort()];
  const hash = createHash("sha256");
  for (const f of files) hash.update(readFileSync(join(src, f)));
  const digest = hash.digest("hex").slice(0, 16);
  const dir = toolsBinDir();
  const bin = join(dir, "keyward-als-go");
  const stamp = join(dir, ".als-go-hash");
  if (existsSync(bin) && existsSync(stamp) && readFileSync(stamp, "utf8") === digest) return bin;
  mkdirSync(dir, { recursive: true });
  await promisify(execFile)("go", ["build", "-o", bin, "."], { cwd: src, maxBuffer: 16 << 20 });
  writeFileSync(stamp, digest);
  return bin;
}
