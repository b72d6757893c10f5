// The one server-side script a check with limits runs on Redis, and the keys it
// touches. Every key of one check carries the same hash tag (a digest of the
// ApiKey's uid), so a Redis Cluster keeps them in one slot and runs the script
// on one node. Key names are digests and numbers only: an odd or oversized
// subject never makes a long Redis key.
//
// One call runs the checks of a batch (those one process sent in one event-loop
// turn) in their order, each as if it were alone: a check sees the counters the
// checks before it spent. KEYS: each check's limits in the order they are checked
// (rates before quotas, a key's own before its policy's maximums), check after
// check. ARGV, per check: the number of its limits, now (ms since the epoch),
// then per limit three values: "r", tokens per ms, burst (a token bucket, a hash
// {t, ts}); or "q", requests, period end in ms (a counter that expires at the
// period's end). A check first checks every limit and answers {0, i, state} for
// the first that refuses, spending nothing; else it spends one request of each
// and answers {1, 0, state1, state2, ...}. A state is the bucket's tokens, or the
// count. The reply is the list of the checks' answers.
import { createHash } from "node:crypto";
import type { Ceiling } from "./limiter.ts";
import { periodEnd } from "./limiter.ts";
import type { LimitSpec, QuotaSpec, RateSpec } from "./spec.ts";

export const LIMITS_SCRIPT = `
local function num(x) return string.format('%.17g', x) end
local function check(k, p, n, now)
  local state = {}
  for i = 1, n do
    local j = p + i * 3 - 3
    local kind = ARGV[j]
    local a = tonumber(ARGV[j + 1])
    local b = tonumber(ARGV[j + 2])
    if kind == 'r' then
      local v = redis.call('HMGET', KEYS[k + i], 't', 'ts')
      local t = tonumber(v[1])
      local ts = tonumber(v[2])
      if t == nil or ts == nil then
        t = b
        ts = now
      elseif now > ts then
        t = math.min(b, t + (now - ts) * a)
        ts = now
      end
      if t < 1 then return {0, i, num(t)} end
      state[i] = {t, ts}
    else
      local c = tonumber(redis.call('GET', KEYS[k + i])) or 0
      if c >= a then return {0, i, num(c)} end
    end
  end
  local out = {1, 0}
  for i = 1, n do
    local j = p + i * 3 - 3
    local a = tonumber(ARGV[j + 1])
    local b = tonumber(ARGV[j + 2])
    if ARGV[j] == 'r' then
      local t = state[i][1] - 1
      redis.call('HSET', KEYS[k + i], 't', num(t), 'ts', num(state[i][2]))
      redis.call('PEXPIRE', KEYS[k + i], math.ceil((b - t) / a) + 1000)
      out[#out + 1] = num(t)
    else
      local c = redis.call('INCR', KEYS[k + i])
      if c == 1 then redis.call('PEXPIREAT', KEYS[k + i], b) end
      out[#out + 1] = num(c)
    end
  end
  return out
end
local replies = {}
local k = 0
local p = 1
while p <= #ARGV do
  local n = tonumber(ARGV[p])
  replies[#replies + 1] = check(k, p + 2, n, tonumber(ARGV[p + 1]))
  k = k + n
  p = p + 2 + n * 3
end
return replies
`;

/** One limit of a check as the script sees it. */
export type ScriptLimit = { readonly kind: "r"; readonly key: string; readonly rate: RateSpec } | { readonly kind: "q"; readonly key: string; readonly quota: QuotaSpec; readonly periodEndMs: number };

const DIGEST_CHARS = 22;

/** A short, fixed-length digest of any string (base64url of SHA-256, 132 bits). */
export function digest(s: string): string {
  return createHash("sha256").update(s).digest("base64url").slice(0, DIGEST_CHARS);
}

/**
 * The script's limits for one check, and the key of its refusal memory (redis-store.ts). The
 * same for every check of one subject, limits and period: remembered (see KeyNamer.plan).
 */
