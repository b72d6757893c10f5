// The demo's closing console hint, run once before it is printed. The usage API
// authenticates bearer tokens only (TokenReview) and answers for the namespaces where
// the caller may get apikeys, so the console runs as a tenant would: a ServiceAccount
// of the demo's namespace bound to the tenant Role (config/rbac/tenant/), with a
// TokenRequest token in a kubeconfig next to the demo's.
// keyward runs with its usage API over the demo's analytics file, `keyward console`
// with that kubeconfig; the URL it prints is followed as a browser follows it, and the
// inventory read through it must list the demo's keys. Both processes are then stopped.
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { send } from "../src/console/http.test-support.ts";
import { FIELD_MANAGER, applyManifestFiles } from "../src/k8s/apply.ts";
import type { KubeRest } from "../src/k8s/rest.ts";
import { alive } from "../test/controlplane/controlplane.ts";
import { eventually } from "../test/support/k8s.ts";
import { tokenKubeConfig } from "../test/support/rbac.ts";

export const VIEWER = "keyward-demo-viewer";
/** How long the viewer's token is valid. */
export const VIEWER_TOKEN_SECONDS = 24 * 3600;

/**
 * The viewer ServiceAccount in `namespace`, bound to the Role config/rbac/tenant/role.yaml,
 * and `path` (mode 0600): a kubeconfig holding a fresh token of it.
 */
export async function writeViewerKubeconfig(root: string, adminKc: KubeConfig, rest: KubeRest, namespace: string, path: string): Promise<string> {
  await applyManifestFiles(rest, [join(root, "config", "rbac", "tenant", "role.yaml")], { namespace });
  await rest.apply({ apiVersion: "v1", kind: "ServiceAccount", metadata: { name: VIEWER, namespace } }, FIELD_MANAGER);
  await rest.apply(
    {
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: VIEWER, namespace },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "keyward-tenant" },
      subjects: [{ kind: "ServiceAccount", name: VIEWER, namespace }],
    } as Parameters<KubeRest["apply"]>[0],
    FIELD_MANAGER,
  );
  const kc = await tokenKubeConfig(adminKc, rest, { namespace, name: VIEWER }, { expirationSeconds: VIEWER_TOKEN_SECONDS, namespace });
  writeFileSync(path, kc.exportConfig(), { mode: 0o600 });
  // A file an earlier demo left keeps its mode through writeFileSync.
  chmodSync(path, 0o600);
  return path;
}

export interface HintPlaces {
  /** keyward's kubeconfig (the control plane's). */
  kubeconfig: string;
  namespace: string;
  analyticsFile: string;
  viewerKubeconfig: string;
  ports: { grpc: number; usage: number; console: number };
}

/** The hint's two commands, after `node src/main.ts`: keyward with its usage API (no HTTP auth, no metrics), and the console. */
export function hintCommands(p: HintPlaces): { run: string[]; console: string[] } {
  return {
    run: [
      "run",
      `--kubeconfig=${p.kubeconfig}`,
      `--namespaces=${p.namespace}`,
      "--no-leader-elect",
      `--grpc-address=127.0.0.1:${p.ports.grpc}`,
      "--http-auth-address=",
      "--metrics-address=",
      "--analytics-store=sqlite",
      `--analytics-sqlite-path=${p.analyticsFile}`,
      `--usage-api-address=127.0.0.1:${p.ports.usage}`,
    ],
    console: ["console", `--kubeconfig=${p.viewerKubeconfig}`, `--usage-url=http://127.0.0.1:${p.ports.usage}`, "--no-open", "--port", String(p.ports.console)],
  };
}

export interface ConsoleCheck {
  /** `keyward run` with the usage API and `keyward console`, the arguments after `node src/main.ts`. */
  run: string[];
  console: string[];
  /** The names of the keys the inventory listed. */
  keys: string[];
}

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** `node src/main.ts ...args` in `root`, as typed in a shell whose PATH starts with `pathPrefix`. */
function start(root: string, pathPrefix: string, args: string[]): Started {
  const env = { ...process.env, KUBECONFIG: "", PATH: `${pathPrefix}${delimiter}${process.env.PATH ?? ""}` };
  const child = spawn("node", [join("src", "main.ts"), ...args], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const keep = (c: Buffer): void => {
    out += c.toString("utf8");
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => { resolve(code); }));
  return { child, output: () => out, exited };
}

