// The `kubectl keyward` plugin through real kubectl's plugin discovery (bin/ on
// PATH), against the real control plane and the operator, as a tenant: a
// ServiceAccount token kubeconfig bound to config/rbac/tenant/role.yaml in its
// own namespace, and only read access to ApiKeys in a second namespace. Every key
// the test sees is checked to appear on stdout of `reveal` only: never on stderr,
// never in an error.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";
import type { KubeConfig, KubernetesObject } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { applyObjects, parseManifests } from "../../src/k8s/apply.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { verifyKey } from "../../src/keys/keymaterial.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { kubectlDir, kubectlPath, run, tableOf, type Run } from "../support/kubectl.ts";
import { createApiKey, getApiKey, getSecret, ready, startTestOperator, type TestOperator } from "../support/operator.ts";
import { namespacedKubeConfig, tokenKubeConfig } from "../support/rbac.ts";

const root = resolve(import.meta.dirname, "..", "..");
const sha = (s: string): string => `sha256:${createHash("sha256").update(s).digest("hex")}`;

let adminKc: KubeConfig;
let admin: KubeRest;
let tenantNs: string;
let otherNs: string;
let op: TestOperator;
let scratch: string;
let tenantKubeconfig: string;
let linkDir: string;
/** Every plaintext key the test handled; none may be on any stderr. */
const keys = new Set<string>();
const stderrs: string[] = [];

/**
 * `kubectl ARGS` as the tenant. PATH holds the plugin as npm links it (a symlink to
 * bin/kubectl-keyward), kubectl, and the system's directories, whose node (if any) is
 * older than 24: the launcher must find the package's own Node 24.
 */
async function tenant(...args: string[]): Promise<Run> {
  const r = await run(kubectlPath, args, {
    env: { PATH: [linkDir, kubectlDir, "/usr/bin", "/bin"].join(delimiter), HOME: scratch, KUBECONFIG: tenantKubeconfig },
  });
  stderrs.push(r.stderr);
  return r;
}
const ok = async (...args: string[]): Promise<Run> => {
  const r = await tenant(...args);
  expect(r.code, `kubectl ${args.join(" ")}\n${r.stderr}`).toBe(0);
  return r;
};
const fails = async (code: number, ...args: string[]): Promise<Run> => {
  const r = await tenant(...args);
  expect(r.code, `kubectl ${args.join(" ")}\n${r.stdout}`).toBe(code);
  expect(r.stdout).toBe("");
  return r;
};

async function secretKey(ns: string, name: string, field = "api-key"): Promise<string> {
  const v = (await getSecret(admin, ns, name))?.data?.[field];
  if (v === undefined) throw new Error(`no ${field} in ${ns}/${name}`);
  const key = Buffer.from(v, "base64").toString("utf8");
  keys.add(key);
  return key;
}

