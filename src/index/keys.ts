// The key index: sha256(key) -> entry, fed by the ApiKey watch. Writers call
// apply() for each watch event; the check path only calls lookup(), one Map.get.
//
// An ApiKey contributes one entry per hash in status.keys (the active key and
// keys in grace). Validity is not decided here: the entry carries what the check
// needs to decide at request time with its own clock (disabled, expiry, grace end).
import type { ApiKey } from "../api/types.ts";
import { compileLimits, type LimitSpec } from "../limits/spec.ts";
import { parseCidrs, type CidrSet } from "./cidr.ts";

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

export interface KeyIndexOptions {
  onInvalid?: (ref: string, what: string) => void;
}

export class KeyIndex {
  private readonly byHash = new Map<string, KeyEntry>();
  /** Which ApiKeys (refs) claim each hash, for ambiguity and clean removal. */
  private readonly claims = new Map<string, Map<string, KeyEntry>>();
  /** Hashes each ApiKey contributed last time. */
  private readonly hashesByRef = new Map<string, string[]>();
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
    for (const hash of this.hashesByRef.get(ref) ?? []) {
      if (!next.has(hash)) this.unclaim(hash, ref);
    }
    for (const [hash, entry] of next) this.claim(hash, ref, entry);
    if (next.size === 0 && type === "delete") this.hashesByRef.delete(ref);
    else this.hashesByRef.set(ref, [...next.keys()]);
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
    const scopeList = [...(spec.scopes ?? [])];
    const record: KeyRecord = {
      ref,
      namespace: key.metadata.namespace,
      name: key.metadata.name,
      uid: key.metadata.uid ?? ref,
      owner: spec.owner,
      scopes: new Set(scopeList),
      scopeList,
      labels: { ...(key.metadata.labels ?? {}) },
      disabled: spec.disabled === true || state === "Disabled",
      expiresAtMs,
      limits: compileLimits(spec.limits, (what) => this.onInvalid?.(ref, `limits: ${what}`)),
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
      out.set(m[1].toLowerCase(), { id: v.id, record, validUntilMs, ambiguous: false });
    }
    return out;
  }

  private claim(hash: string, ref: string, entry: KeyEntry): void {
    let c = this.claims.get(hash);
    if (!c) {
      c = new Map();
      this.claims.set(hash, c);
    }
    c.set(ref, entry);
    this.publish(hash, c);
  }

  private unclaim(hash: string, ref: string): void {
    const c = this.claims.get(hash);
    if (!c) return;
    c.delete(ref);
    if (c.size === 0) {
      this.claims.delete(hash);
      this.byHash.delete(hash);
    } else this.publish(hash, c);
  }

  private publish(hash: string, c: Map<string, KeyEntry>): void {
    const first = c.values().next().value;
    if (!first) return;
    this.byHash.set(hash, c.size === 1 ? first : { ...first, ambiguous: true });
  }
}
