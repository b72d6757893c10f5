// ApiKeyPolicies compiled into a route table, rebuilt whenever a policy changes,
// so that matching a request is map lookups plus a walk over pre-sorted rules.
//
// Which rule applies to a request (the most specific wins):
//  0. owner: only rules of the namespaces that own the request's host count
//     (hosts.ts); a policy whose host another namespace owns decides nothing there;
//  1. host: an exact host beats `*.domain` (one label in place of `*`), which beats `*`;
//     the first tier with a matching rule decides;
//  2. path: an exact path beats a pattern with `*` segments (fewer `*` first, then
//     more segments), which beats a trailing `/**` pattern (longer prefix first);
//  3. method: a rule that lists methods beats one that lists none;
//  4. ties: the policy's namespace/name, then the rule's position in the policy.
// No matching rule means no policy: the request is denied (403, no_policy).
import type { ApiKeyPolicy, PolicyRule } from "../api/types.ts";
import { compileLimits, type LimitSpec } from "../limits/spec.ts";
import { compileSelector, type LabelMatcher } from "./selector.ts";
import { HostOwnership, parentWildcard, type HostAssignments, type HostClaim } from "./hosts.ts";

export interface CompiledCredentials {
  /** Lowercase header names. */
  readonly headers: readonly string[];
  readonly bearer: boolean;
  readonly queryParams: readonly string[];
}

export interface CompiledPolicy {
  readonly ref: string;
  readonly namespace: string;
  readonly name: string;
  readonly credentials: CompiledCredentials;
  /** undefined means every namespace. */
  readonly namespaces: ReadonlySet<string> | undefined;
  readonly selector: LabelMatcher;
  readonly defaults: LimitSpec;
  /** Ceilings on the limits of the keys this policy admits (spec.maximums). */
  readonly maximums: LimitSpec;
}

export interface CompiledRule {
  readonly policy: CompiledPolicy;
  /** The rule's name, or `rule-<index>`. */
  readonly name: string;
  readonly scopes: readonly string[];
  readonly methods: ReadonlySet<string> | undefined;
  /** Literal segments, with "*" for one segment; no "**". */
  readonly segments: readonly string[];
  /** The pattern ends in `/**`. */
  readonly prefix: boolean;
  readonly exactPath: string | undefined;
  /** The path pattern, such as `/v1/orders/*` or `/admin/**`: made once here, read by every check's route and response. */
  readonly pattern: string;
  /** Sort key: smaller is more specific. */
  readonly rank: readonly number[];
  readonly tiebreak: string;
}

export interface RouteMatch {
  readonly rule: CompiledRule;
}

interface RouteTable {
  exact: Map<string, CompiledRule[]>;
  patterns: CompiledRule[];
}

export const DEFAULT_CREDENTIALS: CompiledCredentials = { headers: ["x-api-key"], bearer: true, queryParams: [] };

export interface CompiledPolicyRules {
  readonly policy: CompiledPolicy;
  readonly rules: CompiledRule[];
  readonly claim: HostClaim;
}

export function compilePolicy(p: ApiKeyPolicy): CompiledPolicyRules {
  const ns = p.metadata.namespace;
  const cred = p.spec.credentials;
  const credentials: CompiledCredentials = cred
    ? { headers: (cred.headers ?? []).map((h) => h.toLowerCase()), bearer: cred.bearer === true, queryParams: [...(cred.queryParams ?? [])] }
    : DEFAULT_CREDENTIALS;
  const nsList = p.spec.keys?.namespaces;
  const namespaces = !nsList || nsList.length === 0 ? new Set([ns]) : nsList.includes("*") ? undefined : new Set(nsList);
  const policy: CompiledPolicy = {
    ref: `${ns}/${p.metadata.name}`,
    namespace: ns,
    name: p.metadata.name,
    credentials,
    namespaces,
    selector: compileSelector(p.spec.keys?.selector),
    defaults: compileLimits(p.spec.defaults),
    maximums: compileLimits(p.spec.maximums),
  };
  const rules: CompiledRule[] = [];
  p.spec.rules.forEach((r, i) => {
    for (const path of r.paths) rules.push(compileRule(policy, r, i, path));
  });
  const hosts = [...new Set(p.spec.hosts.map((h) => h.toLowerCase()))];
  return { policy, rules, claim: policyClaim(p, hosts) };
}

