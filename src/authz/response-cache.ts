// Values rendered once per kind of decision and reused: the encoded CheckResponse
// of the gRPC front (most answers are a pure function of the decision's reason, key
// entry, rule and the credentials to strip) and the constant part of a decision's
// log line.
//
// Values are kept per KeyEntry in a WeakMap. A watch event replaces the entries of
// the ApiKey it concerns (the index never mutates one), so a changed key gets new
// values and the old ones go with the old entry: nothing stale is served. Within
// an entry a short list of variants tells rules, reasons and stripped credentials
// apart. Decisions without an entry (unknown key, no policy, ...) share one small
// map by variant.
//
// Memory is bounded: at most `entries` entries hold values in each of two
// generations (when the current one fills up it becomes the previous one and the
// one before is dropped; a hit in the previous generation moves the entry back),
// at most `variants` values per entry and `keyless` values without an entry.
import type { KeyEntry } from "../index/keys.ts";
import type { Decision } from "../check/decision.ts";
import type { CompiledRule } from "../policy/policy.ts";
import { cappedKinds } from "./response.ts";

export interface DecisionCacheLimits {
  /** Entries per generation (two generations are kept). */
  entries?: number;
  /** Values per entry. */
  variants?: number;
  /** Values for decisions without a key entry. */
  keyless?: number;
}

interface Slot<T> {
  readonly variant: string;
  readonly value: T;
  readonly next: Slot<T> | undefined;
  readonly depth: number;
}

export class DecisionCache<T> {
  private cur = new WeakMap<KeyEntry, Slot<T>>();
  private prev = new WeakMap<KeyEntry, Slot<T>>();
  private count = 0;
  private readonly keylessValues = new Map<string, T>();
  private readonly entries: number;
  private readonly variants: number;
  private readonly keyless: number;
  private readonly make: (d: Decision) => T;

  /** `make` renders the value for a decision; it must depend only on what `variant` and the entry stand for. */
  constructor(make: (d: Decision) => T, limits: DecisionCacheLimits = {}) {
    this.make = make;
    this.entries = limits.entries ?? 32_768;
    this.variants = limits.variants ?? 8;
    this.keyless = limits.keyless ?? 256;
  }

  /** The value for `d`, whose rendering is told apart from other decisions with the same entry by `variant`. */
  get(d: Decision, variant: string): T {
    const entry = d.entry;
    if (!entry) {
      let v = this.keylessValues.get(variant);
      if (v === undefined) {
        v = this.make(d);
        if (this.keylessValues.size >= this.keyless) this.keylessValues.clear();
        this.keylessValues.set(variant, v);
      }
      return v;
    }
    let head = this.cur.get(entry);
    if (head === undefined) {
      head = this.prev.get(entry);
      if (head !== undefined) this.keep(entry, head);
    }
    for (let s = head; s !== undefined; s = s.next) if (s.variant === variant) return s.value;
    const value = this.make(d);
    const depth = head?.depth ?? 0;
    if (depth < this.variants) this.keep(entry, { variant, value, next: head, depth: depth + 1 });
    return value;
  }

  private keep(entry: KeyEntry, head: Slot<T>): void {
    const fresh = !this.cur.has(entry);
    this.cur.set(entry, head);
    if (fresh && ++this.count >= this.entries) {
      this.prev = this.cur;
      this.cur = new WeakMap();
      this.count = 0;
    }
  }
}

/**
 * What a decision's metadata reads besides its entry: reason, rule, the path problem
 * and the limit kinds the policy's maximums capped (they change with the policy's
 * spec, which the policy ref does not). The parts cannot contain NUL (reasons and
 * path problems are fixed; policy refs and rule names are Kubernetes names and DNS labels).
 */
export function decisionVariant(d: Decision): string {
  if (d.pathProblem !== undefined) return `${d.reason}\u0000${d.pathProblem}`;
  const r = d.rule;
  if (r === undefined) return d.reason;
  const capped = cappedKinds(d);
  const base = `${d.reason}\u0000${r.policy.ref}\u0000${r.name}`;
  return capped.length === 0 ? base : `${base}\u0000capped:${capped.join(",")}`;
}

/**
 * decisionVariant plus the credentials an OK answer strips. Header and query
 * parameter names cannot contain NUL or SOH (the ApiKeyPolicy schema's patterns).
 */
export function responseVariant(d: Decision): string {
  const h = d.removeHeaders;
  const q = d.removeQueryParams;
  // The common answer (a rule, no path problem, no capped limit, the key in at most one
  // header) comes from the rule's memo: no string is built per check.
  const rule = d.rule;
  if (rule !== undefined && d.pathProblem === undefined && q.length === 0 && h.length <= 1 && cappedKinds(d).length === 0) {
    return ruleVariant(rule, d, h[0] ?? "");
  }
  return composeResponseVariant(decisionVariant(d), h, q);
}

function composeResponseVariant(base: string, h: readonly string[], q: readonly string[]): string {
  if (h.length === 0 && q.length === 0) return base;
  return `${base}\u0001${h.join("\u0000")}\u0001${q.join("\u0000")}`;
}

/**
 * responseVariant's strings by rule, reason and stripped header ("" for none). A policy
 * event recompiles its rules, so a changed rule gets a new memo; within a rule the
 * reasons are a fixed set and the header names are those the policy's credentials name.
 */
const byRule = new WeakMap<CompiledRule, Map<string, Map<string, string>>>();

function ruleVariant(rule: CompiledRule, d: Decision, header: string): string {
  let byReason = byRule.get(rule);
  if (byReason === undefined) byRule.set(rule, (byReason = new Map<string, Map<string, string>>()));
  let byHeader = byReason.get(d.reason);
  if (byHeader === undefined) byReason.set(d.reason, (byHeader = new Map<string, string>()));
  let v = byHeader.get(header);
  if (v === undefined) byHeader.set(header, (v = composeResponseVariant(decisionVariant(d), header === "" ? [] : [header], [])));
  return v;
}
