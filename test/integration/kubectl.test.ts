// What users type, with real kubectl against the real control plane and the
// operator (with its namespaced RBAC): server-side apply of config/samples, wait
// for Ready, the printer columns plain and wide, explain, a server-side diff that
// shows no drift once the operator has written status (as Argo CD and Flux see
// it), and delete with the Secret garbage-collected by kube-controller-manager.
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { kubectl, tableOf, type Run } from "../support/kubectl.ts";
import { getApiKey, startTestOperator, type TestOperator } from "../support/operator.ts";
import { namespacedKubeConfig } from "../support/rbac.ts";

const root = resolve(import.meta.dirname, "..", "..");
const samplesDir = join(root, "config", "samples");
const sampleKeys = ["acme-orders", "globex-reports", "initech-billing", "partner-webhooks"];
// The field manager a GitOps tool applies with: the diff must use the same one.
const MANAGER = "gitops";

let kc: KubeConfig;
let kubeconfig: string;
let rest: KubeRest;
let ns: string;
let op: TestOperator;
let scratch: string;

const k = (...args: string[]): Promise<Run> => kubectl(kubeconfig, args);
const ok = async (...args: string[]): Promise<string> => {
  const r = await k(...args);
  expect(r.code, `kubectl ${args.join(" ")}\n${r.stderr}`).toBe(0);
  return r.stdout;
};

beforeAll(async () => {
  kubeconfig = inject("kubeconfig");
  kc = loadKubeConfig(kubeconfig);
  rest = new KubeRest(kc, { qps: 0 });
  ns = await createTestNamespace(kc, "kubectl");
  op = await startTestOperator(await namespacedKubeConfig(kc, "operator", [ns], "keyward-operator-kubectl"), { namespaces: [ns] });
  scratch = mkdtempSync(join(tmpdir(), "keyward-kubectl-"));
  // The bring-your-own-key sample reads its key from a Secret another tool manages.
  await ok("create", "secret", "generic", "initech-billing-key", "-n", ns, `--from-literal=token=${randomBytes(32).toString("base64url")}`);
});

afterAll(async () => {
  await op.stop();
  await deleteNamespace(kc, ns);
  rest.close();
  rmSync(scratch, { recursive: true, force: true });
});

