// Prototype of a smaller key index, for the proposal in docs/benchmarks.md: a
// copy of src/index/keys.ts with five changes, measured by
// `node --expose-gc bench/index-scale.ts --variant compact`:
//  1. `claims` holds a Map only for hashes claimed by two or more ApiKeys (the
//     single claimant is the published entry itself);
//  2. scope Sets and lists are interned by content (most keys share a few scope sets);
//  3. labels objects are interned by content;
//  4. a key without limits shares one frozen empty LimitSpec;
//  5. hashesByRef holds a string when an ApiKey has one hash (not in rotation),
//     and the index is keyed by the 32-byte digest as a latin1 string instead of
//     64 hex characters (lookup() then takes digest("latin1")).
// Behaviour is otherwise the same as src/index/keys.ts.
import type { ApiKey } from "../../src/api/types.ts";
import { compileLimits, type LimitSpec } from "../../src/limits/spec.ts";
import { parseCidrs, type CidrSet } from "../../src/index/cidr.ts";

/** What every hash of one ApiKey shares. Replaced (never mutated) on each event. */
export interface KeyRecord {
  /** `namespace/name`. */
  readonly ref: string;
  readonly namespace: string;
  readonly name: string;
  readonly uid: string;
  readonly owner: string;
  readonly scopes: ReadonlySet<string>;
  readonly scopeList: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /** spec.disabled, or status.state Disabled. */
  readonly disabled: boolean;
  /** spec.expiresAt in ms (Infinity when unset); status.state Expired sets it to -Infinity. */
  readonly expiresAtMs: number;
  /** Explicit limits; a kind left undefined falls back to the policy's defaults. */
  readonly limits: LimitSpec;
  /** allowedSources; undefined means any source. An unparseable list denies every source. */
  readonly sources: CidrSet | undefined;
}

export interface KeyEntry {
  /** Public key id (`<prefix>_<8 chars>`), safe to log. */
  readonly id: string;
  readonly record: KeyRecord;
  /** A key in grace stops at this time (ms); Infinity for the active key. */
  readonly validUntilMs: number;
  /** Two ApiKeys claim the same hash: never accepted. */
  readonly ambiguous: boolean;
}

const HASH_RE = /^sha256:([0-9a-fA-F]{64})$/;
const scopeCache = new Map<string, { set: ReadonlySet<string>; list: readonly string[] }>();
const labelCache = new Map<string, Readonly<Record<string, string>>>();
const EMPTY_LIMITS: LimitSpec = Object.freeze({ rate: undefined, quota: undefined });
function internScopes(list: string[]): { set: ReadonlySet<string>; list: readonly string[] } {
  const k = list.join("\u0000");
  let v = scopeCache.get(k);
  if (!v) { v = { set: new Set(list), list: Object.freeze([...list]) }; scopeCache.set(k, v); }
  return v;
}
function internLabels(l: Record<string, string> | undefined): Readonly<Record<string, string>> {
  const k = JSON.stringify(l ?? {});
  let v = labelCache.get(k);
  if (!v) { v = Object.freeze({ ...(l ?? {}) }); labelCache.set(k, v); }
  return v;
}

export interface KeyIndexOptions {
  onInvalid?: (ref: string, what: string) => void;
}

export class KeyIndex {
  private readonly byHash = new Map<string, KeyEntry>();
  /** Which ApiKeys (refs) claim each hash, for ambiguity and clean removal. */
  private readonly claims = new Map<string, Map<string, KeyEntry>>();
  /** Hashes each ApiKey contributed last time. */
  private readonly hashesByRef = new Map<string, string | string[]>();
  private readonly onInvalid: ((ref: string, what: string) => void) | undefined;

  constructor(opts: KeyIndexOptions = {}) {
    this.onInvalid = opts.onInvalid;
  }

  /** The entry for a lowercase hex sha256, or undefined. */
  lookup(hashHex: string): KeyEntry | undefined {
    return this.byHash.get(hashHex);
  }

  get size(): number {
    return this.byHash.size;
  }

  get apiKeyCount(): number {
    return this.hashesByRef.size;
  }

