// The `redis` limits store: a key's rate and quota counted once for every
// keyward process that shares one Redis (ADR 0012). A check with limits is
// counted by the script of redis-script.ts; a check without limits makes no call
// and is answered at once. On one server (or a Sentinel's master) the checks
// made in one event-loop turn share one call (`batchBy`); the script runs them
// in order, each as if alone, so a batch counts exactly what one call per check
// would. On a Cluster a script's keys must share a hash slot, and the keys of
// different ApiKeys seldom do: each check makes its own call, and the client
// pipelines the calls of one turn per master.
//
// The check path never waits long: each call has a deadline, calls in flight
// are bounded, and a circuit breaker stops calling a Redis that keeps failing.
// A check whose call fails, times out, finds too many in flight or the breaker
// open is answered by the failure setting: `local` counts it on this process's
// own counters (the memory store), `allow` admits it, `deny` refuses it (429,
// Retry-After: 1). The breaker probes again after its cooldown and closes on the
// first success: shared counting resumes by itself.
//
// A refusal is remembered until the refusing limit could next admit (the next
// token, or the period's end): later checks of the same limits are refused here
// without a call. The memory is exact: a bucket only fills and a quota only
// resets with time, and changed limits use other counters.
import type { LimitVerdict } from "./limiter.ts";
import { fewestLeft, Limiter, quotaAdmitted, quotaRefused, rateAdmitted, rateRefused, UNLIMITED, type Ceiling, type LimitTaker } from "./limiter.ts";
import { KeyNamer, scriptArgs, type ScriptLimit } from "./redis-script.ts";
import { Breaker, type BreakerState } from "./breaker.ts";
import type { LimitSpec } from "./spec.ts";

export type FailureMode = "local" | "allow" | "deny";
/** Why a check was not counted on Redis. */
export type FallbackCause = "error" | "timeout" | "open" | "busy";

/** Runs the limits script: KEYS count, KEYS, then ARGV (scriptArgs); answers one reply per check. */
export type RunScript = (args: (string | number)[]) => Promise<unknown>;

/** How checks are sent: all those of one event-loop turn in one call (turn), or each in its own (check). */
export type BatchBy = "turn" | "check";

/** Checks one call holds at most; more in one turn make more calls. */
const MAX_BATCH = 256;

export interface RedisLimiterOptions {
  run: RunScript;
  keyPrefix: string;
  /** Deadline of one call, in ms. */
  timeoutMs: number;
  failureMode: FailureMode;
  breakerFailures: number;
  breakerCooldownMs: number;
  /** Checks waiting for Redis at most; checks beyond are answered by the failure setting. */
  maxInFlight: number;
  /** Default: turn. */
  batchBy?: BatchBy;
  /** Remember refusals until the limit's reset (see above). */
  denyCache: boolean;
  /** Entries the refusal memory holds at most; it is emptied when full. */
  denyCacheMax?: number;
  now: () => number;
  onTransition?: (to: BreakerState, from: BreakerState) => void;
  onFallback?: (cause: FallbackCause, mode: FailureMode) => void;
  /**
   * Called for each call's outcome (one per batch): ok, error or timeout, and the seconds from
   * the call's send to its reply (to its deadline for a timeout).
   */
  onCall?: (result: "ok" | "error" | "timeout", seconds: number) => void;
  /** A check refused from the refusal memory, without a call. */
  onCachedDenial?: () => void;
}

const DENIED: LimitVerdict = { ok: false, reason: "rate_limited", limit: undefined, remaining: 0, resetSeconds: 1, retryAfterSeconds: 1 };

export class RedisLimiter implements LimitTaker {
  private readonly options: RedisLimiterOptions;
  private readonly names: KeyNamer;
  private readonly local = new Limiter();
  private readonly breaker: Breaker;
  private readonly refused = new Map<string, { untilMs: number; verdict: LimitVerdict }>();
  private inFlight = 0;
  private queued: Queued[] = [];
  private flushing = false;
  private queuedSince = 0;

  constructor(options: RedisLimiterOptions) {
    this.options = options;
    this.names = new KeyNamer(options.keyPrefix);
    this.breaker = new Breaker({ failures: options.breakerFailures, cooldownMs: options.breakerCooldownMs, now: options.now, onTransition: (to, from) => options.onTransition?.(to, from) });
  }

  get state(): BreakerState {
    return this.breaker.state;
  }

  /** Checks waiting for Redis: queued for this turn's call, or in a call not yet answered. */
  get pending(): number {
    return this.inFlight;
  }

  take(subject: string, limits: LimitSpec, nowMs: number, ceiling?: Ceiling): LimitVerdict | Promise<LimitVerdict> {
    if (!limits.rate && !limits.quota && !ceiling) return UNLIMITED;
    const { list, memoKey } = this.names.plan(subject, limits, nowMs, ceiling);
    if (list.length === 0) return UNLIMITED;
    if (this.options.denyCache) {
      const hit = this.refused.get(memoKey);
      if (hit && nowMs < hit.untilMs) {
        this.options.onCachedDenial?.();
        return { ...hit.verdict, ...this.retryFrom(hit.untilMs, nowMs) };
      }
      if (hit) this.refused.delete(memoKey);
    }
    if (this.inFlight >= this.options.maxInFlight) return this.fallback("busy", subject, limits, nowMs, ceiling);
    if (!this.breaker.allow()) return this.fallback("open", subject, limits, nowMs, ceiling);
    this.inFlight += 1;
    return new Promise<LimitVerdict>((resolve) => {
      this.enqueue({ list, nowMs, memoKey, subject, limits, ceiling, resolve });
    });
  }

