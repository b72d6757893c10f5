// The redis limits store's other ways to reach Redis, against real servers:
// TLS (rediss://, a private CA) and Sentinel. The store is used directly; the
// keyward processes of limits-redis.test.ts reach Redis the same way.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isKeywardError } from "../../src/errors.ts";
import { connectLimitsRedis, type LimitsRedis, type RedisConnectOptions } from "../../src/limits/redis-client.ts";
import { Limiter, type LimitVerdict } from "../../src/limits/limiter.ts";
import { RedisLimiter } from "../../src/limits/redis-store.ts";
import { compileLimits } from "../../src/limits/spec.ts";
import { certDir, type CertDir, type TestCa } from "../support/certs.ts";
import { haveRedis, redisPort, startRedis, type RedisServer } from "../support/redis.ts";

const PASSWORD = "modes-pw";
const LIMITS = compileLimits({ rate: { requests: 1, per: "1h", burst: 2 } });

const options = (over: Partial<RedisConnectOptions>): RedisConnectOptions => ({ mode: "standalone", urls: [], sentinelMaster: "", passwordFile: "", caFile: "", connectTimeoutMs: 3000, ...over });

/**
 * 1.5 s before the end of a UTC day at least a minute away by the real clock: the quota period
 * turns over during a sequence, and Redis, which expires each period's counters at the period's
 * end by its own clock, still holds them (an end already past would drop them at once).
 */
function nearTheDaysEnd(): number {
  const day = 86_400_000;
  return (Math.floor((Date.now() + 60_000) / day) + 1) * day - 1500;
}

/** Three checks of one key on a fresh subject: the burst of 2, then a refusal, all counted on Redis. */
async function threeTakes(redis: LimitsRedis): Promise<boolean[]> {
  const limiter = new RedisLimiter({ run: redis.run, keyPrefix: "keyward:", timeoutMs: 2000, failureMode: "deny", breakerFailures: 5, breakerCooldownMs: 1000, maxInFlight: 10, denyCache: false, now: Date.now });
  const subject = `uid-${Math.random()}|`;
  const out: boolean[] = [];
  for (let i = 0; i < 3; i++) out.push((await limiter.take(subject, LIMITS, Date.now())).ok);
  return out;
}

describe.skipIf(!haveRedis())("the redis limits store against the memory store", () => {
  it("gives the same verdicts, Retry-After and RateLimit figures, a policy's maximums included", async () => {
    const server = await startRedis();
    const redis = await connectLimitsRedis(options({ urls: [`redis://127.0.0.1:${server.port}`] }));
    try {
      const shared = new RedisLimiter({ run: redis.run, keyPrefix: "keyward:", timeoutMs: 2000, failureMode: "deny", breakerFailures: 5, breakerCooldownMs: 1000, maxInFlight: 10, denyCache: false, now: Date.now });
      const memory = new Limiter();
      // Refill rates that are binary fractions per millisecond (1/128, 1/256): both stores add
      // tokens at different moments, and only exact arithmetic makes them agree to the last bit.
      const own = compileLimits({ rate: { requests: 8, per: "1024ms", burst: 4 }, quota: { requests: 7, per: "day" } });
      const ceiling = { subject: "uid-eq|ns/p|max", limits: compileLimits({ rate: { requests: 4, per: "1024ms", burst: 3 }, quota: { requests: 5, per: "day" } }) };
      const t0 = nearTheDaysEnd();
      const got: [LimitVerdict, LimitVerdict][] = [];
      for (let k = 0; k < 60; k++) {
        const now = t0 + k * 40;
        const c = k % 3 === 0 ? undefined : ceiling;
        got.push([memory.take("uid-eq|ns/p", own, now, c), await shared.take("uid-eq|ns/p", own, now, c)]);
      }
      for (const [i, [m, r]] of got.entries()) expect(r, `take ${i}`).toEqual(m);
      // The sequence went through refusals by both rates and the quota, and admissions after the day turned.
      const reasons = new Set(got.map(([m]) => m.reason));
      expect(reasons).toEqual(new Set([undefined, "rate_limited", "quota_exceeded"]));
    } finally {
      await redis.close();
      await server.stop();
    }
  });
});