describe("kubectl against keyward", () => {
  it("applies config/samples with kubectl apply --server-side", async () => {
    const out = await ok("apply", "--server-side", `--field-manager=${MANAGER}`, "-n", ns, "-f", samplesDir);
    for (const name of sampleKeys) expect(out).toContain(`apikey.keyward.dev/${name} serverside-applied`);
    expect(out).toContain("apikeypolicy.keyward.dev/orders-api serverside-applied");
  });

  it("waits for every ApiKey with kubectl wait --for=condition=Ready", async () => {
    const out = await ok("wait", "--for=condition=Ready", "apikey", "--all", "-n", ns, "--timeout=60s");
    for (const name of sampleKeys) expect(out).toContain(`apikey.keyward.dev/${name} condition met`);
  });

  it("shows the printer columns with kubectl get, plain and -o wide", async () => {
    const plain = tableOf(await ok("get", "apikeys", "-n", ns));
    expect(plain.header).toEqual(["NAME", "OWNER", "SCOPES", "STATE", "EXPIRES", "LAST USED", "REQUESTS 24H", "AGE"]);
    const acme = plain.rows.find((r) => r.NAME === "acme-orders");
    expect(acme).toMatchObject({ OWNER: "acme", SCOPES: '["orders:read","orders:write"]', STATE: "Active", EXPIRES: "2027-06-30T00:00:00Z" });
    expect(plain.rows.map((r) => r.NAME).sort()).toEqual(sampleKeys);

    const wide = tableOf(await ok("get", "apikeys", "-n", ns, "-o", "wide"));
    expect(wide.header).toEqual(["NAME", "OWNER", "SCOPES", "STATE", "KEY ID", "EXPIRES", "LAST USED", "REQUESTS 24H", "NEXT ROTATION", "AGE"]);
    const ak = await getApiKey(rest, ns, "acme-orders");
    const row = wide.rows.find((r) => r.NAME === "acme-orders");
    expect(row?.["KEY ID"]).toMatch(/^shop_[0-9A-Za-z]{8}$/);
    expect(row?.["KEY ID"]).toBe(ak?.status?.currentKeyId);
    expect(row?.["NEXT ROTATION"]).toBe(ak?.status?.nextRotationAt);

    const policies = tableOf(await ok("get", "apikeypolicies", "-n", ns, "-o", "wide"));
    expect(policies.header).toEqual(["NAME", "HOSTS", "RULES", "ACCEPTED", "REASON", "AGE"]);
    await eventually(async () => {
      const p = tableOf(await ok("get", "apikeypolicies", "-n", ns, "-o", "wide")).rows[0];
      return p?.ACCEPTED === "True" ? p : undefined;
    }, 20_000, "the policy Accepted");
  });

  it("explains the CRD fields with kubectl explain", async () => {
    const spec = await ok("explain", "apikey.spec");
    for (const field of ["owner", "scopes", "rotation", "limits", "existingSecret", "keyHash", "disabled", "expiresAt"]) {
      expect(spec).toMatch(new RegExp(`^\\s+${field}\\s`, "m"));
    }
    expect(await ok("explain", "apikey.spec.owner")).toContain("Customer, team or integration the key belongs to");
    expect(await ok("explain", "apikey.status.keys")).toMatch(/hash/);
    expect(await ok("explain", "apikeypolicy.spec.rules")).toMatch(/paths/);
  });

  it("shows no drift with kubectl diff --server-side once the operator has written status", async () => {
    // Status is written (and rewritten on a rotation) by the operator only.
    const before = await getApiKey(rest, ns, "globex-reports");
    expect(before?.status?.state).toBe("Active");
    await ok("annotate", "apikey", "globex-reports", "-n", ns, "keyward.dev/rotate=1");
    await eventually(async () => ((await getApiKey(rest, ns, "globex-reports"))?.status?.state === "Rotating" ? true : undefined), 20_000, "a rotation");
    const diff = await k("diff", "--server-side", `--field-manager=${MANAGER}`, "-n", ns, "-f", samplesDir);
    expect(diff.stderr).toBe("");
    expect(diff.stdout).toBe("");
    expect(diff.code).toBe(0);
    for (const name of sampleKeys) expect((await getApiKey(rest, ns, name))?.metadata.generation).toBe(1);

    // The same diff sees a real change in git: this check can fail.
    const changed = join(scratch, "apikey-readonly.yaml");
    writeFileSync(changed, readFileSync(join(samplesDir, "apikey-readonly.yaml"), "utf8").replace("scopes: [orders:read]", "scopes: [orders:read, orders:write]"));
    const drift = await k("diff", "--server-side", `--field-manager=${MANAGER}`, "-n", ns, "-f", changed);
    expect(drift.code).toBe(1);
    expect(drift.stdout).toMatch(/^\+\s+- orders:write$/m);
  });

  it("deletes an ApiKey with kubectl delete, and kube-controller-manager collects its Secret", async () => {
    const ak = await getApiKey(rest, ns, "acme-orders");
    const secret = ak?.status?.secretName ?? "";
    expect(secret).toBe("acme-orders-apikey");
    expect(await ok("get", "secret", secret, "-n", ns, "-o", "name")).toBe(`secret/${secret}\n`);
    expect(await ok("delete", "apikey", "acme-orders", "-n", ns)).toContain('apikey.keyward.dev "acme-orders" deleted');
    const gone = await eventually(async () => {
      const r = await k("get", "secret", secret, "-n", ns, "-o", "name");
      return r.code === 1 ? r : undefined;
    }, 120_000, `Secret ${secret} garbage-collected`);
    expect(gone.stderr).toContain(`secrets "${secret}" not found`);
    // The other keys' Secrets stay.
    expect(await ok("get", "secret", "globex-reports-apikey", "-n", ns, "-o", "name")).toBe("secret/globex-reports-apikey\n");
  });
});

// Samples read from the directory, so a new sample is applied too; this keeps the list above honest.
it("knows every ApiKey sample", () => {
  const names = readdirSync(samplesDir)
    .filter((f) => f.startsWith("apikey-"))
    .map((f) => /name: (\S+)/.exec(readFileSync(join(samplesDir, f), "utf8"))?.[1]);
  expect(names.sort()).toEqual(sampleKeys);
});
