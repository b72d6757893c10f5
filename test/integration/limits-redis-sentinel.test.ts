// --limits-redis-mode=sentinel through a real failover: a master, its replica
// and three Sentinels (quorum 2), all redis-server from the same package; a
// keyward data plane finds the master through the Sentinels. The master is
// killed under load: the local fallback answers within the deadline while the
// Sentinels promote the replica, no check waits much past the deadline, and
// shared counting resumes on the promoted master by itself.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { loadKubeConfig } from "../../src/k8s/client.ts";
import { KubeRest } from "../../src/k8s/rest.ts";
import { authzClient, checkRequest, createKey, createPolicy, summarize, type TestKey } from "../conformance/harness.ts";
import { freePort } from "../controlplane/controlplane.ts";
import { createTestNamespace, deleteNamespace, eventually } from "../support/k8s.ts";
import { dataPlaneArgs, dataPlaneKubeconfig, decisionLatencies, metricValue, startKeyward, type DataPlaneKubeconfig, type KeywardProcess } from "../support/keyward.ts";
import { expectOutageBounded, OUTAGE_BOUNDS, underLoad, waitsOf, type AuthzClient } from "../support/limits-load.ts";
import { haveRedis, startRedis, type RedisServer } from "../support/redis.ts";

const HOST = "sentinel.example.com";
const PASSWORD = "sentinel-suite-pw";
const MASTER = "keyward-limits";

describe.skipIf(!haveRedis())("limits shared through Redis Sentinel, across a failover", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let ns: string;
  let dp: DataPlaneKubeconfig;
  let master: RedisServer;
  let replica: RedisServer;
  const sentinels: RedisServer[] = [];
  let kw: KeywardProcess;
  let grpc: number;
  let metrics: number;
  let load: TestKey;

  const ask = (c: AuthzClient): Promise<number> => c.check(checkRequest({ host: HOST, path: "/items/1", headers: { "x-api-key": load.key } }), { deadlineMs: 30_000 }).then((r) => summarize(r).httpStatus);
  /** The address the Sentinels give for the master: its port. */
  const masterPort = async (): Promise<number> => Number((await (sentinels[0] as RedisServer).cli("sentinel", "get-master-addr-by-name", MASTER)).trim().split("\n")[1]);
  /** The load key's quota counter on a server (0 when it has none). */
  const quotaCount = async (server: RedisServer): Promise<number> => {
    const keys = (await server.cli("--scan", "--pattern", "keyward:*:q*")).trim().split("\n").filter(Boolean);
    const counts = await Promise.all(keys.map(async (k) => Number((await server.cli("get", k)).trim())));
    return counts.reduce((a, b) => a + b, 0);
  };

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    dp = await dataPlaneKubeconfig(adminKc, admin, "sentinel");
    const passwordFile = join(dp.dir, "redis-password");
    writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });

    master = await startRedis({ password: PASSWORD });
    replica = await startRedis({ password: PASSWORD, extra: [`replicaof 127.0.0.1 ${master.port}`] });
    await eventually(async () => ((await replica.cli("info", "replication")).includes("master_link_status:up") ? true : undefined), 20_000, "the replica in sync");
    for (let i = 0; i < 3; i++) {
      sentinels.push(
        await startRedis({
          password: PASSWORD,
          sentinel: true,
          extra: [
            `sentinel monitor ${MASTER} 127.0.0.1 ${master.port} 2`,
            `sentinel auth-pass ${MASTER} ${PASSWORD}`,
            `sentinel sentinel-pass ${PASSWORD}`,
            `sentinel down-after-milliseconds ${MASTER} 1000`,
            `sentinel failover-timeout ${MASTER} 10000`,
          ],
        }),
      );
    }
    // Every Sentinel knows the replica and the two other Sentinels: a failover can be agreed.
    await eventually(
      async () => {
        const infos = await Promise.all(sentinels.map((s) => s.cli("sentinel", "master", MASTER)));
        return infos.every((t) => /num-other-sentinels\n2\n/.test(t) && /num-slaves\n1\n/.test(t)) ? true : undefined;
      },
      30_000,
      "the Sentinels discovering each other and the replica",
    );

    ns = await createTestNamespace(adminKc, "sentinel");
    await createPolicy(admin, ns, "api", { hosts: [HOST], rules: [{ name: "read", paths: ["/items/*"], methods: ["GET"] }] });
    load = await createKey(admin, ns, "load", { limits: { quota: { requests: 10_000_000, per: "day" } } });
    [grpc, metrics] = [await freePort(), await freePort()];
    kw = startKeyward([
      ...dataPlaneArgs({ kubeconfig: dp.kubeconfig, namespace: ns, grpcPort: grpc, metricsPort: metrics }),
      "--limits-store=redis",
      "--limits-redis-mode=sentinel",
      `--limits-redis-url=${sentinels.map((s) => `redis://127.0.0.1:${s.port}`).join(",")}`,
      `--limits-redis-sentinel-master=${MASTER}`,
      `--limits-redis-password-file=${passwordFile}`,
      `--limits-redis-timeout=${OUTAGE_BOUNDS.deadlineMs}ms`,
      "--limits-redis-breaker-failures=3",
      "--limits-redis-breaker-cooldown=200ms",
      "--decision-log=stdout",
    ]);
    await kw.ready(metrics);
  });

  afterAll(async () => {
    await kw.kill();
    expect(kw.output()).not.toContain(load.key);
    expect(kw.output()).not.toContain(PASSWORD);
    for (const s of [...sentinels, master, replica]) await s.stop();
    await deleteNamespace(adminKc, ns);
    admin.close();
    dp.remove();
  });

  it("the master killed under load: the fallback answers within the deadline, and counting resumes on the promoted replica", async () => {
    const breaker = (): Promise<number> => metricValue(metrics, "keyward_limits_store_breaker_state");
    const callsOk = (): Promise<number> => metricValue(metrics, 'keyward_limits_store_calls_total{result="ok"}');
    // Counted on the master, and replicated.
    const c0 = authzClient(grpc, { ownConnection: true });
    for (let i = 0; i < 5; i++) expect(await ask(c0)).toBe(200);
    c0.close();
    expect(await quotaCount(master)).toBe(5);
    expect(await masterPort()).toBe(master.port);

    const logged = decisionLatencies(kw.output()).length;
    let outageMs = 0;
    const result = await underLoad(grpc, ask, async () => {
      const t0 = performance.now();
      await master.kill("SIGKILL");
      await eventually(async () => ((await breaker()) === 2 ? true : undefined), 10_000, "the breaker open");
      await eventually(async () => ((await masterPort()) === replica.port ? true : undefined), 60_000, "the Sentinels promoting the replica");
      await eventually(async () => ((await breaker()) === 0 ? true : undefined), 30_000, "the breaker closed on the promoted master");
      outageMs = performance.now() - t0;
    });
    expectOutageBounded(`Sentinel failover (${(outageMs / 1000).toFixed(1)} s from the kill to the breaker closed)`, result, await waitsOf(kw, logged, result));
    expect(kw.child.exitCode).toBeNull();

    // Shared counting resumed on the promoted master: its counter moves with every check counted on Redis.
    const [ok, before] = [await callsOk(), await quotaCount(replica)];
    expect(before).toBeGreaterThanOrEqual(5);
    const c = authzClient(grpc, { ownConnection: true });
    for (let i = 0; i < 5; i++) expect(await ask(c)).toBe(200);
    c.close();
    expect(await callsOk()).toBe(ok + 5);
    expect(await quotaCount(replica)).toBe(before + 5);
  });
});
