// 10,000 ApiKeys created at once, the operator unthrottled (--kube-qps 0): every
// one is issued exactly one key. Under this load the operator's Secret watch lags
// behind its own creates and requests time out, so this is where a reconcile that
// took the operator's own write in flight for a lost Secret would rotate a key.
// Prints the time and the apiserver requests per key (docs/operator.md records them).
// A second, smaller burst makes the interleaving certain: the operator's Secret creates
// and status writes reach the real apiserver but their answers are lost or late.
import { createHash } from "node:crypto";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { ApiKey } from "../../src/api/types.ts";
import { SECRET_DATA_KEY } from "../../src/api/types.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeApiError, KubeRest } from "../../src/k8s/rest.ts";
import { createTestNamespace, deleteNamespaceAndWait, eventually } from "../support/k8s.ts";
import { apiKeyPath, createApiKey, startTestOperator, type EventBody, type SecretBody, type TestOperator } from "../support/operator.ts";

const COUNT = Number(process.env.KEYWARD_BURST_KEYS ?? 10_000);
const FAULTED = 1_000;
const CREATORS = 64;
let kc: KubeConfig;
let rest: KubeRest;
let ns: string;
let op: TestOperator;

beforeAll(async () => {
  kc = loadKubeConfig(inject("kubeconfig"));
  rest = new KubeRest(kc, { qps: 0 });
  ns = await createTestNamespace(kc, "burst");
  op = await startTestOperator(kc, { namespaces: [ns], kubeQps: 0, workers: 16 });
});

afterAll(async () => {
  await op.stop();
  await deleteNamespaceAndWait(kc, ns, 240_000);
  rest.close();
});

async function metricSum(name: string): Promise<number> {
  const m = await op.registry.getSingleMetric(name)?.get();
  return (m?.values ?? []).reduce((n, v) => n + v.value, 0);
}

/** Every item of a list, read in pages so no single response holds 10,000 Secrets. */
async function listAll<T>(path: string, query: Record<string, string> = {}): Promise<T[]> {
  const out: T[] = [];
  let cont: string | undefined;
  do {
    const page = await rest.request<{ items: T[]; metadata: { continue?: string } }>("GET", path, { query: { ...query, limit: "2000", continue: cont } });
    out.push(...page.items);
    cont = page.metadata.continue || undefined;
  } while (cont);
  return out;
}

const sha256OfField = (b64: string): string => `sha256:${createHash("sha256").update(Buffer.from(b64, "base64")).digest("hex")}`;
const isReady = (a: ApiKey): boolean => a.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") === true;

/** Creates `count` ApiKeys named `<prefix>-<i>` from CREATORS concurrent clients. */
async function createBurst(namespace: string, prefix: string, count: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CREATORS }, async () => {
      while (next < count) await createApiKey(rest, namespace, `${prefix}-${next++}`, { owner: "burst", scopes: ["a:b"], rotation: { gracePeriod: "0s" } });
    }),
  );
}

/**
 * Every ApiKey of the namespace Ready and every Secret written, or the deadline. Ready comes
 * first (status is written before the Secret), so the Secrets are counted after it.
 */
async function allReady(namespace: string, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  await eventually(async () => ((await listAll<ApiKey>(apiKeyPath(namespace))).filter(isReady).length === count ? true : undefined), timeoutMs, `${count} ApiKeys Ready`);
  const secrets = `/api/v1/namespaces/${namespace}/secrets`;
  await eventually(
    async () => ((await listAll<unknown>(secrets, { labelSelector: "app.kubernetes.io/managed-by=keyward" })).length === count ? true : undefined),
    Math.max(deadline - Date.now(), 10_000),
    `${count} Secrets`,
  );
}

/**
 * Asserts each ApiKey of the namespace got exactly one key: no replacement Event, state Active,
 * one active key and no grace key, never rotated, and its Secret holds that key. Returns Event counts.
 */
async function expectOneKeyEach(namespace: string, count: number): Promise<Record<string, number>> {
  const apiKeys = await listAll<ApiKey>(apiKeyPath(namespace));
  const secrets = new Map((await listAll<SecretBody>(`/api/v1/namespaces/${namespace}/secrets`, { labelSelector: "app.kubernetes.io/managed-by=keyward" })).map((s) => [s.metadata.name, s]));
  const byReason: Record<string, number> = {};
  for (const e of await listAll<EventBody>(`/api/v1/namespaces/${namespace}/events`)) byReason[e.reason] = (byReason[e.reason] ?? 0) + 1;
  for (const reason of ["SecretMissing", "SecretTampered", "RotationIncomplete", "Rotated"]) expect(byReason[reason] ?? 0, reason).toBe(0);
  expect(apiKeys).toHaveLength(count);
  const wrong: string[] = [];
  for (const a of apiKeys) {
    const keys = a.status?.keys ?? [];
    const secret = secrets.get(`${a.metadata.name}-apikey`);
    const field = secret?.data?.[SECRET_DATA_KEY];
    const ok =
      a.status?.state === "Active" &&
      a.status.lastRotationAt === undefined &&
      keys.length === 1 &&
      keys[0]?.state === "active" &&
      field !== undefined &&
      sha256OfField(field) === keys[0].hash;
    if (!ok) wrong.push(`${a.metadata.name}: state ${a.status?.state ?? "-"}, keys ${keys.map((k) => k.state).join(",")}, secret ${secret ? "present" : "missing"}`);
  }
  expect(wrong.slice(0, 20)).toEqual([]);
  expect(secrets.size).toBe(count);
  return byReason;
}