export interface CheckPlan {
  readonly list: readonly ScriptLimit[];
  readonly memoKey: string;
}

interface RememberedPlan extends CheckPlan {
  readonly limits: LimitSpec;
  readonly ceiling: Ceiling | undefined;
  /** The plan holds for checks at fromMs <= now < untilMs: within the periods of its quotas. */
  readonly fromMs: number;
  readonly untilMs: number;
}

/** Names the Redis keys of subjects; remembers the digests and the plans of recent subjects. */
export class KeyNamer {
  private readonly prefix: string;
  private readonly memo = new Map<string, string>();
  private readonly plans = new Map<string, RememberedPlan>();
  private readonly maxMemo: number;

  constructor(prefix: string, maxMemo = 200_000) {
    this.prefix = prefix;
    this.maxMemo = maxMemo;
  }

  /** `<prefix>{<digest of the uid>}:<digest of the subject>`; the uid is the subject up to its first "|". */
  base(subject: string): string {
    let b = this.memo.get(subject);
    if (b === undefined) {
      const bar = subject.indexOf("|");
      const tag = digest(bar === -1 ? subject : subject.slice(0, bar));
      b = `${this.prefix}{${tag}}:${digest(subject)}`;
      if (this.memo.size >= this.maxMemo) this.memo.clear();
      this.memo.set(subject, b);
    }
    return b;
  }

  /** The script's limits for one check, in the order the memory store checks them. */
  limits(subject: string, limits: LimitSpec, nowMs: number, ceiling: Ceiling | undefined): readonly ScriptLimit[] {
    return this.plan(subject, limits, nowMs, ceiling).list;
  }

  /**
   * The plan of a check. A subject's plan is reused while its limits and ceiling are the same
   * objects (the check path keeps them per ApiKey and policy, and replaces them when either
   * changes) and the check falls in the same quota periods as the check it was made for.
   */
  plan(subject: string, limits: LimitSpec, nowMs: number, ceiling: Ceiling | undefined): CheckPlan {
    const known = this.plans.get(subject);
    if (known && known.limits === limits && known.ceiling === ceiling && nowMs >= known.fromMs && nowMs < known.untilMs) return known;
    const list: ScriptLimit[] = [];
    const subjects: [string, LimitSpec][] = ceiling ? [[subject, limits], [ceiling.subject, ceiling.limits]] : [[subject, limits]];
    for (const [s, l] of subjects) if (l.rate) list.push({ kind: "r", key: `${this.base(s)}:${l.rate.id}`, rate: l.rate });
    let untilMs = Infinity;
    for (const [s, l] of subjects) {
      if (!l.quota) continue;
      const end = periodEnd(nowMs, l.quota.per);
      untilMs = Math.min(untilMs, end);
      list.push({ kind: "q", key: `${this.base(s)}:${l.quota.id}:${end}`, quota: l.quota, periodEndMs: end });
    }
    const plan: RememberedPlan = { list, memoKey: list.map((l) => l.key).join(" "), limits, ceiling, fromMs: nowMs, untilMs };
    if (this.plans.size >= this.maxMemo) this.plans.clear();
    this.plans.set(subject, plan);
    return plan;
  }
}

/** One check of a batch: its limits, and the time it was made at. */
export interface ScriptCheck {
  readonly list: readonly ScriptLimit[];
  readonly nowMs: number;
}

/** The script's KEYS count, KEYS and ARGV for a batch of checks. */
export function scriptArgs(checks: readonly ScriptCheck[]): (string | number)[] {
  let keys = 0;
  for (const c of checks) keys += c.list.length;
  const args: (string | number)[] = [keys];
  for (const c of checks) for (const l of c.list) args.push(l.key);
  for (const c of checks) {
    args.push(c.list.length, c.nowMs);
    for (const l of c.list) {
      if (l.kind === "r") args.push("r", l.rate.perMs, l.rate.burst);
      else args.push("q", l.quota.requests, l.periodEndMs);
    }
  }
  return args;
}
