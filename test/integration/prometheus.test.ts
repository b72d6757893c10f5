// keyward's shipped Prometheus rules in a real Prometheus that scrapes two real
// data-plane processes (node src/main.ts authz) on the real control plane. The
// rules are those of deploy/prometheus/keyward.rules.yaml with every duration
// divided by 60 (scaledRules); the suite forces each condition and reads
// /api/v1/alerts until the alert fires: a replica cut off from the apiserver (a
// stale index, checks answered 503, the availability SLO burning, then a
// revocation it learns late), and every replica gone (absent).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { applyUsageRbac } from "../conformance/go-als/env.ts";
import { authzClient, authzKubeConfig, checkRequest, createKey, createPolicy, patchKeySpec, summarize, type TestKey } from "../conformance/harness.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { startKeyward, type KeywardProcess } from "../support/keyward.ts";
import { scaledRules, startHoldingRelay, startPrometheus, type HoldingRelay, type PrometheusServer } from "../support/prometheus.ts";

const root = resolve(import.meta.dirname, "..", "..");
const HOST = "prometheus.example.com";
/** Every duration of the shipped rules is divided by this: 5m becomes 5s. */
const TIME_FACTOR = 60;

interface Replica {
  kw: KeywardProcess;
  grpcPort: number;
  metricsPort: number;
  instance: string;
}

