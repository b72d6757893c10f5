import { describe, expect, it } from "vitest";
import { defaultConfig } from "../config/config.ts";
import { createLogger } from "../log.ts";
import { openAnalyticsStore, type AnalyticsStore } from "../analytics/store.ts";
import { Registry } from "prom-client";
import type { PushedAlert } from "./alertmanager.ts";
import { evaluate, type EvaluatorOptions } from "./evaluator.ts";
import { ALERT_KEYS, alertRows, DAY, EXPECTED, HOUR, NOW, QUOTAS } from "./fixtures.test-support.ts";
import { createAlertMetrics } from "./metrics.ts";
import { ALERTS, conditions, thresholds, type AlertName, type Condition } from "./rules.ts";

const log = createLogger({ sink: () => {} });
const COOLDOWN = 6 * HOUR;

async function seeded(at: { now: number }): Promise<AnalyticsStore> {
  const store = await openAnalyticsStore({ store: "sqlite", sqlitePath: ":memory:", postgresUrl: "", retentionMs: 90 * DAY, rollupRetentionMs: 0, retentionIntervalMs: 0, now: () => at.now }, log);
  await store.upsertKeys(ALERT_KEYS);
  await store.writeRequests(alertRows());
  return store;
}

function byAlert(cs: readonly Pick<Condition, "alert" | "name">[]): Record<AlertName, string[]> {
  const out = Object.fromEntries(ALERTS.map((a) => [a, [] as string[]])) as Record<AlertName, string[]>;
  for (const c of cs) out[c.alert].push(c.name);
  for (const a of ALERTS) out[a].sort();
  return out;
}

function harness(store: AnalyticsStore, at: { now: number }) {
  const events: { name: string; reason: string; message: string }[] = [];
  const pushes: PushedAlert[][] = [];
  const registry = new Registry();
  const o: EvaluatorOptions = {
    queries: store.alerts,
    thresholds: thresholds(defaultConfig()),
    cooldownMs: COOLDOWN,
    resendValidMs: 4 * 60_000,
    now: () => at.now,
    quotas: () => QUOTAS,
    events: { record: (obj, _type, reason, message) => events.push({ name: obj.metadata?.name ?? "", reason, message }) },
    metrics: createAlertMetrics(registry),
    log,
    alertmanager: {
      push: (a) => {
        pushes.push([...a]);
        return Promise.resolve();
      },
    },
  };
  return { o, events, pushes, registry };
}

describe("alert conditions from the store", () => {
  it("each alert holds on its seeded key and on no near miss", async () => {
    const at = { now: NOW };
    const store = await seeded(at);
    const got = await conditions(store.alerts, thresholds(defaultConfig()), NOW, QUOTAS);
    expect(byAlert(got)).toEqual(EXPECTED);
    await store.close();
  });

  it("thresholds are settings: a higher 429 ratio and a shorter silence change who fires", async () => {
    const at = { now: NOW };
    const store = await seeded(at);
    const t = thresholds(defaultConfig({ usageAlertRateLimitedRatio: 0.2, usageAlertSilence: 30 * 60_000 }));
    const got = byAlert(await conditions(store.alerts, t, NOW, QUOTAS));
    expect(got.RateLimitedHigh).toEqual([]);
    // quota and quota-low have under 100 requests in the day: only silent has traffic enough to go silent.
    expect(got.KeySilent).toEqual(["silent"]);
    const later = byAlert(await conditions(store.alerts, thresholds(defaultConfig()), NOW - 2 * HOUR, QUOTAS));
    expect(later.KeySilent).toEqual([]);
    await store.close();
  });
});

