// Usage alerts: patterns in one key's own traffic that mean trouble, raised as
// Kubernetes Events on the ApiKey (and counted in a metric). Everything runs on
// an injected clock, so the tests drive days of traffic in milliseconds.
//
// Per key the engine keeps 5-minute buckets for the last 30 minutes, an
// exponentially weighted baseline of requests per bucket (about the last two
// hours), the networks the key was used from, and when each alert last fired.
// A key is "learning" for `learningMs` after this process first sees it: the
// new-source, scope-drift, spike and silence alerts stay quiet meanwhile, so a
// restart does not page anyone.
import type { ApiKey } from "../api/types.ts";
import { parseIp } from "../index/cidr.ts";
import type { CheckEvent, KeyRef, UpstreamEvent } from "../check/event.ts";
import { periodStart } from "./model.ts";

export const ALERT_KINDS = [
  "NewSourceAddress",
  "UsageSpike",
  "ForbiddenSpike",
  "RateLimitedHigh",
  "UpstreamErrorsHigh",
  "KeySilent",
  "KeyExpiringSoon",
  "QuotaNearlyUsed",
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

export interface Alert {
  kind: AlertKind;
  namespace: string;
  name: string;
  uid: string;
  /** Public key id involved, when one version is. */
  keyId?: string;
  message: string;
}

export interface AlertOptions {
  now: () => number;
  emit: (a: Alert) => void;
  /** Quiet time after a key is first seen. */
  learningMs: number;
  /** The same alert on the same key fires at most once per this long. */
  cooldownMs: number;
  /** A key that was active and then sees nothing for this long is reported silent. */
  silenceMs: number;
  /** Keys whose spec.expiresAt falls within this window are reported. */
  expiryWindowMs: number;
  /** A 5-minute bucket above this many times the key's baseline is a spike. */
  spikeFactor: number;
  /** Ratio alerts (429s, 5xx) and spikes need at least this many requests in their window. */
  minRequests: number;
  /** Allowed requests so far in the key's current quota period (stored and pending). */
  quotaUsed?: (key: KeyRef, per: "day" | "month") => number;
  /** The ApiKeys to check for expiry. */
  apiKeys?: () => readonly ApiKey[];
}

export const BUCKET_MS = 5 * 60_000;
const WINDOW_BUCKETS = 6; // 30 minutes
const BASELINE_ALPHA = 2 / (24 + 1); // about two hours of 5-minute buckets
const FORBIDDEN_MIN = 10;
const CLEAN_BUCKETS = 12; // no 403 in the hour before
const LIMITED_RATIO = 0.05;
const UPSTREAM_5XX_RATIO = 0.01;
const QUOTA_RATIO = 0.8;
const MAX_NETWORKS = 256;
const FORGET_AFTER_MS = 48 * 3_600_000;

interface Bucket {
  total: number;
  forbidden: number;
  limited: number;
  upstream: number;
  upstream5xx: number;
}

interface KeyState {
  key: KeyRef;
  firstSeen: number;
  lastSeen: number;
  /** Index (time / BUCKET_MS) of the newest bucket. */
  cur: number;
  buckets: Map<number, Bucket>;
  baseline: number;
  baselineBuckets: number;
  /** Baseline when the last request came, for the silence alert. */
  activeBaseline: number;
  lastForbiddenBucket: number;
  networks: Set<string>;
  /** The last source address seen (most requests repeat it: skip the parse). */
  lastSource: string | undefined;
  silentReported: boolean;
  lastAlert: Map<AlertKind, number>;
}

/** The network an address belongs to for the new-source alert: /24 for IPv4, /64 for IPv6. */
export function sourceNetwork(addr: string): string | undefined {
  const ip = parseIp(addr);
  if (!ip) return undefined;
  if (ip.length === 4) return `${ip[0]}.${ip[1]}.${ip[2]}.0/24`;
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push((((ip[i] ?? 0) << 8) | (ip[i + 1] ?? 0)).toString(16));
  return `${groups.join(":")}::/64`;
}

const emptyBucket = (): Bucket => ({ total: 0, forbidden: 0, limited: 0, upstream: 0, upstream5xx: 0 });
const pct = (x: number): string => `${(Math.round(x * 1000) / 10).toString()}%`;

export class AlertEngine {
  private readonly options: AlertOptions;
  private readonly keys = new Map<string, KeyState>();
  /** Per ApiKey uid: the expiresAt and the quota period start already reported (one entry per key, not per period). */
  private readonly expiryReported = new Map<string, number>();
  private readonly quotaReported = new Map<string, number>();

  constructor(opts: AlertOptions) {
    this.options = opts;
  }

  observeCheck(e: CheckEvent): void {
    if (!e.key || e.outcome === "cancelled") return;
    const st = this.state(e.key, e.at);
    const b = this.bucket(st, e.at);
    b.total++;
    st.lastSeen = Math.max(st.lastSeen, e.at);
    if (st.baselineBuckets >= CLEAN_BUCKETS) st.activeBaseline = st.baseline;
    st.silentReported = false;
    const learned = e.at - st.firstSeen >= this.options.learningMs;

    if (e.source && e.source !== st.lastSource) {
      st.lastSource = e.source;
      const net = sourceNetwork(e.source);
      if (net && !st.networks.has(net)) {
        if (learned && st.networks.size > 0) {
          this.fire(st, "NewSourceAddress", `first request from network ${net} (${e.source}) with key ${e.key.keyId}; ${st.networks.size} network(s) seen before. If this is not a new deployment, the key may have leaked: rotate it.`, e.key.keyId);
        }
        if (st.networks.size >= MAX_NETWORKS) {
          const oldest = st.networks.values().next().value;
          if (oldest !== undefined) st.networks.delete(oldest);
        }
        st.networks.add(net);
      }
    }

    if (e.outcome === "forbidden") {
      b.forbidden++;
      const clean = st.lastForbiddenBucket < st.cur - CLEAN_BUCKETS;
      if (learned && clean && b.forbidden >= FORBIDDEN_MIN) {
        this.fire(st, "ForbiddenSpike", `${b.forbidden} requests with key ${e.key.keyId} were refused (403, last reason ${e.reason}) in 5 minutes; none in the hour before. The client may be calling routes its scopes do not cover.`, e.key.keyId);
      }
    }

    if (e.outcome === "limited") {
      b.limited++;
      const w = this.window(st);
      if (w.total >= this.options.minRequests && w.limited / w.total > LIMITED_RATIO) {
        this.fire(st, "RateLimitedHigh", `${pct(w.limited / w.total)} of ${w.total} requests with key ${e.key.keyId} in the last 30 minutes were refused with 429 (rate limit or quota); the client needs a higher limit or to slow down.`, e.key.keyId);
      }
    }

    if (e.outcome === "allowed" && e.key.quota && this.options.quotaUsed) {
      const q = e.key.quota;
      const period = periodStart(e.at, q.per);
      const used = this.quotaReported.get(e.key.uid) === period ? 0 : this.options.quotaUsed(e.key, q.per);
      if (used >= QUOTA_RATIO * q.requests) {
        this.quotaReported.set(e.key.uid, period);
        this.emit(st.key, "QuotaNearlyUsed", `${used} of ${q.requests} requests of this ${q.per}'s quota are used (${pct(used / q.requests)}).`);
      }
    }
  }

  observeUpstream(e: UpstreamEvent): void {
    const st = this.state(e.key, e.at);
    const b = this.bucket(st, e.at);
    b.upstream++;
    if (e.responseCode >= 500 && e.responseCode < 600) {
      b.upstream5xx++;
      const w = this.window(st);
      if (w.upstream >= this.options.minRequests && w.upstream5xx / w.upstream > UPSTREAM_5XX_RATIO) {
        this.fire(st, "UpstreamErrorsHigh", `${pct(w.upstream5xx / w.upstream)} of ${w.upstream} upstream responses to key ${e.key.keyId} in the last 30 minutes were 5xx.`, e.key.keyId);
      }
    }
  }

  /** Periodic work: closes buckets (spikes), silence, expiry, forgetting idle keys. Call about once a minute. */
  tick(): void {
    const now = this.options.now();
    for (const [ref, st] of this.keys) {
      this.roll(st, Math.floor(now / BUCKET_MS));
      const learned = now - st.firstSeen >= this.options.learningMs;
      if (learned && !st.silentReported && st.activeBaseline >= 1 && now - st.lastSeen >= this.options.silenceMs) {
        st.silentReported = true;
        this.fire(st, "KeySilent", `no requests with this key for ${Math.round((now - st.lastSeen) / 60_000)} minutes, after about ${Math.round(st.activeBaseline)} every 5 minutes; an integration may be broken.`);
      }
      if (now - st.lastSeen > FORGET_AFTER_MS) this.keys.delete(ref);
    }
    const seen = new Set<string>();
    for (const ak of this.options.apiKeys?.() ?? []) {
      const uid = ak.metadata.uid ?? `${ak.metadata.namespace}/${ak.metadata.name}`;
      seen.add(uid);
      const at = ak.spec.expiresAt ? Date.parse(ak.spec.expiresAt) : NaN;
      if (!(at > now && at - now <= this.options.expiryWindowMs)) continue;
      if (this.expiryReported.get(uid) === at) continue;
      this.expiryReported.set(uid, at);
      const days = Math.round(((at - now) / 86_400_000) * 10) / 10;
      this.emit({ namespace: ak.metadata.namespace, name: ak.metadata.name, uid, keyId: ak.status?.currentKeyId ?? "", owner: ak.spec.owner }, "KeyExpiringSoon", `the key expires at ${ak.spec.expiresAt ?? ""} (in ${days} days); extend spec.expiresAt or give the client a new key.`);
    }
    if (this.options.apiKeys) for (const uid of this.expiryReported.keys()) if (!seen.has(uid)) this.expiryReported.delete(uid);
    const tracked = new Set([...this.keys.values()].map((st) => st.key.uid));
    for (const uid of this.quotaReported.keys()) if (!tracked.has(uid)) this.quotaReported.delete(uid);
  }

  /** Keys with state, for tests and metrics. */
  get trackedKeys(): number {
    return this.keys.size;
  }

  private state(key: KeyRef, at: number): KeyState {
    const ref = `${key.namespace}/${key.name}`;
    let st = this.keys.get(ref);
    if (!st || st.key.uid !== key.uid) {
      st = {
        key,
        firstSeen: at,
        lastSeen: at,
        cur: Math.floor(at / BUCKET_MS),
        buckets: new Map(),
        baseline: 0,
        baselineBuckets: 0,
        activeBaseline: 0,
        lastForbiddenBucket: -Infinity,
        networks: new Set(),
        lastSource: undefined,
        silentReported: false,
        lastAlert: new Map(),
      };
      this.keys.set(ref, st);
    }
    st.key = key;
    return st;
  }

  private bucket(st: KeyState, at: number): Bucket {
    const idx = Math.floor(at / BUCKET_MS);
    this.roll(st, idx);
    let b = st.buckets.get(idx);
    if (!b) st.buckets.set(idx, (b = emptyBucket()));
    return b;
  }

  /** Closes every bucket before `idx`: each updates the baseline and may be a spike. */
  private roll(st: KeyState, idx: number): void {
    if (idx <= st.cur) return;
    const steps = Math.min(idx - st.cur, 2 * WINDOW_BUCKETS * 24);
    for (let i = idx - steps; i < idx; i++) {
      const closedBucket = st.buckets.get(i);
      const closed = closedBucket?.total ?? 0;
      if (closedBucket && closedBucket.forbidden > 0) st.lastForbiddenBucket = i;
      const learned = (i + 1) * BUCKET_MS - st.firstSeen >= this.options.learningMs;
      if (learned && st.baselineBuckets >= CLEAN_BUCKETS && closed >= this.options.minRequests && closed > this.options.spikeFactor * Math.max(st.baseline, 1)) {
        this.fire(st, "UsageSpike", `${closed} requests with key ${st.key.keyId} in 5 minutes, ${Math.round(closed / Math.max(st.baseline, 1))} times its usual ${Math.round(st.baseline * 10) / 10}.`, st.key.keyId);
      }
      st.baseline = st.baselineBuckets === 0 ? closed : st.baseline + BASELINE_ALPHA * (closed - st.baseline);
      st.baselineBuckets++;
    }
    st.cur = idx;
    for (const k of st.buckets.keys()) if (k <= idx - WINDOW_BUCKETS) st.buckets.delete(k);
  }

  private window(st: KeyState): Bucket {
    const w = emptyBucket();
    for (const b of st.buckets.values()) {
      w.total += b.total;
      w.forbidden += b.forbidden;
      w.limited += b.limited;
      w.upstream += b.upstream;
      w.upstream5xx += b.upstream5xx;
    }
    return w;
  }

  private fire(st: KeyState, kind: AlertKind, message: string, keyId?: string): void {
    const now = this.options.now();
    const last = st.lastAlert.get(kind);
    if (last !== undefined && now - last < this.options.cooldownMs) return;
    st.lastAlert.set(kind, now);
    this.emit(st.key, kind, message, keyId);
  }

  private emit(key: KeyRef, kind: AlertKind, message: string, keyId?: string): void {
    this.options.emit({ kind, namespace: key.namespace, name: key.name, uid: key.uid, ...(keyId ? { keyId } : {}), message });
  }
}