/** The policy's claim on its hosts, for ownership (hosts.ts). */
export function policyClaim(p: ApiKeyPolicy, hosts = [...new Set(p.spec.hosts.map((h) => h.toLowerCase()))]): HostClaim {
  const created = p.metadata.creationTimestamp === undefined ? NaN : new Date(p.metadata.creationTimestamp).getTime();
  return { namespace: p.metadata.namespace, name: p.metadata.name, hosts, createdMs: Number.isFinite(created) ? created : Infinity };
}

function compileRule(policy: CompiledPolicy, r: PolicyRule, index: number, path: string): CompiledRule {
  const parts = path.split("/").slice(1);
  const prefix = parts[parts.length - 1] === "**";
  const segments = prefix ? parts.slice(0, -1) : parts;
  const wild = segments.filter((s) => s === "*").length;
  const exactPath = !prefix && wild === 0 ? path : undefined;
  const methods = r.methods && r.methods.length > 0 ? new Set<string>(r.methods) : undefined;
  // kind: 0 exact, 1 glob, 2 prefix. Within glob: fewer wildcards, more segments first.
  // Within prefix: more literal segments first.
  const kind = exactPath !== undefined ? 0 : prefix ? 2 : 1;
  const rank = [kind, kind === 1 ? wild : 0, -segments.length, kind === 2 ? wild : 0, methods ? 0 : 1];
  const tiebreak = `${policy.ref}\u0000${String(index).padStart(6, "0")}`;
  return { policy, name: r.name ?? `rule-${index}`, scopes: [...(r.scopes ?? [])], methods, segments, prefix, exactPath, pattern: patternOf(segments, prefix, exactPath), rank, tiebreak };
}

/** A rule's path pattern from its parts: the exact path, or the segments with `/**` after a prefix. */
function patternOf(segments: readonly string[], prefix: boolean, exactPath: string | undefined): string {
  if (exactPath !== undefined) return exactPath;
  const base = segments.length ? `/${segments.join("/")}` : "";
  return prefix ? `${base}/**` : base || "/";
}

function compareRules(a: CompiledRule, b: CompiledRule): number {
  for (let i = 0; i < a.rank.length; i++) {
    const d = (a.rank[i] ?? 0) - (b.rank[i] ?? 0);
    if (d !== 0) return d;
  }
  return a.tiebreak < b.tiebreak ? -1 : a.tiebreak > b.tiebreak ? 1 : 0;
}

function segmentsMatch(rule: CompiledRule, segs: readonly string[]): boolean {
  const n = rule.segments.length;
  if (rule.prefix ? segs.length < n : segs.length !== n) return false;
  for (let i = 0; i < n; i++) {
    const want = rule.segments[i];
    if (want !== "*" && want !== segs[i]) return false;
    // `*` matches exactly one non-empty segment.
    if (want === "*" && segs[i] === "") return false;
  }
  return true;
}

function methodOk(rule: CompiledRule, method: string): boolean {
  return rule.methods === undefined || rule.methods.has(method);
}

/** The first rule of one host tier that matches; `segs` caches the split path across tiers. */
function matchTable(t: RouteTable, path: string, method: string, segs: { v: string[] | undefined }): CompiledRule | undefined {
  const exact = t.exact.get(path);
  if (exact) for (const r of exact) if (methodOk(r, method)) return r;
  if (t.patterns.length === 0) return undefined;
  segs.v ??= path.split("/").slice(1);
  for (const r of t.patterns) if (methodOk(r, method) && segmentsMatch(r, segs.v)) return r;
  return undefined;
}

function newTable(): RouteTable {
  return { exact: new Map(), patterns: [] };
}

/**
 * The compiled set of all policies, replaced as a whole on every policy event.
 * Each host pattern maps to its chain of tiers (exact, `*.domain`, `*`), each tier
 * holding only the rules of policies whose namespace owns both that tier's pattern
 * and the request's host: another namespace's rule can never decide the request.
 */
