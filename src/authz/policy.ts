// ApiKeyPolicies compiled into a route table, rebuilt whenever a policy changes,
// so that matching a request is map lookups plus a walk over pre-sorted rules.
//
// Which rule applies to a request (the most specific wins):
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

export function compilePolicy(p: ApiKeyPolicy): { policy: CompiledPolicy; rules: CompiledRule[]; hosts: string[] } {
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
  };
  const rules: CompiledRule[] = [];
  p.spec.rules.forEach((r, i) => {
    for (const path of r.paths) rules.push(compileRule(policy, r, i, path));
  });
  return { policy, rules, hosts: [...p.spec.hosts].map((h) => h.toLowerCase()) };
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
  return { policy, name: r.name ?? `rule-${index}`, scopes: [...(r.scopes ?? [])], methods, segments, prefix, exactPath, rank, tiebreak };
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

/** The compiled set of all policies, replaced as a whole on every policy event. */
export class PolicyTable {
  private readonly exactHosts = new Map<string, RouteTable>();
  private readonly wildcardHosts = new Map<string, RouteTable>();
  private readonly anyHost: RouteTable = newTable();
  readonly policyCount: number;

  constructor(compiled: readonly ReturnType<typeof compilePolicy>[]) {
    this.policyCount = compiled.length;
    for (const { rules, hosts } of compiled) {
      for (const host of hosts) {
        let table: RouteTable;
        if (host === "*") table = this.anyHost;
        else if (host.startsWith("*.")) table = getOrAdd(this.wildcardHosts, host.slice(2));
        else table = getOrAdd(this.exactHosts, host);
        for (const rule of rules) {
          if (rule.exactPath !== undefined) getOrAddList(table.exact, rule.exactPath).push(rule);
          else table.patterns.push(rule);
        }
      }
    }
    for (const t of [...this.exactHosts.values(), ...this.wildcardHosts.values(), this.anyHost]) {
      t.patterns.sort(compareRules);
      for (const list of t.exact.values()) list.sort(compareRules);
    }
  }

  /** The most specific rule for a request, or undefined. `host` is lowercase without port; `path` without query. */
  match(host: string, path: string, method: string): CompiledRule | undefined {
    const segs: { v: string[] | undefined } = { v: undefined };
    const exact = this.exactHosts.get(host);
    const hit = exact && matchTable(exact, path, method, segs);
    if (hit) return hit;
    const dot = host.indexOf(".");
    const wild = dot > 0 && this.wildcardHosts.size > 0 ? this.wildcardHosts.get(host.slice(dot + 1)) : undefined;
    return (wild && matchTable(wild, path, method, segs)) || matchTable(this.anyHost, path, method, segs);
  }
}

function getOrAdd(m: Map<string, RouteTable>, k: string): RouteTable {
  let t = m.get(k);
  if (!t) {
    t = newTable();
    m.set(k, t);
  }
  return t;
}

function getOrAddList(m: Map<string, CompiledRule[]>, k: string): CompiledRule[] {
  let l = m.get(k);
  if (!l) {
    l = [];
    m.set(k, l);
  }
  return l;
}

/** Policies by ref, recompiled into a PolicyTable on each change. */
export class PolicyIndex {
  private readonly compiled = new Map<string, ReturnType<typeof compilePolicy>>();
  private current = new PolicyTable([]);

  get table(): PolicyTable {
    return this.current;
  }

  apply(type: "add" | "update" | "delete", p: ApiKeyPolicy): void {
    const ref = `${p.metadata.namespace}/${p.metadata.name}`;
    if (type === "delete") this.compiled.delete(ref);
    else this.compiled.set(ref, compilePolicy(p));
    this.current = new PolicyTable([...this.compiled.values()]);
  }
}
