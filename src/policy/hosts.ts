// Which namespace owns each host that ApiKeyPolicies name. Pure: the data plane
// builds its route table from it and the operator writes ApiKeyPolicy status from
// it, so both reach the same answer from the same policies and settings.
//
// A host pattern is an exact name (`shop.example.com`), one wildcard label
// (`*.example.com`) or `*`. Who owns a pattern (ADR 0025):
//  - a pattern named in the `host-owners` setting belongs to exactly the
//    namespaces listed there (several share it); claims from others lose;
//  - `*` belongs only to namespaces named for it in `host-owners`: without such
//    an entry nobody may claim it;
//  - otherwise the oldest claim owns it (metadata.creationTimestamp, then
//    namespace/name), as Gateway API resolves conflicting routes. A wildcard
//    covers the exact names under it: `*.example.com` claimed first also owns
//    `shop.example.com` against a later exact claim from another namespace,
//    while an exact name claimed first stays with its claimant;
//  - an assigned `*.domain` covers the names under it that are not assigned
//    themselves.
// A request is decided only by rules of the namespaces that own its host.
import { KeywardError } from "../errors.ts";

/** One policy's claim on its hosts. */
export interface HostClaim {
  readonly namespace: string;
  readonly name: string;
  /** Lowercase host patterns. */
  readonly hosts: readonly string[];
  /** metadata.creationTimestamp in ms; Infinity when unknown (never the oldest). */
  readonly createdMs: number;
}

/** Host patterns an administrator assigned to namespaces (the `host-owners` setting). */
export type HostAssignments = ReadonlyMap<string, ReadonlySet<string>>;

/** A host of a policy that another namespace owns. `owners` is empty when nobody may claim it. */
export interface HostConflict {
  readonly host: string;
  readonly owners: readonly string[];
}

const HOST_PATTERN = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const NOBODY: ReadonlySet<string> = new Set();

/**
 * Parses `host-owners` entries, each `<host pattern>=<namespace>`; a pattern may
 * appear several times to share it. Throws ConfigInvalid on anything else.
 */
export function parseHostAssignments(entries: readonly string[]): HostAssignments {
  const out = new Map<string, Set<string>>();
  for (const raw of entries) {
    const eq = raw.indexOf("=");
    const host = (eq === -1 ? raw : raw.slice(0, eq)).trim().toLowerCase();
    const ns = eq === -1 ? "" : raw.slice(eq + 1).trim();
    if ((host !== "*" && !HOST_PATTERN.test(host)) || host.length > 253 || !NAMESPACE.test(ns) || ns.length > 63) {
      throw new KeywardError("ConfigInvalid", `host-owners: "${raw}" is not <host>=<namespace> (host: a DNS name, *.domain or *)`);
    }
    let set = out.get(host);
    if (!set) out.set(host, (set = new Set()));
    set.add(ns);
  }
  return out;
}

/** The `*.domain` pattern that covers an exact host, or undefined for a single label. */
export function parentWildcard(host: string): string | undefined {
  const dot = host.indexOf(".");
  return dot > 0 ? `*${host.slice(dot)}` : undefined;
}

function older(a: HostClaim, b: HostClaim): boolean {
  if (a.createdMs !== b.createdMs) return a.createdMs < b.createdMs;
  const ka = `${a.namespace}/${a.name}`;
  const kb = `${b.namespace}/${b.name}`;
  return ka < kb;
}

/** Ownership of every host pattern, for one set of claims and assignments. */
export class HostOwnership {
  private readonly oldest = new Map<string, HostClaim>();
  private readonly assigned: HostAssignments;
  private readonly memo = new Map<string, ReadonlySet<string>>();

  constructor(claims: readonly HostClaim[], assigned: HostAssignments = new Map()) {
    this.assigned = assigned;
    for (const c of claims) {
      for (const h of c.hosts) {
        const prev = this.oldest.get(h);
        if (!prev || older(c, prev)) this.oldest.set(h, c);
      }
    }
  }

  /** Patterns some policy names or an administrator assigned. */
  patterns(): string[] {
    return [...new Set([...this.oldest.keys(), ...this.assigned.keys()])];
  }

  /** The namespaces that own `pattern` (empty: nobody, as for `*` without an assignment). */
  owners(pattern: string): ReadonlySet<string> {
    let o = this.memo.get(pattern);
    if (!o) {
      o = this.compute(pattern);
      this.memo.set(pattern, o);
    }
    return o;
  }

  /** The hosts of `claim` that its namespace does not own. */
  conflicts(claim: HostClaim): HostConflict[] {
    const out: HostConflict[] = [];
    for (const h of claim.hosts) {
      const o = this.owners(h);
      if (!o.has(claim.namespace)) out.push({ host: h, owners: [...o].sort() });
    }
    return out;
  }

  private compute(pattern: string): ReadonlySet<string> {
    const a = this.assigned.get(pattern);
    if (a) return a;
    if (pattern === "*") return NOBODY;
    if (pattern.startsWith("*.")) {
      const c = this.oldest.get(pattern);
      return c ? new Set([c.namespace]) : NOBODY;
    }
    const w = parentWildcard(pattern);
    const wa = w === undefined ? undefined : this.assigned.get(w);
    if (wa) return wa;
    const exact = this.oldest.get(pattern);
    const wild = w === undefined ? undefined : this.oldest.get(w);
    const first = exact && wild ? (older(wild, exact) ? wild : exact) : (exact ?? wild);
    return first ? new Set([first.namespace]) : NOBODY;
  }
}

/** One line for a status message or Event: which hosts another namespace owns. */
export function describeConflicts(conflicts: readonly HostConflict[]): string {
  return conflicts
    .map((c) =>
      c.owners.length === 0
        ? `${c.host} (no namespace may claim it unless an administrator names it in host-owners)`
        : `${c.host} (owned by namespace ${c.owners.join(", ")})`,
    )
    .join("; ");
}
