// `make demo`: a local control plane, keyward's CRDs and samples, `keyward run`
// (operator + ext_authz) issuing the keys, then allowed and denied requests with
// each decision printed. The control plane keeps running afterwards
// (`make cluster-down` stops it); keyward itself stops when the demo ends. It closes
// with kubectl commands (the kubectl `make kubectl` builds, the kubectl keyward
// plugin) that it has just run, with a kubeconfig it writes for them, and with the
// commands that open the web console on the demo's keys, also run once first
// (scripts/demo-console.ts).
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, openSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { parse, stringify } from "yaml";
import type { KubernetesObject } from "@kubernetes/client-node";
import type { ApiKey } from "../src/api/types.ts";
import { FIELD_MANAGER, applyManifestFiles, installCrds } from "../src/k8s/apply.ts";
import { loadKubeConfig } from "../src/k8s/client.ts";
import { KubeRest, isConflict, isNotFound } from "../src/k8s/rest.ts";
import { formatTable } from "../src/cli/table.ts";
import { freePort } from "../test/controlplane/controlplane.ts";
import { VIEWER, VIEWER_TOKEN_SECONDS, checkConsole, hintCommands, writeViewerKubeconfig } from "./demo-console.ts";

const root = resolve(import.meta.dirname, "..");
const namespace = process.env.KEYWARD_DEMO_NAMESPACE ?? "keyward-demo";
const step = (s: string): void => {
  console.log(`\n==> ${s}`);
};

async function until<T>(fn: () => Promise<T | undefined>, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

step("starting the local control plane (etcd, kube-apiserver, kube-controller-manager)");
const kubeconfig = execFileSync(process.execPath, [join(root, "test", "controlplane", "cli.ts"), "up"], {
  stdio: ["ignore", "pipe", "inherit"],
})
  .toString()
  .trim();
const adminKc = loadKubeConfig(kubeconfig);
const rest = new KubeRest(adminKc, { qps: 0 });

step("installing the CRDs ApiKey and ApiKeyPolicy (keyward.dev/v1alpha1)");
await installCrds(rest);
// Every demo starts from a fresh namespace (kube-controller-manager finalizes the old one).
const nsPath = `/api/v1/namespaces/${namespace}`;
if (await rest.request("DELETE", nsPath).then(() => true, () => false)) {
  console.log(`  removing the namespace ${namespace} left by an earlier demo`);
  await until(async () => rest.request("GET", nsPath).then(() => undefined, (err: unknown) => (isNotFound(err) ? true : undefined)), 120_000, `namespace ${namespace} to go`);
}
await rest.apply({ apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } }, FIELD_MANAGER);
// The bring-your-own-key sample reads its key from a Secret another tool would manage.
await rest
  .create({
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "initech-billing-key", namespace },
    data: { token: Buffer.from(randomBytes(32).toString("base64url")).toString("base64") },
  } as KubernetesObject)
  .catch((err: unknown) => {
    if (!isConflict(err)) throw err;
  });

