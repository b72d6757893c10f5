// The one server-side script a check with limits runs on Redis, and the keys it
// touches. Every key of one check carries the same hash tag (a digest of the
// ApiKey's uid), so a Redis Cluster keeps them in one slot and runs the script
// on one node. Key names are digests and numbers only: an odd or oversized
// subject never makes a long Redis key.
//
// KEYS: the limits in the order they are checked (rates before quotas, a key's
// own before its policy's maximums). ARGV[1]: now (ms since the epoch); then, per
// key, three values: "r", tokens per ms, burst (a token bucket, a hash {t, ts});
// or "q", requests, period end in ms (a counter that expires at the period's end).
// The script first checks every limit and returns {0, i, state} for the first
// that refuses, spending nothing; else it spends one request of each and returns
// {1, 0, state1, state2, ...}. A state is the bucket's tokens, or the count.
import { createHash } from "node:crypto";
import type { Ceiling } from "./limiter.ts";
import { periodEnd } from "./limiter.ts";
import type { LimitSpec, QuotaSpec, RateSpec } from "./spec.ts";

export const LIMITS_SCRIPT = `
local now = tonumber(ARGV[1])
local n = #KEYS
local function num(x) return string.format('%.17g', x) end
local state = {}
for i = 1, n do
  local kind = ARGV[i * 3 - 1]
  local a = tonumber(ARGV[i * 3])
  local b = tonumber(ARGV[i * 3 + 1])
  if kind == 'r' then
    local v = redis.call('HMGET', KEYS[i], 't', 'ts')
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
    local c = tonumber(redis.call('GET', KEYS[i])) or 0
    if c >= a then return {0, i, num(c)} end
  end
end
local out = {1, 0}
for i = 1, n do
  local kind = ARGV[i * 3 - 1]
  local a = tonumber(ARGV[i * 3])
  local b = tonumber(ARGV[i * 3 + 1])
  if kind == 'r' then
    local t = state[i][1] - 1
    redis.call('HSET', KEYS[i], 't', num(t), 'ts', num(state[i][2]))
    redis.call('PEXPIRE', KEYS[i], math.ceil((b - t) / a) + 1000)
    out[#out + 1] = num(t)
  else
    local c = redis.call('INCR', KEYS[i])
    if c == 1 then redis.call('PEXPIREAT', KEYS[i], b) end
    out[#out + 1] = num(c)
  end
end
return out
`;

/** One limit of a check as the script sees it. */
export type ScriptLimit = { readonly kind: "r"; readonly key: string; readonly rate: RateSpec } | { readonly kind: "q"; readonly key: string; readonly quota: QuotaSpec; readonly periodEndMs: number };

const DIGEST_CHARS = 22;

/** A short, fixed-length digest of any string (base64url of SHA-256, 132 bits). */
export function digest(s: string): string {
  return createHash("sha256").update(s).digest("base64url").slice(0, DIGEST_CHARS);
}

/** Names the Redis keys of subjects; remembers the digests of recent subjects. */
export class KeyNamer {
  private readonly prefix: string;
  private readonly memo = new Map<string, string>();
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
  limits(subject: string, limits: LimitSpec, nowMs: number, ceiling: Ceiling | undefined): ScriptLimit[] {
    const out: ScriptLimit[] = [];
    const subjects: [string, LimitSpec][] = ceiling ? [[subject, limits], [ceiling.subject, ceiling.limits]] : [[subject, limits]];
    for (const [s, l] of subjects) if (l.rate) out.push({ kind: "r", key: `${this.base(s)}:${l.rate.id}`, rate: l.rate });
    for (const [s, l] of subjects) {
      if (!l.quota) continue;
      const end = periodEnd(nowMs, l.quota.per);
      out.push({ kind: "q", key: `${this.base(s)}:${l.quota.id}:${end}`, quota: l.quota, periodEndMs: end });
    }
    return out;
  }
}

/** The script's KEYS and ARGV for `limits`. */
export function scriptArgs(limits: readonly ScriptLimit[], nowMs: number): (string | number)[] {
  const args: (string | number)[] = [limits.length];
  for (const l of limits) args.push(l.key);
  args.push(nowMs);
  for (const l of limits) {
    if (l.kind === "r") args.push("r", l.rate.perMs, l.rate.burst);
    else args.push("q", l.quota.requests, l.periodEndMs);
  }
  return args;
}
