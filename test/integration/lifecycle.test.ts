// A SIGTERM during start-up: keyward's signal handlers are installed before any
// start-up work, so a signal while the caches sync stops what has started, in
// order, and exits 0 (without them, Node's default handler ends the process
// by the signal, and nothing is stopped). The sync is held deterministically:
// against the real apiserver by an identity that may not list ApiKeys (the
// lists are refused and retried, never synced), and against a server that
// accepts connections and never answers.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { tokenKubeConfig } from "../conformance/harness.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { startKeyward, logRecords, type Keyward } from "../support/keyward.ts";
import { createTestNamespace, deleteNamespace, eventually, writeKubeconfig } from "../support/k8s.ts";

/** Waits until `started` holds, then sends SIGTERM and returns the exit code and the log records. */
async function termDuringStart(kw: Keyward, started: () => boolean, what: string) {
  try {
    await eventually(() => (started() ? true : undefined), 30_000, what);
    kw.child.kill("SIGTERM");
    const code = await Promise.race([kw.exited, new Promise<"hung">((r) => setTimeout(() => { r("hung"); }, 20_000).unref())]);
    return { code, records: logRecords(kw.output()) };
  } finally {
    if (kw.child.exitCode === null && kw.child.signalCode === null) kw.child.kill("SIGKILL");
  }
}

/** The lifecycle's records from "shutting down" on, as `msg part`. */
const stopSequence = (records: Record<string, unknown>[]): string[] => {
  const from = records.findIndex((r) => r.msg === "shutting down");
  return records.slice(from).flatMap((r) => (["shutting down", "stopping", "stopped", "error while stopping"].includes(String(r.msg)) ? [`${String(r.msg)}${typeof r.part === "string" ? ` ${r.part}` : ""}`] : []));
};

describe("SIGTERM during start-up", () => {
  let dir: string;
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let ns: string;
  let stalled: Server;
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "keyward-lifecycle-"));
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    ns = await createTestNamespace(adminKc, "lifecycle");
    // Accepts connections and never answers: every request of keyward's hangs.
    stalled = createServer((s) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((r) => stalled.listen(0, "127.0.0.1", r));
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => stalled.close(() => { r(); }));
    await deleteNamespace(adminKc, ns);
    admin.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("keyward run, whose operator cannot list ApiKeys on the real apiserver, stops what has started and exits 0", async () => {
    // A ServiceAccount with no RBAC at all: every list is Forbidden, the caches never sync.
    await admin.request("POST", `/api/v1/namespaces/${ns}/serviceaccounts`, { body: { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "nobody" } } });
    const tr = await admin.request<{ status: { token: string } }>("POST", `/api/v1/namespaces/${ns}/serviceaccounts/nobody/token`, {
      body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 3600 } },
    });
    const kc = tokenKubeConfig(adminKc, "nobody", tr.status.token);
    const kw = startKeyward(["run", `--kubeconfig=${writeKubeconfig(join(dir, "nobody"), kc)}`, `--namespaces=${ns}`, `--metrics-address=127.0.0.1:${await freePort()}`, `--grpc-address=127.0.0.1:${await freePort()}`, "--http-auth-address="]);
    // The operator has begun its sync and the apiserver has refused a list.
    const { code, records } = await termDuringStart(
      kw,
      () => logRecords(kw.output()).some((r) => r.msg === "watch problem" && r.component === "operator"),
      "a refused list during the operator's sync",
    );
    expect(code).toBe(0);
    expect(records.some((r) => r.msg === "operator caches synced")).toBe(false);
    expect(records.find((r) => r.msg === "shutting down")).toMatchObject({ signal: "SIGTERM", starting: ["operator"] });
    expect(stopSequence(records)).toEqual(["shutting down", "stopping operator client", "stopped"]);
  });

  it("keyward authz --authz-workers 2, its apiserver not answering, stops what has started and exits 0", async () => {
    const kc = new KubeConfig();
    const { port } = stalled.address() as { port: number };
    kc.loadFromOptions({
      // The TLS handshake itself never completes.
      clusters: [{ name: "stalled", server: `https://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: "u", token: "unused" }],
      contexts: [{ name: "stalled", cluster: "stalled", user: "u" }],
      currentContext: "stalled",
    });
    const kw = startKeyward(["authz", "--authz-workers=2", `--kubeconfig=${writeKubeconfig(join(dir, "stalled"), kc)}`, `--metrics-address=127.0.0.1:${await freePort()}`, `--grpc-address=127.0.0.1:${await freePort()}`, "--http-auth-address="]);
    const { code, records } = await termDuringStart(kw, () => sockets.size > 0, "keyward's first request to the stalled apiserver");
    expect(code).toBe(0);
    expect(records.find((r) => r.msg === "shutting down")).toMatchObject({ signal: "SIGTERM", starting: ["usage"] });
    expect(stopSequence(records)).toEqual(["shutting down", "stopping usage client", "stopped"]);
  });
});
