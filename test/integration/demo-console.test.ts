// The demo's closing console hint (scripts/demo-console.ts) on the real apiserver:
// the viewer it makes (a ServiceAccount bound to config/rbac/tenant/role.yaml, a
// TokenRequest token in a 0600 kubeconfig) opens the console through `keyward run
// --usage-api-address` and `keyward console --usage-url`, both real child processes,
// and sees the sample keys; an identity without the tenant Role sees none, and the
// check says so rather than printing a hint that does not work. Neither leaves a
// process behind.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { applyManifestFiles } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { checkConsole, hintCommands, writeViewerKubeconfig } from "../../scripts/demo-console.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { createTestNamespace, deleteNamespace } from "../support/k8s.ts";
import { tokenKubeConfig } from "../support/rbac.ts";

const ROOT = resolve(import.meta.dirname, "..", "..");
const NODE_BIN = join(ROOT, "node_modules", ".bin");
let dir: string;
let ns: string;
let admin: KubeRest;

const args = async (viewerKubeconfig: string): Promise<{ run: string[]; console: string[] }> =>
  hintCommands({
    kubeconfig: inject("kubeconfig"),
    namespace: ns,
    analyticsFile: join(dir, "analytics.sqlite"),
    viewerKubeconfig,
    ports: { grpc: await freePort(), usage: await freePort(), console: await freePort() },
  });

beforeAll(async () => {
  const kc = loadKubeConfig(inject("kubeconfig"));
  admin = new KubeRest(kc, { qps: 0 });
  ns = await createTestNamespace(kc, "demo-console");
  dir = mkdtempSync(join(tmpdir(), "keyward-demo-console-it-"));
  await applyManifestFiles(admin, ["apikeypolicy-orders.yaml", "apikey-orders.yaml"].map((f) => join(ROOT, "config", "samples", f)), { namespace: ns });
}, 60_000);

afterAll(async () => {
  admin.close();
  await deleteNamespace(loadKubeConfig(inject("kubeconfig")), ns);
  rmSync(dir, { recursive: true, force: true });
});

describe("the demo's console hint", () => {
  it("lists the demo's keys through keyward console as the viewer, then leaves no process behind", async () => {
    const kubeconfig = await writeViewerKubeconfig(ROOT, loadKubeConfig(inject("kubeconfig")), admin, ns, join(dir, "viewer.kubeconfig"));
    expect(statSync(kubeconfig).mode & 0o777).toBe(0o600);
    const shown = await checkConsole(ROOT, { pathPrefix: NODE_BIN, ...(await args(kubeconfig)), expected: ["acme-orders"] });
    expect(shown.keys).toContain("acme-orders");
    expect(execFileSync("ps", ["-eo", "args"]).toString()).not.toContain(dir);
  }, 120_000);

  it("fails, with both processes stopped, when the console's identity may not get the demo's keys", async () => {
    // A ServiceAccount of the namespace without the tenant Role: the hint would show it nothing.
    await admin.request("POST", `/api/v1/namespaces/${ns}/serviceaccounts`, { body: { metadata: { name: "stranger" } } });
    const kubeconfig = join(dir, "stranger.kubeconfig");
    writeFileSync(kubeconfig, (await tokenKubeConfig(loadKubeConfig(inject("kubeconfig")), admin, { namespace: ns, name: "stranger" })).exportConfig(), { mode: 0o600 });
    await expect(checkConsole(ROOT, { pathPrefix: NODE_BIN, ...(await args(kubeconfig)), expected: ["acme-orders"], timeoutMs: 10_000 })).rejects.toThrow(/inventory to list acme-orders/);
    expect(execFileSync("ps", ["-eo", "args"]).toString()).not.toContain(dir);
  }, 120_000);
});

