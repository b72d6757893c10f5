// Opens the limits store that --limits-store names: the memory store, or the
// redis store with its connection, metrics and transition log.
import { Counter, Gauge, type Registry } from "prom-client";
import { TallyHistogram } from "../metrics/tally.ts";
import type { Config } from "../config/config.ts";
import type { Logger } from "../log.ts";
import { Limiter, type LimitTaker } from "./limiter.ts";
import type { RedisMode } from "./redis-client.ts";
import type { FailureMode, RedisLimiter } from "./redis-store.ts";
import type { BreakerState } from "./breaker.ts";

export interface LimitStore {
  readonly limiter: LimitTaker;
  close(): Promise<void>;
}

const BREAKER_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };

export async function openLimitStore(config: Config, log: Logger, registry: Registry, now: () => number): Promise<LimitStore> {
  if (config.limitsStore !== "redis") return { limiter: new Limiter(), close: () => Promise.resolve() };
  // Loaded only here: the Redis client is a large module a process with the memory store never needs.
  const [{ connectLimitsRedis }, { RedisLimiter }] = await Promise.all([import("./redis-client.ts"), import("./redis-store.ts")]);
  const failureMode = config.limitsRedisFailure as FailureMode;
  const redis = await connectLimitsRedis({
    mode: config.limitsRedisMode as RedisMode,
    urls: config.limitsRedisUrl,
    sentinelMaster: config.limitsRedisSentinelMaster,
    passwordFile: config.limitsRedisPasswordFile,
    caFile: config.limitsRedisCaFile,
    connectTimeoutMs: config.limitsRedisConnectTimeout,
  });
  const transitions = new Counter({
    name: "keyward_limits_store_transitions_total",
    help: "Changes of the limits store's circuit breaker, by the state entered (open, half_open, closed).",
    labelNames: ["to"] as const,
    registers: [registry],
  });
  const calls = new Counter({
    name: "keyward_limits_store_calls_total",
    help: "Calls to the limits store (Redis; one call holds the checks of one event-loop turn) by result: ok, error, timeout.",
    labelNames: ["result"] as const,
    registers: [registry],
  });
  const callSeconds = new TallyHistogram({
    name: "keyward_limits_store_call_duration_seconds",
    help: "Time from sending a call to the limits store (Redis) to its reply, in seconds, by result: ok, error, timeout (observed at the deadline).",
    labelNames: ["result"] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registry,
  });
  const callSeries = { ok: callSeconds.series({ result: "ok" }), error: callSeconds.series({ result: "error" }), timeout: callSeconds.series({ result: "timeout" }) };
  const fallbacks = new Counter({
    name: "keyward_limits_store_fallbacks_total",
    help: "Checks with limits answered by --limits-redis-failure instead of Redis, by cause (error, timeout, open, busy) and mode (local, allow, deny).",
    labelNames: ["cause", "mode"] as const,
    registers: [registry],
  });
  const cached = new Counter({
    name: "keyward_limits_store_cached_denials_total",
    help: "Checks refused from the memory of a refusal by Redis, without a call (--limits-redis-deny-cache).",
    registers: [registry],
  });
  const limiter: RedisLimiter = new RedisLimiter({
    run: redis.run,
    keyPrefix: config.limitsRedisKeyPrefix,
    timeoutMs: config.limitsRedisTimeout,
    failureMode,
    breakerFailures: config.limitsRedisBreakerFailures,
    breakerCooldownMs: config.limitsRedisBreakerCooldown,
    maxInFlight: config.limitsRedisMaxInFlight,
    batchBy: redis.batchBy,
    denyCache: config.limitsRedisDenyCache,
    now,
    onTransition: (to, from) => {
      transitions.inc({ to });
      // One line per outage: a failed probe (half_open -> open) is counted, not logged again.
      if (to === "open" && from === "closed") log.warn("limits store unavailable; checks are limited by the failure setting until it answers again", { store: redis.where, failure: failureMode });
      else if (to === "closed") log.info("limits store answers again; limits are shared", { store: redis.where });
    },
    onFallback: (cause, mode) => {
      fallbacks.inc({ cause, mode });
    },
    onCall: (result, seconds) => {
      calls.inc({ result });
      callSeries[result].observe(seconds);
    },
    onCachedDenial: () => {
      cached.inc();
    },
  });
  new Gauge({
    name: "keyward_limits_store_breaker_state",
    help: "The limits store's circuit breaker: 0 closed (limits shared on Redis), 1 half-open (probing), 2 open (limits by --limits-redis-failure).",
    aggregator: "max",
    registers: [registry],
    collect() {
      this.set(BREAKER_VALUE[limiter.state]);
    },
  });
  new Gauge({
    name: "keyward_limits_store_in_flight",
    help: "Checks waiting for the limits store: queued for this event-loop turn's call, or in a call not yet answered.",
    registers: [registry],
    collect() {
      this.set(limiter.pending);
    },
  });
  log.info("limits shared on Redis", { store: redis.where, failure: failureMode, timeoutMs: config.limitsRedisTimeout });
  return { limiter, close: () => redis.close() };
}