export class PolicyTable {
  private readonly exactHosts = new Map<string, readonly RouteTable[]>();
  private readonly wildcardHosts = new Map<string, readonly RouteTable[]>();
  private readonly anyHost: readonly RouteTable[];
  readonly policyCount: number;

  constructor(compiled: readonly CompiledPolicyRules[], assigned: HostAssignments = new Map()) {
    this.policyCount = compiled.length;
    const own = new HostOwnership(
      compiled.map((c) => c.claim),
      assigned,
    );
    const byPattern = new Map<string, CompiledPolicyRules[]>();
    for (const c of compiled) for (const h of c.claim.hosts) getOrAddList(byPattern, h).push(c);
    const tiers = new Map<string, RouteTable | undefined>();
    /** The rules for `pattern` of policies that own it and belong to `allowed`; undefined when none. */
    const tier = (pattern: string, allowed: ReadonlySet<string>): RouteTable | undefined => {
      const key = `${pattern}\u0000${[...allowed].sort().join(",")}`;
      if (tiers.has(key)) return tiers.get(key);
      const owners = own.owners(pattern);
      let t: RouteTable | undefined;
      for (const c of byPattern.get(pattern) ?? []) {
        const ns = c.claim.namespace;
        if (!allowed.has(ns) || !owners.has(ns)) continue;
        t ??= newTable();
        for (const rule of c.rules) {
          if (rule.exactPath !== undefined) getOrAddList(t.exact, rule.exactPath).push(rule);
          else t.patterns.push(rule);
        }
      }
      if (t) {
        t.patterns.sort(compareRules);
        for (const list of t.exact.values()) list.sort(compareRules);
      }
      tiers.set(key, t);
      return t;
    };
    const chain = (patterns: readonly (string | undefined)[], allowed: ReadonlySet<string>): RouteTable[] =>
      patterns.flatMap((p) => {
        const t = p === undefined ? undefined : tier(p, allowed);
        return t ? [t] : [];
      });
    for (const p of own.patterns()) {
      if (p === "*") continue;
      const allowed = own.owners(p);
      if (p.startsWith("*.")) this.wildcardHosts.set(p.slice(2), chain([p, "*"], allowed));
      else this.exactHosts.set(p, chain([p, parentWildcard(p), "*"], allowed));
    }
    this.anyHost = chain(["*"], own.owners("*"));
  }

  /** The most specific rule for a request, or undefined. `host` is lowercase without port; `path` without query. */
  match(host: string, path: string, method: string): CompiledRule | undefined {
    let tiers = this.exactHosts.get(host);
    if (tiers === undefined) {
      const dot = host.indexOf(".");
      if (dot > 0 && this.wildcardHosts.size > 0) tiers = this.wildcardHosts.get(host.slice(dot + 1));
    }
    tiers ??= this.anyHost;
    const segs: { v: string[] | undefined } = { v: undefined };
    for (const t of tiers) {
      const hit = matchTable(t, path, method, segs);
      if (hit) return hit;
    }
    return undefined;
  }
}

function getOrAddList<T>(m: Map<string, T[]>, k: string): T[] {
  let l = m.get(k);
  if (!l) {
    l = [];
    m.set(k, l);
  }
  return l;
}

/** Policies by ref, recompiled into a PolicyTable on each change. */
export class PolicyIndex {
  private readonly compiled = new Map<string, CompiledPolicyRules>();
  private readonly assigned: HostAssignments;
  private current: PolicyTable;

  /** `assigned`: host patterns an administrator gave to namespaces (the host-owners setting). */
  constructor(assigned: HostAssignments = new Map()) {
    this.assigned = assigned;
    this.current = new PolicyTable([], assigned);
  }

  get table(): PolicyTable {
    return this.current;
  }

  apply(type: "add" | "update" | "delete", p: ApiKeyPolicy): void {
    const ref = `${p.metadata.namespace}/${p.metadata.name}`;
    if (type === "delete") this.compiled.delete(ref);
    else this.compiled.set(ref, compilePolicy(p));
    this.current = new PolicyTable([...this.compiled.values()], this.assigned);
  }
}