  /** Applies one watch event. */
  apply(type: "add" | "update" | "delete", key: ApiKey): void {
    const ref = `${key.metadata.namespace}/${key.metadata.name}`;
    const next = type === "delete" ? new Map<string, KeyEntry>() : this.entriesOf(ref, key);
    const prev = this.hashesByRef.get(ref) ?? [];
    for (const hash of typeof prev === "string" ? [prev] : prev) {
      if (!next.has(hash)) this.unclaim(hash, ref);
    }
    for (const [hash, entry] of next) this.claim(hash, ref, entry);
    if (next.size === 0 && type === "delete") this.hashesByRef.delete(ref);
    else this.hashesByRef.set(ref, next.size === 1 ? (next.keys().next().value as string) : [...next.keys()]);
  }

  private entriesOf(ref: string, key: ApiKey): Map<string, KeyEntry> {
    const out = new Map<string, KeyEntry>();
    const versions = key.status?.keys ?? [];
    if (versions.length === 0) return out;
    const spec = key.spec;
    const state = key.status?.state;
    let expiresAtMs = spec.expiresAt ? Date.parse(spec.expiresAt) : Infinity;
    if (Number.isNaN(expiresAtMs)) {
      this.onInvalid?.(ref, "spec.expiresAt is not a time");
      expiresAtMs = -Infinity;
    }
    if (state === "Expired") expiresAtMs = -Infinity;
    let sources: CidrSet | undefined;
    if (spec.allowedSources && spec.allowedSources.length > 0) {
      try {
        sources = parseCidrs(spec.allowedSources);
      } catch (err) {
        this.onInvalid?.(ref, `allowedSources: ${(err as Error).message}`);
        sources = { ranges: [] };
      }
    }
    const sc = internScopes(spec.scopes ?? []);
    const record: KeyRecord = {
      ref,
      namespace: key.metadata.namespace,
      name: key.metadata.name,
      uid: key.metadata.uid ?? ref,
      owner: spec.owner,
      scopes: sc.set,
      scopeList: sc.list,
      labels: internLabels(key.metadata.labels),
      disabled: spec.disabled === true || state === "Disabled",
      expiresAtMs,
      limits: spec.limits ? compileLimits(spec.limits, (what) => this.onInvalid?.(ref, `limits: ${what}`)) : EMPTY_LIMITS,
      sources,
    };
    for (const v of versions) {
      const m = HASH_RE.exec(v.hash);
      if (!m?.[1]) {
        this.onInvalid?.(ref, `status.keys[${v.id}].hash is not sha256:<64 hex>`);
        continue;
      }
      let validUntilMs = Infinity;
      if (v.state === "grace") {
        if (v.expiresAt) {
          validUntilMs = Date.parse(v.expiresAt);
          if (Number.isNaN(validUntilMs)) validUntilMs = -Infinity;
        }
      } else if ((v.state as string) !== "active") continue; // a state this version does not know: not accepted
      out.set(Buffer.from(m[1], "hex").toString("latin1"), { id: v.id, record, validUntilMs, ambiguous: false });
    }
    return out;
  }

  private claim(hash: string, ref: string, entry: KeyEntry): void {
    let c = this.claims.get(hash);
    if (!c) {
      const cur = this.byHash.get(hash);
      if (!cur || cur.record.ref === ref) {
        this.byHash.set(hash, entry);
        return;
      }
      c = new Map([[cur.record.ref, cur]]);
      this.claims.set(hash, c);
    }
    c.set(ref, entry);
    this.publish(hash, c);
  }

  private unclaim(hash: string, ref: string): void {
    const c = this.claims.get(hash);
    if (!c) {
      if (this.byHash.get(hash)?.record.ref === ref) this.byHash.delete(hash);
      return;
    }
    c.delete(ref);
    if (c.size === 0) {
      this.claims.delete(hash);
      this.byHash.delete(hash);
    } else {
      this.publish(hash, c);
      if (c.size === 1) this.claims.delete(hash);
    }
  }

  private publish(hash: string, c: Map<string, KeyEntry>): void {
    const first = c.values().next().value;
    if (!first) return;
    this.byHash.set(hash, c.size === 1 ? first : { ...first, ambiguous: true });
  }
}
