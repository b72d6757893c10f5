// --limits-store=redis against a real redis-server: three keyward data-plane
// processes (replica A, and replica B with two workers) share one Redis, so a
// key's burst and quota are admitted exactly once across them; the counters
// survive a restart; a wrong password or URL stops keyward at start-up; and a
// Redis that is killed or hung mid-load never makes a check wait much past the
// deadline: the local fallback answers, and shared counting resumes.
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
import { expectOutageBounded, OUTAGE_BOUNDS, underLoad, waitsOf } from "../support/limits-load.ts";
import { haveRedis, startRedis, type RedisServer } from "../support/redis.ts";

const HOST = "limits.example.com";
const PASSWORD = "s3cret-redis-pw";

interface Replica {
  kw: KeywardProcess;
  grpc: number;
  metrics: number;
  args: string[];
}

describe.skipIf(!haveRedis())("limits shared on Redis", () => {
  let adminKc: KubeConfig;
  let admin: KubeRest;
  let ns: string;
  let dp: DataPlaneKubeconfig;
  let passwordFile: string;
  let redis: RedisServer;
  let burst: TestKey;
  let quota: TestKey;
  let load: TestKey;
  const replicas: Replica[] = [];

  const baseArgs = (grpc: number, metrics: number, extra: string[] = []): string[] => [
    ...dataPlaneArgs({ kubeconfig: dp.kubeconfig, namespace: ns, grpcPort: grpc, metricsPort: metrics }),
    "--limits-store=redis",
    `--limits-redis-url=redis://127.0.0.1:${redis.port}`,
    `--limits-redis-password-file=${passwordFile}`,
    ...extra,
  ];
  const startReplica = async (extra: string[]): Promise<Replica> => {
    const [grpc, metrics] = [await freePort(), await freePort()];
    const args = baseArgs(grpc, metrics, extra);
    const kw = startKeyward(args);
    await kw.ready(metrics);
    return { kw, grpc, metrics, args };
  };
  const ask = (c: ReturnType<typeof authzClient>, key: TestKey): Promise<ReturnType<typeof summarize>> =>
    c.check(checkRequest({ host: HOST, path: "/items/1", headers: { "x-api-key": key.key } }), { deadlineMs: 30_000 }).then(summarize);

  beforeAll(async () => {
    adminKc = loadKubeConfig(inject("kubeconfig"));
    admin = new KubeRest(adminKc, { qps: 0 });
    dp = await dataPlaneKubeconfig(adminKc, admin, "limits");
    passwordFile = join(dp.dir, "redis-password");
    writeFileSync(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    redis = await startRedis({ password: PASSWORD });
    ns = await createTestNamespace(adminKc, "limits");
    await createPolicy(admin, ns, "api", { hosts: [HOST], rules: [{ name: "read", paths: ["/items/*"], methods: ["GET"] }] });
    // One token an hour: within the test, the burst is all there is.
    burst = await createKey(admin, ns, "burst", { limits: { rate: { requests: 1, per: "1h", burst: 100 } } });
    quota = await createKey(admin, ns, "quota", { limits: { quota: { requests: 250, per: "day" } } });
    load = await createKey(admin, ns, "load", { limits: { quota: { requests: 10_000_000, per: "day" } } });
    // A generous deadline: under 1,000 concurrent checks on two cores, a fallback would spoil the count.
    replicas.push(await startReplica(["--limits-redis-timeout=5s"]));
    replicas.push(await startReplica(["--limits-redis-timeout=5s", "--authz-workers=2"]));
  });

  afterAll(async () => {
    for (const r of replicas) await r.kw.kill();
    await redis.stop();
    await deleteNamespace(adminKc, ns);
    admin.close();
    dp.remove();
    for (const r of replicas) {
      expect(r.kw.output()).not.toContain(burst.key);
      expect(r.kw.output()).not.toContain(PASSWORD);
    }
  });

  /** `total` concurrent checks of `key`, spread over connections to both replicas (and so all three processes). */
  const concurrently = async (key: TestKey, total: number): Promise<number[]> => {
    const clients = [0, 0, 1, 1, 1, 1].map((i) => authzClient((replicas[i] as Replica).grpc, { ownConnection: true }));
    try {
      const answers = await Promise.all(Array.from({ length: total }, (_, i) => ask(clients[i % clients.length] as ReturnType<typeof authzClient>, key)));
      return answers.map((a) => a.httpStatus);
    } finally {
      for (const c of clients) c.close();
    }
  };

  it("admits exactly the burst across three processes: 1,000 concurrent checks, burst 100", async () => {
    const statuses = await concurrently(burst, 1000);
    expect(statuses.filter((s) => s === 200)).toHaveLength(100);
    expect(statuses.filter((s) => s === 429)).toHaveLength(900);
    // Every process answered some of them.
    const b = replicas[1] as Replica;
    expect(await metricValue((replicas[0] as Replica).metrics, 'keyward_authz_decisions_total{outcome="limited",reason="rate_limited",front="grpc"}')).toBeGreaterThan(0);
    for (const w of [0, 1]) expect(await metricValue(b.metrics, `keyward_authz_worker_checks_total{worker="${w}"}`)).toBeGreaterThan(0);
    // Each call's time to its reply is in a histogram, one observation per call.
    const a = replicas[0] as Replica;
    const okCalls = await metricValue(a.metrics, 'keyward_limits_store_calls_total{result="ok"}');
    expect(okCalls).toBeGreaterThan(0);
    expect(await metricValue(a.metrics, 'keyward_limits_store_call_duration_seconds_count{result="ok"}')).toBe(okCalls);
    expect(await metricValue(a.metrics, 'keyward_limits_store_call_duration_seconds_bucket{le="1",result="ok"}')).toBe(okCalls);
    // Retry-After comes from the shared bucket: a token an hour.
    const c = authzClient((replicas[0] as Replica).grpc);
    const refused = await ask(c, burst);
    c.close();
    expect(refused.httpStatus).toBe(429);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(3000);
    // Redis keys are digests of fixed length with one hash tag per ApiKey; the key never appears.
    const keys = (await redis.cli("--scan")).trim().split("\n");
    expect(keys.length).toBeGreaterThan(0);
    for (const k of keys) expect(k).toMatch(/^keyward:\{[A-Za-z0-9_-]{22}\}:[A-Za-z0-9_-]{22}:[rq][0-9./a-z:]+$/);
  });

  it("admits exactly a quota of 250 per day across three processes", async () => {
    const statuses = await concurrently(quota, 400);
    expect(statuses.filter((s) => s === 200)).toHaveLength(250);
    expect(statuses.filter((s) => s === 429)).toHaveLength(150);
  });

  it("keeps the counters across a restart of keyward", async () => {
    const a = replicas[0] as Replica;
    a.kw.child.kill("SIGTERM");
    expect(await a.kw.exited).toBe(0);
    a.kw = startKeyward(a.args);
    await a.kw.ready(a.metrics);
    const c = authzClient(a.grpc, { ownConnection: true });
    try {
      expect((await ask(c, burst)).httpStatus).toBe(429);
      const q = await ask(c, quota);
      expect(q.httpStatus).toBe(429);
      expect(q.body).toContain("quota");
    } finally {
      c.close();
    }
  });

  it("refuses to start with a wrong password, an unreachable Redis or a bad URL, and says why", async () => {
    const wrong = join(dp.dir, "wrong-password");
    writeFileSync(wrong, "not-the-password");
    const cases: [string[], RegExp][] = [
      [[`--limits-redis-password-file=${wrong}`], /LimitsStoreFailed: limits store standalone redis:\/\/127\.0\.0\.1:\d+: WRONGPASS/],
      [[`--limits-redis-url=redis://127.0.0.1:${await freePort()}`], /LimitsStoreFailed: .*ECONNREFUSED/],
      [["--limits-redis-url=http://user:pw-in-url@127.0.0.1:1"], /ConfigInvalid: --limits-redis-url: http:\/\/ is not redis:\/\/ or rediss:\/\//],
      [["--limits-redis-url="], /ConfigInvalid: --limits-store=redis needs --limits-redis-url/],
    ];
    for (const [extra, message] of cases) {
      const kw = startKeyward([...baseArgs(await freePort(), await freePort()), ...extra]);
      expect(await kw.exited).toBe(1);
      expect(kw.output()).toMatch(message);
      expect(kw.output()).not.toContain("not-the-password");
      expect(kw.output()).not.toContain("pw-in-url");
    }
  });

  describe("faults", () => {
    let r: Replica;

    beforeAll(async () => {
      r = await startReplica([`--limits-redis-timeout=${OUTAGE_BOUNDS.deadlineMs}ms`, "--limits-redis-breaker-failures=3", "--limits-redis-breaker-cooldown=200ms", "--decision-log=stdout"]);
      replicas.push(r);
    });

    const breaker = (): Promise<number> => metricValue(r.metrics, "keyward_limits_store_breaker_state");

    const callsOk = (): Promise<number> => metricValue(r.metrics, 'keyward_limits_store_calls_total{result="ok"}');

    it.each([
      ["killed", "SIGKILL"],
      ["hung (SIGSTOP)", "SIGSTOP"],
    ] as const)("Redis %s mid-load: the local fallback answers within the deadline, and sharing resumes", async (what, signal) => {
      const closedBefore = (await metricValue(r.metrics, 'keyward_limits_store_transitions_total{to="closed"}')) || 0;
      const lines = (msg: string): number => r.kw.output().split("\n").filter((l) => l.includes(`"msg":"${msg}"`)).length;
      const DOWN = "limits store unavailable; checks are limited by the failure setting until it answers again";
      const UP = "limits store answers again; limits are shared";
      const [downBefore, upBefore] = [lines(DOWN), lines(UP)];
      const logged = decisionLatencies(r.kw.output()).length;
      const result = await underLoad(r.grpc, (c) => ask(c, load).then((a) => a.httpStatus), async () => {
        if (signal === "SIGKILL") await redis.kill("SIGKILL");
        else redis.child.kill("SIGSTOP");
        await eventually(async () => ((await breaker()) === 2 ? true : undefined), 10_000, "the breaker open");
        // The outage goes on for a while under load.
        const n = (await metricValue(r.metrics, 'keyward_limits_store_fallbacks_total{cause="open",mode="local"}')) || 0;
        await eventually(async () => ((await metricValue(r.metrics, 'keyward_limits_store_fallbacks_total{cause="open",mode="local"}')) >= n + 300 ? true : undefined), 20_000, "checks during the outage");
        if (signal === "SIGKILL") await redis.start();
        else redis.child.kill("SIGCONT");
        await eventually(async () => ((await breaker()) === 0 ? true : undefined), 20_000, "the breaker closed");
      });
      expectOutageBounded(`Redis ${what}`, result, await waitsOf(r.kw, logged, result));
      expect(r.kw.child.exitCode).toBeNull();
      // Each outage is logged once when it begins and once when it ends, however many probes
      // failed between. A busy machine can push calls past the deadline right after the
      // recovery and open the breaker again (a second, real outage), so the outages are
      // counted, not assumed to be one.
      const recoveries = (await metricValue(r.metrics, 'keyward_limits_store_transitions_total{to="closed"}')) - closedBefore;
      expect(recoveries).toBeGreaterThanOrEqual(1);
      expect(recoveries).toBeLessThanOrEqual(3);
      expect([lines(DOWN), lines(UP)]).toEqual([downBefore + recoveries, upBefore + recoveries]);
      // Shared counting resumed: checks are counted on Redis again.
      const ok = await callsOk();
      const c = authzClient(r.grpc, { ownConnection: true });
      for (let i = 0; i < 5; i++) expect((await ask(c, load)).httpStatus).toBe(200);
      c.close();
      expect(await callsOk()).toBe(ok + 5);
    });
  });
});