/** Stops `p` with `signal`; throws unless it exits 0 within 15 s and its process is gone. */
async function stop(p: Started, signal: NodeJS.Signals, what: string): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill(signal);
  const code = await Promise.race([p.exited, new Promise<"timeout">((r) => setTimeout(() => { r("timeout"); }, 15_000).unref())]);
  if (code === "timeout") {
    p.child.kill("SIGKILL");
    throw new Error(`${what} did not stop within 15 s of ${signal}:\n${p.output()}`);
  }
  if (code !== 0) throw new Error(`${what} exited with ${String(code)}:\n${p.output()}`);
  const pid = p.child.pid;
  if (pid !== undefined && alive(pid)) throw new Error(`${what} (pid ${pid}) is still running`);
}

/**
 * Runs `node src/main.ts` with `run` (keyward with its usage API) and with `console`
 * (--no-open), each as typed in `root` after `export PATH=<pathPrefix>:$PATH`; follows the
 * console's URL and its 303 as a browser does, then reads /api/v1/inventory with the
 * session cookie until it lists every one of `expected` (within `timeoutMs`, default 60 s).
 * Both are stopped before it returns or throws.
 */
export async function checkConsole(root: string, check: { pathPrefix: string; run: string[]; console: string[]; expected: string[]; timeoutMs?: number }): Promise<ConsoleCheck> {
  const keyward = start(root, check.pathPrefix, check.run);
  let viewer: Started | undefined;
  const stopAll = (): void => {
    viewer?.child.kill("SIGINT");
    keyward.child.kill("SIGTERM");
  };
  process.once("exit", stopAll);
  let keys: string[] | undefined;
  let failure: Error | undefined;
  try {
    const c = (viewer = start(root, check.pathPrefix, check.console));
    const printed = await eventually(() => /^Open (http:\/\/127\.0\.0\.1:\d+\/\?token=\S+)/m.exec(c.output())?.[1], 30_000, "keyward console to print its URL").catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}:\n${c.output()}`, { cause: err });
    });
    const url = new URL(printed);
    const port = Number(url.port);
    // The first visit trades the URL's secret for a cookie.
    const first = await send(port, `${url.pathname}${url.search}`);
    const location = first.headers.location;
    const cookie = (first.headers["set-cookie"]?.[0] ?? "").split(";")[0] ?? "";
    if (first.status !== 303 || typeof location !== "string" || !location.startsWith("/") || location.includes("token=") || cookie === "") {
      throw new Error(`the console's URL answered ${first.status}, not a 303 to a page without its secret with a cookie`);
    }
    if ((await send(port, location, { cookie })).status !== 200) throw new Error(`the console's page ${location} did not answer 200`);
    // keyward's usage API comes up after its caches sync: until then the console answers 502.
    keys = await eventually(
      async () => {
        const r = await send(port, "/api/v1/inventory", { cookie });
        if (r.status !== 200) return undefined;
        const names = ((JSON.parse(r.body) as { items?: { name?: unknown }[] }).items ?? []).map((k) => String(k.name));
        return check.expected.every((e) => names.includes(e)) ? names : undefined;
      },
      check.timeoutMs ?? 60_000,
      `the console's inventory to list ${check.expected.join(", ")}`,
    ).catch((err: unknown) => {
      throw new Error(`${err instanceof Error ? err.message : String(err)}\nconsole:\n${c.output()}\nkeyward:\n${keyward.output().slice(-4000)}`, { cause: err });
    });
  } catch (err) {
    failure = err instanceof Error ? err : new Error(String(err));
  }
  process.off("exit", stopAll);
  // A process left running is a failure too.
  const stopped = await Promise.allSettled([stop(keyward, "SIGTERM", "keyward run"), ...(viewer ? [stop(viewer, "SIGINT", "keyward console")] : [])]);
  if (failure !== undefined) throw failure;
  const notStopped = stopped.find((s) => s.status === "rejected");
  if (notStopped) throw notStopped.reason instanceof Error ? notStopped.reason : new Error(String(notStopped.reason));
  return { run: check.run, console: check.console, keys: keys ?? [] };
}