beforeAll(async () => {
  adminKc = loadKubeConfig(inject("kubeconfig"));
  admin = new KubeRest(adminKc, { qps: 0 });
  tenantNs = await createTestNamespace(adminKc, "tenant");
  otherNs = await createTestNamespace(adminKc, "other");
  // existingSecret is re-read only every 10 minutes here, so a changed Secret is seen by reveal first.
  op = await startTestOperator(await namespacedKubeConfig(adminKc, "operator", [tenantNs, otherNs], "keyward-operator-plugin"), {
    namespaces: [tenantNs, otherNs],
    existingSecretResync: 600_000,
  });
  // The tenant: its own namespace's Role as shipped, and read-only ApiKeys (no Secrets) next door.
  const role = parseManifests(readFileSync(join(root, "config/rbac/tenant/role.yaml"), "utf8"), "role.yaml");
  const sa = { namespace: tenantNs, name: "tenant-user" };
  const subject = [{ kind: "ServiceAccount", ...sa }];
  const objects: KubernetesObject[] = [
    { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: sa.name, namespace: tenantNs } },
    ...role.map((r) => ({ ...r, metadata: { ...r.metadata, namespace: tenantNs } })),
    { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: "tenant-user", namespace: tenantNs }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "keyward-tenant" }, subjects: subject } as KubernetesObject,
    { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: { name: "apikey-viewer", namespace: otherNs }, rules: [{ apiGroups: ["keyward.dev"], resources: ["apikeys"], verbs: ["get", "list", "watch"] }] } as KubernetesObject,
    { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: "tenant-user", namespace: otherNs }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "apikey-viewer" }, subjects: subject } as KubernetesObject,
  ];
  await applyObjects(admin, objects);
  const tkc = await tokenKubeConfig(adminKc, admin, sa);
  // The context's namespace is the tenant's: commands without -n act there, as kubectl's do.
  const exported = JSON.parse(tkc.exportConfig()) as { contexts: { context: { namespace?: string } }[] };
  for (const c of exported.contexts) c.context.namespace = tenantNs;
  scratch = mkdtempSync(join(tmpdir(), "keyward-plugin-"));
  tenantKubeconfig = join(scratch, "tenant.kubeconfig");
  linkDir = join(scratch, "bin");
  mkdirSync(linkDir);
  symlinkSync(join(root, "bin", "kubectl-keyward"), join(linkDir, "kubectl-keyward"));
  writeFileSync(tenantKubeconfig, JSON.stringify(exported), { mode: 0o600 });
});

afterAll(async () => {
  await op.stop();
  await deleteNamespace(adminKc, tenantNs);
  await deleteNamespace(adminKc, otherNs);
  admin.close();
  rmSync(scratch, { recursive: true, force: true });
  // The plaintext never reached any stderr (errors, warnings, notes).
  for (const key of keys) for (const err of stderrs) expect(err.includes(key), "a key on stderr").toBe(false);
});