const lostAnswer = (what: string): KubeApiError => new KubeApiError(0, "", `${what}: timed out after 30000 ms`);

describe("operator under a burst of creates", () => {
  it(`issues ${FAULTED} ApiKeys one key each when its Secret creates and status writes land but their answers are lost or late`, { timeout: 240_000 }, async () => {
    const faultNs = await createTestNamespace(kc, "burst-faults");
    const faulty = await startTestOperator(kc, { namespaces: [faultNs], kubeQps: 0, workers: 16 });
    try {
      // Faults on the operator's own client, in front of the real apiserver. The n-th first
      // Secret create of a name: n%4=0 is sent 1.5 s late (still in flight when the retry
      // runs) and answered with a timeout at once; n%4=1 lands and its answer is lost;
      // n%4=2 lands and is sent again, so the operator gets the apiserver's AlreadyExists.
      // Every 5th status write lands and its answer is lost.
      const faults = { late: 0, lost: 0, alreadyExists: 0, status: 0 };
      const late: Promise<unknown>[] = [];
      const seen = new Set<string>();
      let creates = 0;
      let statusWrites = 0;
      const realCreate = faulty.rest.create.bind(faulty.rest);
      const realRequest = faulty.rest.request.bind(faulty.rest);
      faulty.rest.create = (async (obj: Parameters<KubeRest["create"]>[0], opts?: Parameters<KubeRest["create"]>[1]) => {
        const name = obj.metadata?.name ?? "";
        if (obj.kind !== "Secret" || seen.has(name)) return realCreate(obj, opts);
        seen.add(name);
        const n = creates++;
        if (n % 4 === 0) {
          faults.late++;
          late.push(new Promise((r) => setTimeout(r, 1500)).then(() => realCreate(obj, opts)).catch(() => undefined));
          throw lostAnswer(`POST secrets/${name}`);
        }
        const created = await realCreate(obj, opts);
        if (n % 4 === 1) {
          faults.lost++;
          throw lostAnswer(`POST secrets/${name}`);
        }
        if (n % 4 === 2) {
          faults.alreadyExists++;
          return realCreate(obj, opts);
        }
        return created;
      }) as KubeRest["create"];
      faulty.rest.request = (async (method: string, path: string, opts?: Parameters<KubeRest["request"]>[2]) => {
        const res: unknown = await realRequest(method, path, opts);
        if (method === "PATCH" && path.endsWith("/status") && statusWrites++ % 5 === 0) {
          faults.status++;
          throw lostAnswer(`PATCH ${path}`);
        }
        return res;
      }) as KubeRest["request"];

      const started = Date.now();
      await createBurst(faultNs, "f", FAULTED);
      await allReady(faultNs, FAULTED, 180_000);
      await Promise.all(late);
      const readySeconds = (Date.now() - started) / 1000;
      const events = await expectOneKeyEach(faultNs, FAULTED);
      console.log(`[burst-faults] ${JSON.stringify({ keys: FAULTED, allReadySeconds: readySeconds, faults, events })}`);
      expect(faults.late).toBeGreaterThan(0);
      expect(faults.lost).toBeGreaterThan(0);
      expect(faults.alreadyExists).toBeGreaterThan(0);
      expect(faults.status).toBeGreaterThan(0);
      // Each key is reported issued once, and the faults cost no Warning but the retries'.
      expect(events.Issued).toBe(FAULTED);
    } finally {
      await faulty.stop();
      await deleteNamespaceAndWait(kc, faultNs, 120_000);
    }
  });

  it(`issues ${COUNT} ApiKeys created at once exactly one key each, with --kube-qps 0`, { timeout: 540_000 }, async () => {
    const baseline = await metricSum("keyward_operator_kube_requests_total");
    const started = Date.now();
    await createBurst(ns, "b", COUNT);
    const applied = Date.now();
    await allReady(ns, COUNT, 360_000);
    const done = Date.now();
    const requests = (await metricSum("keyward_operator_kube_requests_total")) - baseline;
    const reconcileErrors = (await op.registry.getSingleMetric("keyward_operator_reconciles_total")?.get())?.values.find((v) => v.labels.result === "error")?.value ?? 0;
    const events = await expectOneKeyEach(ns, COUNT);
    console.log(
      `[burst] ${JSON.stringify({
        keys: COUNT,
        createSeconds: (applied - started) / 1000,
        allReadySeconds: (done - started) / 1000,
        operatorRequests: requests,
        requestsPerKey: Math.round((requests / COUNT) * 100) / 100,
        reconcileErrors,
        events,
      })}`,
    );
  });
});