describe.skipIf(!haveRedis())("the redis limits store's batches on a real Redis", () => {
  it("counts the checks of one turn in one call, in order, each as if alone: as the memory store does", async () => {
    const server = await startRedis();
    const redis = await connectLimitsRedis(options({ urls: [`redis://127.0.0.1:${server.port}`] }));
    try {
      let calls = 0;
      const run: typeof redis.run = (args) => {
        calls++;
        return redis.run(args);
      };
      const shared = new RedisLimiter({ run, keyPrefix: "keyward:", timeoutMs: 2000, failureMode: "deny", breakerFailures: 5, breakerCooldownMs: 1000, maxInFlight: 1000, denyCache: false, now: Date.now });
      const memory = new Limiter();
      const own = compileLimits({ rate: { requests: 8, per: "1024ms", burst: 4 }, quota: { requests: 7, per: "day" } });
      const ceiling = { subject: "uid-batch|ns/p|max", limits: compileLimits({ rate: { requests: 4, per: "1024ms", burst: 3 }, quota: { requests: 5, per: "day" } }) };
      const t0 = nearTheDaysEnd();
      const got: [LimitVerdict, LimitVerdict | Promise<LimitVerdict>][] = [];
      // Three turns of 20 checks: one key with and without its ceiling, another key, each check at its own time.
      for (let turn = 0; turn < 3; turn++) {
        for (let k = turn * 20; k < turn * 20 + 20; k++) {
          const now = t0 + k * 40;
          const subject = k % 5 === 0 ? "uid-other|ns/p" : "uid-batch|ns/p";
          const c = k % 3 === 0 ? undefined : ceiling;
          got.push([memory.take(subject, own, now, c), shared.take(subject, own, now, c)]);
        }
        await Promise.all(got.map(([, r]) => Promise.resolve(r)));
      }
      expect(calls).toBe(3);
      for (const [i, [m, r]] of got.entries()) expect(await r, `take ${i}`).toEqual(m);
      expect(new Set(got.map(([m]) => m.reason))).toEqual(new Set([undefined, "rate_limited", "quota_exceeded"]));
    } finally {
      await redis.close();
      await server.stop();
    }
  });
});

describe.skipIf(!haveRedis())("the redis limits store over TLS and Sentinel", () => {
  let certs: CertDir;
  let ca: TestCa;
  let passwordFile: string;
  const servers: RedisServer[] = [];

  beforeAll(async () => {
    certs = await certDir();
    ca = await certs.ca("redis-ca");
    passwordFile = join(certs.dir, "password");
    writeFileSync(passwordFile, PASSWORD);
  });
  afterAll(async () => {
    for (const s of servers) await s.stop();
    await certs.remove();
  });

  it("rediss://: verifies Redis's certificate against --limits-redis-ca-file, and refuses one it cannot verify", async () => {
    const server = await ca.server("redis");
    const tlsPort = await redisPort();
    servers.push(await startRedis({ password: PASSWORD, extra: [`tls-port ${tlsPort}`, `tls-cert-file ${server.cert}`, `tls-key-file ${server.key}`, `tls-ca-cert-file ${ca.cert}`, "tls-auth-clients no"] }));
    const redis = await connectLimitsRedis(options({ urls: [`rediss://127.0.0.1:${tlsPort}`], passwordFile, caFile: ca.cert }));
    try {
      expect(await threeTakes(redis)).toEqual([true, true, false]);
    } finally {
      await redis.close();
    }
    const refused = await connectLimitsRedis(options({ urls: [`rediss://127.0.0.1:${tlsPort}`], passwordFile })).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(isKeywardError(refused, "LimitsStoreFailed")).toBe(true);
    expect((refused as Error).message).toMatch(/rediss:\/\/127\.0\.0\.1:\d+: .*(certificate|self.signed)/i);
  });

  it("sentinel: finds the master through the Sentinels, with the password for both", async () => {
    const master = await startRedis({ password: PASSWORD });
    servers.push(master);
    const sentinel = await startRedis({
      password: PASSWORD,
      sentinel: true,
      extra: [`sentinel monitor keyward 127.0.0.1 ${master.port} 1`, `sentinel auth-pass keyward ${PASSWORD}`, "sentinel down-after-milliseconds keyward 2000"],
    });
    servers.push(sentinel);
    const redis = await connectLimitsRedis(options({ mode: "sentinel", urls: [`redis://127.0.0.1:${sentinel.port}`], sentinelMaster: "keyward", passwordFile }));
    try {
      expect(await threeTakes(redis)).toEqual([true, true, false]);
      expect((await master.cli("--scan", "--pattern", "keyward:*")).trim()).not.toBe("");
    } finally {
      await redis.close();
    }
    const unknown = await connectLimitsRedis(options({ mode: "sentinel", urls: [`redis://127.0.0.1:${sentinel.port}`], sentinelMaster: "nope", passwordFile, connectTimeoutMs: 1500 })).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(isKeywardError(unknown, "LimitsStoreFailed")).toBe(true);
  });
});