step("starting keyward run (operator + ext_authz) against it");
const [grpcPort, httpPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
const logFile = join(dirname(kubeconfig), "keyward-demo.log");
// Every request on record, in the embedded default store: one SQLite file.
const analyticsFile = join(mkdtempSync(join(tmpdir(), "keyward-demo-")), "analytics.sqlite");
const keyward = spawn(
  process.execPath,
  [
    join(root, "src", "main.ts"),
    "run",
    `--kubeconfig=${kubeconfig}`,
    `--namespaces=${namespace}`,
    "--no-leader-elect",
    `--grpc-address=127.0.0.1:${grpcPort}`,
    `--http-auth-address=127.0.0.1:${httpPort}`,
    // The probes below send what Traefik's forwardAuth sends.
    "--http-auth-proxy=traefik",
    `--metrics-address=127.0.0.1:${metricsPort}`,
    "--analytics-store=sqlite",
    `--analytics-sqlite-path=${analyticsFile}`,
  ],
  { stdio: ["ignore", openSync(logFile, "w"), openSync(logFile, "a")] },
);
const stopKeyward = (): void => {
  keyward.kill("SIGTERM");
};
process.on("exit", stopKeyward);
await until(
  async () => ((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).ok ? true : undefined),
  30_000,
  `keyward to be ready (log: ${logFile})`,
);
console.log(`  gRPC ext_authz on 127.0.0.1:${grpcPort}, HTTP auth on 127.0.0.1:${httpPort}, metrics on 127.0.0.1:${metricsPort}`);
console.log(`  logs: ${logFile}`);

step(`applying config/samples/ in namespace ${namespace}`);
const samples = readdirSync(join(root, "config", "samples"))
  .filter((f) => f.endsWith(".yaml"))
  .map((f) => join(root, "config", "samples", f));
for (const obj of await applyManifestFiles(rest, samples, { namespace })) {
  console.log(`  ${obj.kind ?? ""}/${obj.metadata?.name ?? ""} applied`);
}

step("waiting for keyward to issue the keys");
const list = await until(
  async () => {
    const l = await rest.request<{ items: ApiKey[] }>("GET", `/apis/keyward.dev/v1alpha1/namespaces/${namespace}/apikeys`);
    return l.items.every((k) => k.status?.conditions?.some((c) => c.type === "Ready")) ? l : undefined;
  },
  30_000,
  "every ApiKey to report Ready",
);
const rows = list.items.map((k) => [
  k.metadata.name,
  k.spec.owner,
  k.status?.state ?? "-",
  k.status?.currentKeyId ?? "-",
  k.status?.secretName ?? "-",
  k.status?.nextRotationAt ?? "-",
]);
console.log(formatTable(["NAME", "OWNER", "STATE", "KEY ID", "SECRET", "NEXT ROTATION"], rows, "  "));

step("requests through the HTTP auth endpoint (as nginx auth_request or Traefik forwardAuth send them)");
async function keyFromSecret(name: string): Promise<string> {
  // What a client workload does: read the key from the Secret it mounts. Never printed.
  const s = await rest.request<{ data: Record<string, string> }>("GET", `/api/v1/namespaces/${namespace}/secrets/${name}`);
  return Buffer.from(s.data["api-key"] ?? "", "base64").toString("utf8");
}
// The Secret is written just after the status that made the key Ready.
const globex = await until(() => keyFromSecret("globex-reports-apikey"), 10_000, "Secret globex-reports-apikey");
const acme = await until(() => keyFromSecret("acme-orders-apikey"), 10_000, "Secret acme-orders-apikey");
interface Probe {
  what: string;
  method: string;
  path: string;
  key?: string;
}
const probes: Probe[] = [
  { what: "globex key, GET /v1/orders (has orders:read)", method: "GET", path: "/v1/orders", key: globex },
  { what: "globex key, POST /v1/orders (lacks orders:write)", method: "POST", path: "/v1/orders", key: globex },
  { what: "no key", method: "GET", path: "/v1/orders" },
  { what: "a key keyward never issued", method: "GET", path: "/v1/orders", key: `kw_${randomBytes(30).toString("base64url")}` },
  { what: "acme key from 127.0.0.1 (allowedSources is 203.0.113.0/24)", method: "GET", path: "/v1/orders", key: acme },
];
const decide = async (p: Probe): Promise<string[]> => {
  const headers: Record<string, string> = {
    "x-forwarded-host": "orders.example.com",
    "x-forwarded-method": p.method,
    "x-forwarded-uri": p.path,
  };
  if (p.key) headers["x-api-key"] = p.key;
  const res = await fetch(`http://127.0.0.1:${httpPort}/`, { headers });
  await res.arrayBuffer();
  // The caller learns only the status; the reason goes to keyward's decision log.
  const detail =
    res.status === 200
      ? `key id ${res.headers.get("x-keyward-key-id") ?? "?"}, owner ${res.headers.get("x-keyward-owner") ?? "?"}`
      : res.status === 401
        ? `WWW-Authenticate: ${res.headers.get("www-authenticate") ?? ""}`
        : res.status === 429
          ? `Retry-After: ${res.headers.get("retry-after") ?? ""}, RateLimit-Remaining: ${res.headers.get("ratelimit-remaining") ?? ""}`
          : "forbidden";
  return [p.what, String(res.status), detail];
};
const results: string[][] = [];
for (const p of probes) results.push(await decide(p));
// The policy's default rate limit is 10 requests per second: the 11th in a burst is throttled.
let throttled: string[] | undefined;
for (let i = 0; i < 15 && !throttled; i++) {
  const r = await decide({ what: "globex key, a burst of requests (rate 10/s)", method: "GET", path: "/v1/orders", key: globex });
  if (r[1] === "429") throttled = r;
}
if (throttled) results.push(throttled);
console.log(formatTable(["REQUEST", "STATUS", "DETAIL"], results, "  "));
console.log(`  the caller sees only the status; the reason of each denial (scope_missing, missing_key,
  unknown_key, source_not_allowed, rate_limited, ...) is in keyward's log: grep '"reason"' ${logFile}`);

step("revoking: kubectl patch apikey globex-reports --type merge -p '{\"spec\":{\"disabled\":true}}'");
await rest.request("PATCH", `/apis/keyward.dev/v1alpha1/namespaces/${namespace}/apikeys/globex-reports`, {
  body: { spec: { disabled: true } },
  contentType: "application/merge-patch+json",
});
const revokedAt = Date.now();
const after = await until(
  async () => {
    const r = await decide({ what: "globex key after revocation", method: "GET", path: "/v1/orders", key: globex });
    return r[1] === "401" ? r : undefined;
  },
  5000,
  "the revocation to reach the ext_authz server",
);
console.log(formatTable(["REQUEST", "STATUS", "DETAIL"], [after], "  "));
console.log(`  denied ${Date.now() - revokedAt} ms after the change reached the apiserver`);

step("stopping keyward: SIGTERM writes the usage rows it still holds to the analytics store");
const exited = new Promise((r) => keyward.once("exit", r));
stopKeyward();
await exited;
const usage = (...args: string[]): void => {
  const cmd = ["usage", ...args, `--namespace=${namespace}`, "--since=1h", `--analytics-sqlite-path=${analyticsFile}`];
  console.log(`\n  $ keyward ${cmd.join(" ")}`);
  const out = execFileSync(process.execPath, [join(root, "src", "main.ts"), ...cmd], { env: { ...process.env, KEYWARD_ANALYTICS_STORE: "sqlite" } }).toString();
  console.log(out.trimEnd().replace(/^/gm, "  "));
};
step("keyward usage: the demo's keys, from the embedded SQLite store");
usage();
usage("endpoints", "--by=path");
usage("status");

// The closing hints run here first, with the kubectl `make kubectl` built, so each one is known to work.
const kubectl = execFileSync(join(root, "scripts", "kubectl-build.sh"), { stdio: ["ignore", "pipe", "inherit"] })
  .toString()
  .trim();
const demoKubeconfig = writeDemoKubeconfig(kubeconfig, namespace);
// node_modules/.bin holds the Node 24 keyward runs on (the system's node may be older).
const hintPath = [dirname(kubectl), join(root, "bin"), join(root, "node_modules", ".bin")].join(delimiter);
const hints: { command: string; args: string[] }[] = [
  { command: `${kubectl} get apikeys,apikeypolicies -o wide`, args: [kubectl, "get", "apikeys,apikeypolicies", "-o", "wide"] },
  { command: "kubectl keyward status acme-orders", args: ["kubectl", "keyward", "status", "acme-orders"] },
  { command: "kubectl keyward reveal acme-orders", args: ["kubectl", "keyward", "reveal", "acme-orders"] },
];
for (const h of hints) {
  const [file = "", ...args] = h.args;
  execFileSync(file, args, {
    env: { ...process.env, KUBECONFIG: demoKubeconfig, PATH: `${hintPath}${delimiter}${process.env.PATH ?? ""}` },
    stdio: ["ignore", "ignore", "pipe"],
  });
}
// The console as a tenant of the demo's namespace opens it: a ServiceAccount's bearer token
// (the usage API authenticates bearer tokens only), limited by the tenant Role.
const viewerKubeconfig = await writeViewerKubeconfig(root, adminKc, rest, namespace, join(dirname(kubeconfig), "demo-viewer.kubeconfig"));
rest.close();
const [runGrpcPort, usagePort, consolePort] = [await freePort(), await freePort(), await freePort()];
const shown = await checkConsole(root, {
  pathPrefix: hintPath,
  ...hintCommands({ kubeconfig, namespace, analyticsFile, viewerKubeconfig, ports: { grpc: runGrpcPort, usage: usagePort, console: consolePort } }),
  expected: list.items.map((k) => k.metadata.name),
});
console.log(`
The control plane keeps running. On this machine, try:
  export KUBECONFIG=${demoKubeconfig}     (namespace ${namespace})
  ${hints[0]?.command ?? ""}
  export PATH=${hintPath}:$PATH     (that kubectl, the kubectl keyward plugin, and Node 24 for node src/main.ts)
  cd ${root}
${hints.slice(1).map((h) => `  ${h.command}`).join("\n")}
  make run     (keyward against this cluster again; then: kubectl keyward rotate acme-orders --grace 1h)
  node src/main.ts usage --analytics-sqlite-path=${analyticsFile}     (the demo's requests, from its analytics store)
The web console on the demo's keys (docs/console.md): keyward with its usage API, then the console
as ServiceAccount ${VIEWER} (Role keyward-tenant; its token in ${viewerKubeconfig} expires in ${VIEWER_TOKEN_SECONDS / 3600} h).
It just ran these (the console listed ${shown.keys.join(", ")}); their ports were free then: if one is taken, pick another:
  node src/main.ts ${shown.run.join(" ")} &
  node src/main.ts ${shown.console.join(" ")}
  then open the URL the console prints, http://127.0.0.1:${consolePort}/?token=... (Ctrl-C stops the console, kill %1 keyward)
Stop it with: make cluster-down`);

/** A copy of the control plane's kubeconfig whose context defaults to the demo's namespace. */
function writeDemoKubeconfig(source: string, ns: string): string {
  const config = parse(readFileSync(source, "utf8")) as { "current-context"?: string; contexts?: { name: string; context: { namespace?: string } }[] };
  for (const c of config.contexts ?? []) if (c.name === config["current-context"]) c.context.namespace = ns;
  const path = join(dirname(source), "demo.kubeconfig");
  writeFileSync(path, stringify(config), { mode: 0o600 });
  return path;
}