describe("evaluate", () => {
  it("fires each alert once: an Event on the ApiKey, a push to Alertmanager with its labels, and keyward_alerts_firing by alert", async () => {
    const at = { now: NOW };
    const store = await seeded(at);
    const h = harness(store, at);
    const e = await evaluate(h.o);
    expect(byAlert(e.fired)).toEqual(EXPECTED);
    expect(byAlert(h.events.map((x) => ({ alert: x.reason as AlertName, name: x.name })))).toEqual(EXPECTED);
    const pushed = h.pushes[0] ?? [];
    expect(pushed).toHaveLength(e.fired.length);
    const one = pushed.find((p) => p.labels.alert === "RateLimitedHigh");
    expect(one?.labels).toEqual({ alertname: "RateLimitedHigh", alert: "RateLimitedHigh", namespace: "team", apikey: "limited", owner: "alice", source: "keyward" });
    expect(Date.parse(one?.endsAt ?? "")).toBe(NOW + 4 * 60_000);
    const text = await h.registry.metrics();
    expect(text).toContain('keyward_alerts_firing{alert="NewSourceCountry"} 1');
    expect(text).toContain('keyward_alerts_firing{alert="KeySilent"} 1');
    // Labelled by alert only: as many series as alerts, whatever the number of keys.
    expect(text.split("\n").filter((l) => l.startsWith("keyward_alerts_firing{"))).toHaveLength(ALERTS.length);
    await store.close();
  });

  it("re-sends a firing alert without a second Event, resolves it with endsAt, and does not fire it again within the cooldown, even from a new evaluator", async () => {
    const at = { now: NOW };
    const store = await seeded(at);
    const h = harness(store, at);
    await evaluate(h.o);
    const fired = h.events.length;

    at.now = NOW + 60_000;
    const again = await evaluate(h.o);
    expect(again.fired).toEqual([]);
    expect(h.events).toHaveLength(fired);
    const resent = h.pushes[1]?.find((p) => p.labels.apikey === "roaming" && p.labels.alert === "NewSourceNetwork");
    expect(Date.parse(resent?.startsAt ?? "")).toBe(NOW);
    expect(Date.parse(resent?.endsAt ?? "")).toBe(at.now + 4 * 60_000);

    // Two hours on, the new network is no longer new: resolved, endsAt now.
    at.now = NOW + 2 * HOUR;
    const r = await evaluate(h.o);
    expect(r.resolved.map((s) => `${s.name} ${s.alert}`)).toContain("roaming NewSourceNetwork");
    const ended = h.pushes.at(-1)?.find((p) => p.labels.apikey === "roaming" && p.labels.alert === "NewSourceNetwork");
    expect(Date.parse(ended?.endsAt ?? "")).toBe(at.now);

    // Another new network within the cooldown: it holds, but nothing fires; a restarted evaluator (same store) agrees.
    await store.writeRequests([{ at: at.now - 60_000, uid: "u-roaming", keyId: "kw_roaming", front: "http", outcome: "allowed", reason: "allowed", status: 200, checkMicros: 5, network: "192.0.2.0/24", country: "DE" }]);
    const restarted = harness(store, at);
    const c = await evaluate(restarted.o);
    expect(c.cooling.map((x) => `${x.name} ${x.alert}`)).toContain("roaming NewSourceNetwork");
    expect(restarted.events.filter((x) => x.name === "roaming")).toEqual([]);

    // Past the cooldown it fires again.
    at.now = NOW + COOLDOWN + 1;
    await store.writeRequests([{ at: at.now - 60_000, uid: "u-roaming", keyId: "kw_roaming", front: "http", outcome: "allowed", reason: "allowed", status: 200, checkMicros: 5, network: "192.0.3.0/24", country: "DE" }]);
    const d = await evaluate(restarted.o);
    expect(d.fired.map((x) => `${x.name} ${x.alert}`)).toContain("roaming NewSourceNetwork");
    await store.close();
  });

  it("two evaluators racing on one store: each alert fires once", async () => {
    const at = { now: NOW };
    const store = await seeded(at);
    const a = harness(store, at);
    const b = harness(store, at);
    const [x, y] = await Promise.all([evaluate(a.o), evaluate(b.o)]);
    expect(x.fired.length + y.fired.length).toBe(Object.values(EXPECTED).flat().length);
    await store.close();
  });

  it("a failed Alertmanager push is counted and logged, and the next evaluation re-sends", async () => {
    const at = { now: NOW };
    const store = await seeded(at);
    const h = harness(store, at);
    let calls = 0;
    h.o.alertmanager = {
      push: () => {
        calls++;
        return calls === 1 ? Promise.reject(new Error("connection refused")) : Promise.resolve();
      },
    };
    await evaluate(h.o);
    at.now += 60_000;
    await evaluate(h.o);
    expect(calls).toBe(2);
    const text = await h.registry.metrics();
    expect(text).toContain('keyward_alerts_pushes_total{result="error"} 1');
    expect(text).toContain('keyward_alerts_pushes_total{result="ok"} 1');
    await store.close();
  });
});
