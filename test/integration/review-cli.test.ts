// `keyward review` as a real process: the live ApiKeys and ApiKeyPolicies of
// the real apiserver joined with a seeded SQLite store, and, when the cluster
// cannot be reached, the store's key records alone, saying so.
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ApiKey } from "../../src/api/types.ts";
import { openAnalyticsStore } from "../../src/analytics/store.ts";
import type { Review } from "../../src/analytics/review.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import { createKey, createPolicy } from "../conformance/harness.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { createTestNamespace, deleteNamespace } from "../support/k8s.ts";

const root = resolve(import.meta.dirname, "..", "..");
const run = promisify(execFile);
const DAY = 86_400_000;

describe("keyward review", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let ns: string;
  let dir: string;
  let file: string;

  const review = async (...args: string[]): Promise<{ stdout: string; stderr: string }> =>
    run(process.execPath, [join(root, "src", "main.ts"), "review", "--analytics-store=sqlite", `--analytics-sqlite-path=${file}`, ...args], { cwd: root });

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    ns = await createTestNamespace(adminKc, "review");
    dir = mkdtempSync(join(tmpdir(), "keyward-review-"));
    file = join(dir, "analytics.sqlite");
    await createPolicy(admin, ns, "api", { hosts: ["review.example.com"], rules: [{ name: "read", paths: ["/r/*"], methods: ["GET"], scopes: ["r:read"] }] });
    await createKey(admin, ns, "used", { owner: "acme", scopes: ["r:read", "r:write"] }, { owner: "team-a" });
    await createKey(admin, ns, "idle", { owner: "acme", scopes: [], expiresAt: new Date(Date.now() + 3 * DAY).toISOString() });
    const keys = (await admin.request<{ items: ApiKey[] }>("GET", `/apis/keyward.dev/v1alpha1/namespaces/${ns}/apikeys`)).items;
    const uid = (name: string): string => keys.find((k) => k.metadata.name === name)?.metadata.uid ?? "";
    const now = Date.now();
    const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: file, postgresUrl: "", retentionMs: 30 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0 }, createLogger({ sink: () => {} }));
    // The store saw both keys 100 days ago (records written then); "used" was used an hour ago.
    await store.upsertKeys(keys.map((k) => ({ uid: uid(k.metadata.name), namespace: ns, name: k.metadata.name, owner: "acme", labels: k.metadata.labels ?? {}, scopes: k.spec.scopes ?? [], createdAt: now - 100 * DAY })));
    await store.writeRequests([{ at: now - 3_600_000, uid: uid("used"), keyId: "kwt_used", front: "grpc", policy: `${ns}/api`, rule: "read", outcome: "allowed", reason: "allowed", status: 200, checkMicros: 5 }]);
    await store.close();
  });

  afterAll(async () => {
    await deleteNamespace(adminKc, ns);
    admin.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("joins the live ApiKeys and policies with the store", async () => {
    const { stdout } = await review(`--kubeconfig=${inject("kubeconfig")}`, `--namespace=${ns}`, "-o", "json");
    const r = JSON.parse(stdout) as Review;
    expect(r.source).toBe("cluster");
    expect(r.keys).toBe(2);
    expect(r.unusedScopes).toMatchObject([{ name: "used", granted: ["r:read", "r:write"], unused: ["r:write"] }]);
    expect(r.neverRotated.map((k) => k.name)).toEqual(["idle", "used"]);
    expect(r.expiringSoon).toMatchObject([{ name: "idle", daysLeft: 2 }]);
    expect(r.withoutOwner.map((k) => k.name)).toEqual(["idle"]);
    // The live keys were created now: not yet 30 days unused, whatever the store says.
    expect([...r.unused30, ...r.unused90]).toEqual([]);
    const md = await review(`--kubeconfig=${inject("kubeconfig")}`, `--namespace=${ns}`);
    expect(md.stdout).toContain(`| ${ns}/used | acme | r:read, r:write | r:write |  |`);
  });

  it("without a reachable cluster, uses the store's key records and says so", async () => {
    const port = await freePort();
    const kc = join(dir, "down");
    writeFileSync(kc, JSON.stringify({ apiVersion: "v1", kind: "Config", clusters: [{ name: "c", cluster: { server: `https://127.0.0.1:${port}` } }], users: [{ name: "u", user: { token: "t" } }], contexts: [{ name: "x", context: { cluster: "c", user: "u" } }], "current-context": "x" }));
    const { stdout } = await review(`--kubeconfig=${kc}`, `--namespace=${ns}`, "--cluster-timeout=2");
    expect(stdout).toMatch(/\*\*The cluster could not be read \(.*ECONNREFUSED.*\): this review uses the analytics store's key records only\.\*\*/);
    // From the store: "idle" was never used in the 100 days it has been on record.
    expect(stdout).toMatch(new RegExp(`## Unused for 90 days or more\\n\\n.*\\n.*\\n\\| ${ns}/idle \\| acme \\| never \\| 100 \\|`));
    expect(stdout).toContain("## Never rotated\n\nNot checked: needs the cluster.");
  });
});