describe("kubectl keyward, found by kubectl's plugin discovery", () => {
  it("is listed by kubectl plugin list and answers --help", async () => {
    const list = await ok("plugin", "list");
    expect(list.stdout).toContain(join(linkDir, "kubectl-keyward"));
    const help = await ok("keyward", "--help");
    for (const cmd of ["create", "rotate", "revoke", "reveal", "status"]) expect(help.stdout).toMatch(new RegExp(`^  ${cmd} NAME`, "m"));
    for (const cmd of ["create", "rotate", "revoke", "reveal", "status"]) expect((await ok("keyward", cmd, "--help")).stdout).toContain(`kubectl keyward ${cmd} NAME`);
  });

  it("refuses a malformed command line with exit 2 and a pointer to --help", async () => {
    expect((await fails(2, "keyward", "rotate")).stderr).toBe("error: rotate needs the ApiKey's NAME\nSee 'kubectl keyward rotate --help'.\n");
    expect((await fails(2, "keyward", "frobnicate", "x")).stderr).toContain('unknown command "frobnicate"');
    expect((await fails(2, "keyward", "revoke", "x", "--grace", "1h")).stderr).toContain("revoke takes no --grace");
    expect((await fails(2, "keyward", "create", "x", "--owner", "acme", "--rate", "lots")).stderr).toContain('--rate "lots" is not REQUESTS/PER');
    expect((await fails(2, "keyward", "create", "x", "--scopes", "a")).stderr).toContain("create needs --owner");
  });

  it("prints an ApiKey with create --dry-run=client -o yaml that kubectl applies as is", async () => {
    const printed = await ok("keyward", "create", "web", "--owner", "acme", "--scopes", "orders:read,orders:write", "--rate", "100/1m", "--quota", "1000/day", "-l", "tier=pro", "--dry-run=client", "-o", "yaml");
    expect(printed.stdout).toContain("kind: ApiKey");
    expect(printed.stdout).not.toContain("namespace:");
    const applied = await run(kubectlPath, ["apply", "--server-side", "--dry-run=server", "-f", "-", "-o", "json"], {
      env: { PATH: process.env.PATH, HOME: scratch, KUBECONFIG: tenantKubeconfig },
      input: printed.stdout,
    });
    expect(applied.code, applied.stderr).toBe(0);
    const obj = JSON.parse(applied.stdout) as { metadata: { namespace: string; labels: Record<string, string> }; spec: unknown };
    expect(obj.metadata.namespace).toBe(tenantNs);
    expect(obj.metadata.labels).toEqual({ tier: "pro" });
    expect(obj.spec).toEqual({ disabled: false, owner: "acme", scopes: ["orders:read", "orders:write"], limits: { rate: { requests: 100, per: "1m" }, quota: { requests: 1000, per: "day" } } });
  });

  it("creates an ApiKey with server-side apply, which the operator issues", async () => {
    const out = await ok("keyward", "create", "web", "--owner", "acme", "--scopes", "orders:read", "--expires", "720h");
    expect(out.stdout).toBe("apikey.keyward.dev/web serverside-applied\n");
    await ok("wait", "--for=condition=Ready", "apikey/web", "--timeout=60s");
    const ak = await getApiKey(admin, tenantNs, "web");
    expect(ak?.metadata.managedFields?.map((m) => m.manager)).toContain("kubectl-keyward");
    expect(Date.parse(ak?.spec.expiresAt ?? "") - Date.now()).toBeGreaterThan(719 * 3600_000);
    // The CRD's own validation answers through the plugin.
    const invalid = await fails(1, "keyward", "create", "bad", "--owner=-nope-");
    expect(invalid.stderr).toMatch(/^error: apply apikey "bad" in namespace "[^"]+": .*spec\.owner/);
  });

  it("shows the key versions, their state and last use with status", async () => {
    const out = (await ok("keyward", "status", "web")).stdout;
    const ak = await getApiKey(admin, tenantNs, "web");
    expect(out).toMatch(new RegExp(`^ApiKey:\\s+${tenantNs}/web$`, "m"));
    expect(out).toMatch(/^State:\s+Active$/m);
    expect(out).toMatch(/^Ready:\s+True \(/m);
    const table = tableOf(out.slice(out.indexOf("KEY ID")));
    expect(table.header).toEqual(["KEY ID", "STATE", "ISSUED", "GRACE ENDS", "LAST USED"]);
    expect(table.rows).toEqual([{ "KEY ID": ak?.status?.currentKeyId, STATE: "active", ISSUED: ak?.status?.keys?.[0]?.createdAt, "GRACE ENDS": "-", "LAST USED": "never" }]);
  });

  it("reveals the key to stdout only, with a warning on stderr", async () => {
    const r = await ok("keyward", "reveal", "web");
    const key = await secretKey(tenantNs, "web-apikey");
    // Not a terminal: the exact key, no newline, so `> file` stores it as is.
    expect(r.stdout).toBe(key);
    expect(verifyKey(r.stdout)).toBe(true);
    expect(sha(r.stdout)).toBe((await getApiKey(admin, tenantNs, "web"))?.status?.keys?.[0]?.hash);
    expect(r.stderr).toMatch(/^warning: printing the API key kw_[0-9A-Za-z]{8} of apikey "web"/);
  });

  it("rotates with a grace period and waits until the new key is in force and delivered", async () => {
    const before = await getApiKey(admin, tenantNs, "web");
    const oldId = before?.status?.currentKeyId ?? "";
    const r = await ok("keyward", "rotate", "web", "--grace", "1h");
    const after = await getApiKey(admin, tenantNs, "web");
    const newId = after?.status?.currentKeyId ?? "";
    expect(newId).not.toBe(oldId);
    // Done means: status shows the new key active and the old in grace, and the Secret already holds the new key.
    expect(after?.status?.keys?.map((k) => [k.id, k.state])).toEqual([[newId, "active"], [oldId, "grace"]]);
    expect(sha(await secretKey(tenantNs, "web-apikey"))).toBe(after?.status?.keys?.[0]?.hash);
    const graceEnds = after?.status?.keys?.[1]?.expiresAt ?? "";
    expect(r.stdout).toBe(`apikey.keyward.dev/web rotated: key ${newId} is active; ${oldId} is accepted until ${graceEnds}\n`);
    expect(Date.parse(graceEnds) - Date.now()).toBeGreaterThan(3500_000);
    expect((await ok("keyward", "status", "web")).stdout).toMatch(new RegExp(`^${oldId}\\s+grace\\s+\\S+\\s+${graceEnds}\\s+never$`, "m"));
  });

  it("rotates with --grace 0s, after which the previous key is gone from status", async () => {
    const before = await getApiKey(admin, tenantNs, "web");
    const oldId = before?.status?.currentKeyId ?? "";
    const r = await ok("keyward", "rotate", "web", "--grace", "0s");
    const after = await getApiKey(admin, tenantNs, "web");
    expect(r.stdout).toBe(`apikey.keyward.dev/web rotated: key ${after?.status?.currentKeyId ?? ""} is active; ${oldId} is no longer accepted\n`);
    expect(after?.status?.keys?.map((k) => k.id)).not.toContain(oldId);
    expect(after?.spec.rotation?.gracePeriod).toBe("0s");
    expect((await ok("keyward", "reveal", "web")).stdout).toBe(await secretKey(tenantNs, "web-apikey"));
  });

  it("revokes (spec.disabled) and waits until the operator reports it Disabled", async () => {
    const r = await ok("keyward", "revoke", "web");
    expect(r.stdout).toBe("apikey.keyward.dev/web revoked: no version of its key is accepted\n");
    const ak = await getApiKey(admin, tenantNs, "web");
    expect(ak?.spec.disabled).toBe(true);
    expect(ak?.status?.state).toBe("Disabled");
    expect(ak?.status?.observedGeneration).toBe(ak?.metadata.generation);
    expect((await ok("keyward", "revoke", "web")).stdout).toBe("apikey.keyward.dev/web already revoked\n");
    // A revoked key can still be read from its Secret, with a warning that it is not accepted.
    expect((await ok("keyward", "reveal", "web")).stderr).toContain("the ApiKey is disabled, so the key is not accepted");
    expect((await fails(1, "keyward", "rotate", "web")).stderr).toContain("it is disabled");
  });

  it("cannot reveal another namespace's key: the Secret read is refused with a clear message", async () => {
    await createApiKey(admin, otherNs, "theirs", { owner: "globex" });
    await eventually(async () => (ready(await getApiKey(admin, otherNs, "theirs")) === "True" ? true : undefined), 30_000, "theirs Ready");
    const theirs = await secretKey(otherNs, "theirs-apikey");
    // The tenant may read the ApiKey there (status works) but not its Secret.
    expect((await ok("keyward", "status", "theirs", "-n", otherNs)).stdout).toMatch(/^State:\s+Active$/m);
    const r = await fails(1, "keyward", "reveal", "theirs", "-n", otherNs);
    expect(r.stderr).toContain(`error: reveal reads secret "theirs-apikey" in namespace "${otherNs}" with your own credentials; get secret "theirs-apikey" in namespace "${otherNs}": forbidden:`);
    expect(r.stderr).toContain(`cannot get resource "secrets"`);
    expect(r.stderr).not.toContain(theirs);
    // Nor rotate or revoke it.
    expect((await fails(1, "keyward", "revoke", "theirs", "-n", otherNs)).stderr).toContain("forbidden");
    expect((await getApiKey(admin, otherNs, "theirs"))?.spec.disabled).not.toBe(true);
  });

  it("refuses to print a key its ApiKey does not accept, without naming it", async () => {
    const original = randomBytes(32).toString("base64url");
    const changed = randomBytes(32).toString("base64url");
    keys.add(original).add(changed);
    const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: "byok", namespace: tenantNs }, data: { token: Buffer.from(original).toString("base64") } };
    await admin.create(secret);
    await createApiKey(admin, tenantNs, "byok", { owner: "initech", existingSecret: { name: "byok", key: "token" } });
    await ok("wait", "--for=condition=Ready", "apikey/byok", "--timeout=60s");
    expect((await ok("keyward", "reveal", "byok")).stdout).toBe(original);
    // The Secret now holds a key keyward has not hashed (the operator re-reads it only later).
    await admin.request("PATCH", `/api/v1/namespaces/${tenantNs}/secrets/byok`, {
      body: { data: { token: Buffer.from(changed).toString("base64") } },
      contentType: "application/merge-patch+json",
    });
    const r = await fails(1, "keyward", "reveal", "byok");
    expect(r.stderr).toContain(`the key in secret "byok" in namespace "${tenantNs}" is not one keyward accepts`);
    expect(r.stderr).not.toContain(changed);
    // A key from existingSecret or keyHash is rotated where it is issued.
    expect((await fails(1, "keyward", "rotate", "byok")).stderr).toContain("spec.existingSecret");
  });

  it("runs the opening example of docs/kubectl-plugin.md as written", async () => {
    const doc = readFileSync(join(root, "docs", "kubectl-plugin.md"), "utf8");
    const example = /```sh\n([\s\S]*?)```/.exec(doc)?.[1] ?? "";
    const lines = example.split("\n").filter((l) => l.trim() !== "");
    expect(lines.map((l) => l.split(" ").slice(0, 3).join(" "))).toEqual([
      "kubectl keyward create",
      "kubectl wait --for=condition=Ready",
      "kubectl keyward reveal",
      "kubectl keyward rotate",
      "kubectl keyward status",
      "kubectl keyward revoke",
    ]);
    for (const line of lines) {
      // The tenant's namespace stands in for the example's; the shell runs the line as a user types it.
      const r = await run("/bin/sh", ["-c", line.replaceAll("-n shop", `-n ${tenantNs}`)], {
        cwd: scratch,
        env: { PATH: [linkDir, kubectlDir, "/usr/bin", "/bin"].join(delimiter), HOME: scratch, KUBECONFIG: tenantKubeconfig },
      });
      stderrs.push(r.stderr);
      expect(r.code, `${line}\n${r.stderr}`).toBe(0);
    }
    const revealed = readFileSync(join(scratch, "acme-orders.key"), "utf8");
    keys.add(revealed);
    const ak = await getApiKey(admin, tenantNs, "acme-orders");
    expect(ak?.status?.state).toBe("Disabled");
    // The key revealed before the rotation is the one now in its 48h grace.
    expect(ak?.status?.keys?.find((k) => k.hash === sha(revealed))?.state).toBe("grace");
  });

  it("fails a wait it cannot finish within --timeout, saying what it saw", async () => {
    // An ApiKey the operator does not watch: the tenant's Role, in a namespace no operator covers.
    const unwatched = await createTestNamespace(adminKc, "unwatched");
    try {
      const role = parseManifests(readFileSync(join(root, "config/rbac/tenant/role.yaml"), "utf8"), "role.yaml");
      await applyObjects(admin, [
        ...role.map((o) => ({ ...o, metadata: { ...o.metadata, namespace: unwatched } })),
        { apiVersion: "rbac.authorization.k8s.io/v1", kind: "RoleBinding", metadata: { name: "tenant-user", namespace: unwatched }, roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "keyward-tenant" }, subjects: [{ kind: "ServiceAccount", namespace: tenantNs, name: "tenant-user" }] } as KubernetesObject,
      ]);
      await ok("keyward", "create", "idle", "--owner", "acme", "-n", unwatched);
      const r = await fails(1, "keyward", "revoke", "idle", "-n", unwatched, "--timeout", "2s");
      expect(r.stderr).toBe(
        `error: revoke apikey "idle" in namespace "${unwatched}": not done within 2s (the ApiKey shows state none, Ready not reported); is the keyward operator running and watching this namespace?\n`,
      );
    } finally {
      await deleteNamespace(adminKc, unwatched);
    }
  });
});