  forget(subjectPrefix: string): void {
    this.local.forget(subjectPrefix);
  }

  private retryFrom(untilMs: number, nowMs: number): { resetSeconds: number; retryAfterSeconds: number } {
    const secs = Math.max(1, Math.ceil((untilMs - nowMs) / 1000));
    return { resetSeconds: secs, retryAfterSeconds: secs };
  }

  private remember(key: string, verdict: LimitVerdict, untilMs: number): void {
    if (this.refused.size >= (this.options.denyCacheMax ?? 100_000)) this.refused.clear();
    this.refused.set(key, { untilMs, verdict });
  }

  private fallback(cause: FallbackCause, subject: string, limits: LimitSpec, nowMs: number, ceiling: Ceiling | undefined): LimitVerdict {
    this.options.onFallback?.(cause, this.options.failureMode);
    if (this.options.failureMode === "allow") return UNLIMITED;
    if (this.options.failureMode === "deny") return DENIED;
    return this.local.take(subject, limits, nowMs, ceiling);
  }

  /** Sends a check at once, or queues it for the call its turn's batch makes at the end of the turn. */
  private enqueue(check: Queued): void {
    if (this.options.batchBy === "check") {
      this.send([check], performance.now());
      return;
    }
    this.queued.push(check);
    if (!this.flushing) {
      this.flushing = true;
      this.queuedSince = performance.now();
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.flushing = false;
    const batch = this.queued;
    this.queued = [];
    for (let i = 0; i < batch.length; i += MAX_BATCH) this.send(batch.length <= MAX_BATCH ? batch : batch.slice(i, i + MAX_BATCH), this.queuedSince);
  };

  /**
   * One script call for a batch, with one deadline that runs from when its first check was
   * queued (`since`, performance.now()): no check waits longer than the deadline for its turn to
   * end and Redis to answer. The in-flight count follows the call itself, not the deadline.
   */
  private send(batch: Queued[], since: number): void {
    const sent = performance.now();
    let p: Promise<unknown>;
    try {
      p = this.options.run(scriptArgs(batch));
    } catch (err) {
      p = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const settled = (): void => {
      this.inFlight -= batch.length;
    };
    p.then(settled, settled);
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      this.failed(batch, "timeout", sent);
    }, Math.max(0, this.options.timeoutMs - (sent - since)));
    p.then(
      (reply) => {
        if (done) return;
        clearTimeout(timer);
        this.answered(batch, reply, sent);
      },
      () => {
        if (done) return;
        clearTimeout(timer);
        this.failed(batch, "error", sent);
      },
    );
  }

  private answered(batch: readonly Queued[], reply: unknown, sent: number): void {
    if (!Array.isArray(reply) || reply.length !== batch.length) {
      this.failed(batch, "error", sent);
      return;
    }
    this.breaker.success();
    this.options.onCall?.("ok", (performance.now() - sent) / 1000);
    for (let i = 0; i < batch.length; i++) {
      const c = batch[i] as Queued;
      let v: { verdict: LimitVerdict; untilMs: number };
      try {
        v = verdictOf(reply[i], c.list, c.nowMs);
      } catch {
        c.resolve(this.fallback("error", c.subject, c.limits, c.nowMs, c.ceiling));
        continue;
      }
      if (!v.verdict.ok && this.options.denyCache) this.remember(c.memoKey, v.verdict, v.untilMs);
      c.resolve(v.verdict);
    }
  }

  private failed(batch: readonly Queued[], cause: "error" | "timeout", sent: number): void {
    this.breaker.failure();
    this.options.onCall?.(cause, (performance.now() - sent) / 1000);
    for (const c of batch) c.resolve(this.fallback(cause, c.subject, c.limits, c.nowMs, c.ceiling));
  }
}

/** A check waiting for its batch's call. */
interface Queued {
  readonly list: readonly ScriptLimit[];
  readonly nowMs: number;
  readonly memoKey: string;
  readonly subject: string;
  readonly limits: LimitSpec;
  readonly ceiling: Ceiling | undefined;
  readonly resolve: (v: LimitVerdict) => void;
}

/** A malformed reply from the script: counted as a failed call. */
export class ScriptReplyError extends Error {
  constructor(what: string) {
    super(`limits script replied ${what}`);
    this.name = "ScriptReplyError";
  }
}

/**
 * The verdict the script's reply means, as the memory store would have given it, and for
 * a refusal the time until which the same limits keep refusing.
 */
export function verdictOf(reply: unknown, list: readonly ScriptLimit[], nowMs: number): { verdict: LimitVerdict; untilMs: number } {
  if (!Array.isArray(reply) || reply.length < 2) throw new ScriptReplyError("no array");
  const [ok, index] = reply as unknown[];
  if (ok === 0) {
    const l = list[Number(index) - 1];
    const state = Number(reply[2]);
    if (!l || !Number.isFinite(state)) throw new ScriptReplyError("an unknown refusal");
    if (l.kind === "r") return { verdict: rateRefused(l.rate, state), untilMs: nowMs + Math.ceil((1 - state) / l.rate.perMs) };
    return { verdict: quotaRefused(l.quota, l.periodEndMs, nowMs), untilMs: l.periodEndMs };
  }
  if (reply.length !== 2 + list.length) throw new ScriptReplyError(`${reply.length - 2} states for ${list.length} limits`);
  let best = UNLIMITED;
  list.forEach((l, i) => {
    const state = Number(reply[i + 2]);
    best = fewestLeft(best, l.kind === "r" ? rateAdmitted(l.rate, state) : quotaAdmitted(l.quota, state, l.periodEndMs, nowMs));
  });
  return { verdict: best, untilMs: 0 };
}
