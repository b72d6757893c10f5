// Usage alerts from the analytics store, with real parts: the seeded usage on
// a throwaway PostgreSQL 15 (every alert holds on its key there as on SQLite),
// two data-plane evaluators campaigning for one Lease on the real apiserver,
// Events on the ApiKeys, and a real Alertmanager receiving the pushes (read
// back through GET /api/v2/alerts). Then the leader crashes (its Lease is not
// released): the other takes over and nothing fires twice within the cooldown.
import type { KubeConfig } from "@kubernetes/client-node";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startAlertService, type AlertService } from "../../src/alerts/service.ts";
import { conditions, thresholds } from "../../src/alerts/rules.ts";
import { alertKeys, alertRows, EXPECTED, quotas } from "../../src/alerts/fixtures.test-support.ts";
import { openAnalyticsStore, type AnalyticsStore } from "../../src/analytics/store.ts";
import { defaultConfig } from "../../src/config/config.ts";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeEventRecorder } from "../../src/k8s/events.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { createLogger } from "../../src/log.ts";
import { haveAlertmanager, startAlertmanager, type Alertmanager } from "../support/alertmanager.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { eventsFor } from "../support/operator.ts";
import { havePostgres, startPostgres, type PostgresCluster } from "../support/postgres.ts";

const DAY = 86_400_000;
const log = createLogger({ sink: () => {} });

const sorted = (xs: Iterable<string>): string[] => [...xs].sort();
const expectedPairs = sorted(Object.entries(EXPECTED).flatMap(([alert, names]) => names.map((n) => `${n} ${alert}`)));

describe.skipIf(!havePostgres() || !haveAlertmanager())("usage alerts from the store, one evaluator for the cluster", () => {
  let kc: KubeConfig;
  let rest: KubeRest;
  let ns: string;
  let pgc: PostgresCluster;
  let am: Alertmanager;
  const stores: AnalyticsStore[] = [];
  const now = Date.now();

  const open = async (): Promise<AnalyticsStore> => {
    const s = await openAnalyticsStore({ store: "postgres", sqlitePath: "", postgresUrl: pgc.url(), retentionMs: 90 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0 }, log);
    stores.push(s);
    return s;
  };

  beforeAll(async () => {
    kc = loadKubeConfig(inject("kubeconfig"));
    rest = new KubeRest(kc);
    ns = await createTestNamespace(kc, "alerts");
    [pgc, am] = await Promise.all([startPostgres(), startAlertmanager()]);
    const s = await open();
    await s.upsertKeys(alertKeys(now, ns));
    await s.writeRequests(alertRows(now));
  }, 120_000);

  afterAll(async () => {
    for (const s of stores) await s.close();
    await am.stop();
    await pgc.remove();
    await deleteNamespace(kc, ns);
    rest.close();
  });

  it("every alert holds on its seeded key on PostgreSQL, as on SQLite", async () => {
    const got = await conditions(stores[0]!.alerts, thresholds(defaultConfig()), now, quotas(ns));
    expect(sorted(got.map((c) => `${c.name} ${c.alert}`))).toEqual(expectedPairs);
  });

  it("the elected evaluator pushes each alert to Alertmanager and records an Event; after the leader crashes the other takes over and nothing fires twice", async () => {
    const config = defaultConfig({
      leaseNamespace: ns,
      leaseDuration: 3000,
      leaseRenewDeadline: 2000,
      leaseRetryPeriod: 500,
      usageAlertInterval: 1000,
      alertmanagerUrl: am.url,
    });
    const fired: string[] = [];
    const replica = async (id: string): Promise<AlertService> => {
      const store = await open();
      const events = new KubeEventRecorder({ rest, component: "keyward-authz", instance: id, log });
      return startAlertService({ config, rest, log, registry: new Registry(), queries: store.alerts, events, quotas: () => quotas(ns), identity: id, onFired: (c) => fired.push(c.alert) });
    };
    const a = await replica("replica-a");
    const b = await replica("replica-b");
    const leader = await eventually(() => (a.isLeader() ? a : b.isLeader() ? b : undefined), 15_000, "a leader");
    const other = leader === a ? b : a;
    await eventually(() => (leader.evaluations >= 2 ? true : undefined), 15_000, "two evaluations");
    expect(sorted(fired)).toEqual(sorted(expectedPairs.map((p) => p.split(" ")[1]!)));
    expect(other.evaluations).toBe(0);

    // Alertmanager has every alert, active, labelled namespace, apikey, owner and alert.
    const active = await eventually(async () => {
      const got = (await am.alerts()).filter((x) => x.labels.namespace === ns && x.status.state === "active");
      return got.length === expectedPairs.length ? got : undefined;
    }, 10_000, "the alerts in Alertmanager");
    expect(sorted(active.map((x) => `${x.labels.apikey} ${x.labels.alert}`))).toEqual(expectedPairs);
    expect(active.every((x) => x.labels.owner === "alice" && x.labels.alertname === x.labels.alert)).toBe(true);

    // An Event on the ApiKey.
    const ev = await eventually(async () => {
      const list = await eventsFor(rest, ns, "limited");
      return list.some((e) => e.reason === "RateLimitedHigh") ? list : undefined;
    }, 10_000, "the RateLimitedHigh Event");
    expect(ev.find((e) => e.reason === "RateLimitedHigh")?.type).toBe("Warning");

    // The leader crashes: it stops without releasing the Lease.
    await leader.stop({ release: false });
    await eventually(() => (other.isLeader() ? true : undefined), 15_000, "the other replica leading");
    const next = await other.nextEvaluation();
    expect(next.fired).toEqual([]);
    expect(next.firing).toBe(expectedPairs.length);
    await other.nextEvaluation();
    // Each alert fired once across both replicas: as many Events as alerts, and still active in Alertmanager.
    expect(fired).toHaveLength(expectedPairs.length);
    const all = (await rest.request<{ items: { reason?: string; involvedObject: { name?: string } }[] }>("GET", `/api/v1/namespaces/${ns}/events`)).items;
    expect(sorted(all.map((e) => `${e.involvedObject.name ?? ""} ${e.reason ?? ""}`))).toEqual(expectedPairs);
    const still = (await am.alerts()).filter((x) => x.labels.namespace === ns && x.status.state === "active");
    expect(still).toHaveLength(expectedPairs.length);
    await other.stop();
  }, 90_000);
});