describe("keyward's rules in a real Prometheus", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let ns: string;
  let dir: string;
  let relay: HoldingRelay;
  let prom: PrometheusServer;
  let used: TestKey;
  let revoked: TestKey;
  /**
   * Behind the relay, so the test can cut it off from the apiserver; fails closed after 3 s
   * without news. Both replicas restart a quiet watch after 2 s (--watch-stale-after, 3m by
   * default, scaled like the rules): the apiserver's bookmarks come about once a minute, which
   * the scaled staleness alert (5 s) would take for a stale index.
   */
  let cutOff: Replica;
  let direct: Replica;

  const startReplica = async (kubeconfig: string, extra: string[]): Promise<Replica> => {
    const [grpcPort, metricsPort] = [await freePort(), await freePort()];
    const kw = startKeyward([
      "authz",
      `--kubeconfig=${kubeconfig}`,
      `--namespaces=${ns}`,
      `--grpc-address=127.0.0.1:${grpcPort}`,
      "--http-auth-address=",
      `--metrics-address=127.0.0.1:${metricsPort}`,
      "--usage-alerts=false",
      ...extra,
    ]);
    await kw.ready(metricsPort);
    return { kw, grpcPort, metricsPort, instance: `127.0.0.1:${metricsPort}` };
  };

  const check = async (r: Replica, key: TestKey): Promise<number> => {
    const c = authzClient(r.grpcPort, { ownConnection: true });
    try {
      return summarize(await c.check(checkRequest({ host: HOST, path: "/items/1", headers: { "x-api-key": key.key } }))).httpStatus;
    } finally {
      c.close();
    }
  };

  /** Runs `fn` while checks with `key` go to `replicas` one after another; their statuses land in `statuses`. */
  const whileChecking = async (replicas: Replica[], key: TestKey, statuses: number[], fn: () => Promise<void>): Promise<void> => {
    const load = { on: true };
    const loading = (async () => {
      for (let i = 0; load.on; i++) statuses.push(await check(replicas[i % replicas.length] as Replica, key));
    })();
    try {
      await fn();
    } finally {
      load.on = false;
      await loading;
    }
  };

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    await applyUsageRbac(admin);
    const kc = await authzKubeConfig(adminKc, admin);
    const server = new URL(kc.getCurrentCluster()?.server ?? "");
    relay = await startHoldingRelay({ host: server.hostname, port: Number(server.port) });
    dir = mkdtempSync(join(tmpdir(), "keyward-prometheus-suite-"));
    const exported = kc.exportConfig();
    writeFileSync(join(dir, "direct"), exported, { mode: 0o600 });
    // The same credentials and CA through the relay: the apiserver's certificate names 127.0.0.1.
    writeFileSync(join(dir, "relayed"), exported.replaceAll(server.origin, `https://127.0.0.1:${relay.port}`), { mode: 0o600 });
    ns = await createTestNamespace(adminKc, "prom");
    await createPolicy(admin, ns, "api", { hosts: [HOST], rules: [{ name: "read", paths: ["/items/*"], methods: ["GET"] }] });
    used = await createKey(admin, ns, "used", { scopes: ["items:read"] });
    revoked = await createKey(admin, ns, "revoked", { scopes: ["items:read"] });
    [cutOff, direct] = await Promise.all([
      startReplica(join(dir, "relayed"), ["--watch-stale-after=2s", "--max-index-staleness=3s"]),
      startReplica(join(dir, "direct"), ["--watch-stale-after=2s"]),
    ]);
    prom = await startPrometheus({
      jobs: [{ name: "keyward-authz", ports: [cutOff.metricsPort, direct.metricsPort] }],
      rules: scaledRules(readFileSync(join(root, "deploy", "prometheus", "keyward.rules.yaml"), "utf8"), TIME_FACTOR),
    });
  }, 90_000);

  afterAll(async () => {
    relay.release();
    await Promise.all([cutOff.kw.kill(), direct.kw.kill()]);
    await prom.stop();
    await relay.close();
    await deleteNamespace(adminKc, ns);
    admin.close();
    rmSync(dir, { recursive: true, force: true });
    for (const r of [cutOff, direct]) {
      expect(r.kw.output()).not.toContain(used.key);
      expect(r.kw.output()).not.toContain(revoked.key);
    }
  });

  it("scrapes both replicas, loads every rule and records the SLOs", async () => {
    const rules = (await (await fetch(`${prom.url}/api/v1/rules`)).json()) as { data: { groups: { rules: { health: string; name: string }[] }[] } };
    const loaded = rules.data.groups.flatMap((g) => g.rules);
    expect(loaded.length).toBeGreaterThan(40);
    expect(loaded.filter((r) => r.health === "err").map((r) => r.name)).toEqual([]);
    // Checks on both replicas until the 5m (5 s) window has a rate of them.
    const statuses: number[] = [];
    await whileChecking([cutOff, direct], used, statuses, async () => {
      await eventually(async () => ((await prom.value("keyward:check_availability:ratio_rate5m")) === 1 ? true : undefined), 30_000, "availability 1");
      await eventually(async () => ((await prom.value("keyward:check_success:ratio_rate5m")) === 1 ? true : undefined), 30_000, "success 1");
    });
    expect(new Set(statuses)).toEqual(new Set([200]));
    expect((await prom.query('up{job="keyward-authz"}')).map(([, v]) => v)).toEqual([1, 1]);
    // None of the alerts this suite forces fires yet. (KeywardWatchErrors may: the 2 s watch
    // restarts count as "stale" events, more than 3 in its scaled 10 s window.)
    const forced = ["KeywardAuthzIndexStale", "KeywardCheckErrors", "KeywardCheckAvailabilityBudgetBurnFast", "KeywardRevocationLagHigh", "KeywardAuthzAbsent"];
    expect((await prom.alerts()).filter((a) => forced.includes(a.labels.alertname ?? "")).map((a) => `${a.labels.alertname ?? ""} ${a.state}`)).toEqual([]);
  }, 30_000);

  it("cut off from the apiserver: a stale index, checks failing closed, the availability budget burning, then a revocation learnt late", async () => {
    expect(await check(cutOff, revoked)).toBe(200);
    relay.hold();
    // The revocation is written while the cut-off replica cannot hear of it; the other one does at once.
    await patchKeySpec(admin, ns, "revoked", { disabled: true });
    const statuses: number[] = [];
    await whileChecking([cutOff], used, statuses, async () => {
      const stale = await prom.firing("KeywardAuthzIndexStale", { instance: cutOff.instance });
      expect(stale.labels.severity).toBe("critical");
      expect(stale.annotations.runbook_url).toMatch(/docs\/runbooks\.md#keywardauthzindexstale$/);
      await prom.firing("KeywardCheckErrors");
      await prom.firing("KeywardCheckAvailabilityBudgetBurnFast");
      expect(statuses).toContain(503);
      // Only the cut-off replica is stale.
      expect(new Set((await prom.alerts()).filter((a) => a.labels.alertname === "KeywardAuthzIndexStale").map((a) => a.labels.instance))).toEqual(new Set([cutOff.instance]));
    }).finally(() => {
      relay.release();
    });
    // Once it hears from the apiserver again, it learns of the revocation more than 5 s after the write.
    const lag = await prom.firing("KeywardRevocationLagHigh");
    expect(Number(lag.value)).toBeGreaterThan(5);
    expect(await check(cutOff, revoked)).toBe(401);
  }, 90_000);

  it("every data-plane replica gone: absent", async () => {
    expect((await prom.alerts()).map((a) => a.labels.alertname)).not.toContain("KeywardAuthzAbsent");
    await cutOff.kw.kill();
    // One replica left: still present.
    await eventually(async () => ((await prom.query('up{job="keyward-authz"} == 0')).length === 1 ? true : undefined), 10_000, "the first replica's scrape to fail");
    expect((await prom.alerts()).map((a) => a.labels.alertname)).not.toContain("KeywardAuthzAbsent");
    await direct.kw.kill();
    const absent = await prom.firing("KeywardAuthzAbsent");
    expect(absent.labels.severity).toBe("critical");
  }, 60_000);
});
