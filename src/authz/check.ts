// The check: one request's attributes in, one Decision out. It reads the key
// index and the policy table and spends limits; it never writes the index.
// Order: request shape -> policy rule -> credentials -> key -> validity ->
// tenant -> source -> scopes -> limits.
import { clientAddress, deny, upperMethod, type CheckInput, type Decision } from "../check/decision.ts";
import { keyDigest, type KeyIndex } from "../index/keys.ts";
import { cidrContains, parseIp } from "../index/cidr.ts";
import type { LimitTaker, LimitVerdict } from "../limits/limiter.ts";
import type { UnknownKeyGuard } from "./bruteforce.ts";
import { findKey } from "./credentials.ts";
import { effectiveLimits } from "./maximums.ts";
import { pathProblem } from "../check/paths.ts";
import type { CompiledRule, PolicyIndex } from "../policy/policy.ts";

export interface CheckerOptions<L extends LimitTaker = LimitTaker> {
  keys: KeyIndex;
  policies: PolicyIndex;
  /** The limits store: answers at once (memory, or a key without limits) or with a Promise (redis). */
  limiter: L;
  now: () => number;
  /** Proxies in front of the one that calls keyward whose X-Forwarded-For entries are trusted. */
  xffTrustedHops: number;
  /** Longer credentials are not hashed; they are unknown keys. */
  maxKeyLength?: number;
  /** Counts unknown keys per source network and throttles the networks that present too many. */
  unknownKeys?: UnknownKeyGuard;
}

/** Lowercase host without port or trailing dot. */
export function normalizeHost(authority: string): string {
  let h = authority;
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    h = end === -1 ? h : h.slice(0, end + 1);
  } else {
    const colon = h.lastIndexOf(":");
    if (colon !== -1 && h.indexOf(":") === colon) h = h.slice(0, colon);
  }
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h.toLowerCase();
}

/** What check() returns: a Decision at once with a synchronous limits store (memory), else possibly a Promise. */
export type CheckResult<L extends LimitTaker> = ReturnType<L["take"]> extends LimitVerdict ? Decision : Decision | Promise<Decision>;

export class Checker<L extends LimitTaker = LimitTaker> {
  private readonly options: Required<Omit<CheckerOptions<L>, "unknownKeys">>;
  private readonly unknownKeys: UnknownKeyGuard | undefined;

  constructor(opts: CheckerOptions<L>) {
    this.options = { maxKeyLength: 1024, ...opts };
    this.unknownKeys = opts.unknownKeys;
  }

  /** A Decision, or a Promise of one when the limits store is asked over the network (redis). */
  check(req: CheckInput): CheckResult<L> {
    return this.decide(req) as CheckResult<L>;
  }

  private decide(req: CheckInput): Decision | Promise<Decision> {
    const { method, host, path } = req;
    if (!method || !host || !path || path.charCodeAt(0) !== 47 /* / */) return deny("bad_request");
    let end = path.length;
    const q = path.indexOf("?");
    if (q !== -1) end = q;
    const hash = path.indexOf("#");
    if (hash !== -1 && hash < end) end = hash;
    const pathOnly = end === path.length ? path : path.slice(0, end);
    const query = q === -1 ? undefined : path.slice(q + 1, hash > q ? hash : undefined);
    const problem = pathProblem(path);
    if (problem !== undefined) return { ...deny("path_not_normalized"), pathProblem: problem };

    const rule = this.options.policies.table.match(normalizeHost(host), pathOnly, upperMethod(method));
    if (!rule) return deny("no_policy");
    const policy = rule.policy;

    const found = findKey(policy.credentials, req.header, query);
    if (found.kind === "none") return deny("missing_key", undefined, rule);
    if (found.kind === "conflict") return deny("conflicting_keys", undefined, rule);
    if (found.key.length > this.options.maxKeyLength) return this.unknownKey(req, rule);
    const blocked = this.unknownKeys?.refuseBlocked(req, rule);
    if (blocked) return blocked;

    const entry = this.options.keys.lookup(keyDigest(found.key));
    if (!entry) return this.unknownKey(req, rule);
    const rec = entry.record;
    const now = this.options.now();
    if (rec.disabled) return deny("key_disabled", entry, rule);
    if (now >= rec.expiresAtMs) return deny("key_expired", entry, rule);
    if (now >= entry.validUntilMs) return deny("key_grace_ended", entry, rule);

    if ((policy.namespaces && !policy.namespaces.has(rec.namespace)) || !policy.selector(rec.labels)) {
      return deny("wrong_tenant", entry, rule);
    }
    if (rec.sources) {
      const addr = clientAddress(req.peerAddress, req.forwardedFor, this.options.xffTrustedHops);
      const ip = addr === undefined ? undefined : parseIp(addr);
      if (!ip) return deny("source_unknown", entry, rule);
      if (!cidrContains(rec.sources, ip)) return deny("source_not_allowed", entry, rule);
    }
    for (const s of rule.scopes) if (!rec.scopes.has(s)) return deny("scope_missing", entry, rule);

    const { limits, subject, ceiling } = effectiveLimits(entry, policy);
    const verdict = this.options.limiter.take(subject, limits, now, ceiling);
    const decide = (v: LimitVerdict): Decision => {
      if (!v.ok) return deny(v.reason ?? "rate_limited", entry, rule, v);
      return {
        reason: "ok",
        status: 200,
        entry,
        rule,
        limit: v,
        removeHeaders: found.headers,
        removeQueryParams: found.queryParams,
      };
    };
    return verdict instanceof Promise ? verdict.then(decide) : decide(verdict);
  }

  /** 401, or 429 once the source network presented too many unknown keys (bruteforce.ts). */
  private unknownKey(req: CheckInput, rule: CompiledRule): Decision {
    return this.unknownKeys ? this.unknownKeys.unknownKey(req, rule) : deny("unknown_key", undefined, rule);
  }
}
