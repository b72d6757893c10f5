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

/** The LimitSpec of every key without limits of its own (most keys): one shared, frozen object. */
const NO_OWN_LIMITS: LimitSpec = Object.freeze({ rate: undefined, quota: undefined });
/** hashesByRef's value for an ApiKey that contributes no hash. */
const NO_HASHES: readonly string[] = Object.freeze([]);

interface Scopes {
  readonly set: ReadonlySet<string>;
  readonly list: readonly string[];
}

/**
 * Values many records share, by content: most keys have one of a few scope lists and
 * label maps. Each value is counted once per record holding it and forgotten when the
 * last such record goes, so ApiKeys coming and going do not leave values behind.
 * Shared values are frozen (a Set cannot be, but is only ever typed ReadonlySet).
 */
class Pool<T> {
  private readonly slots = new Map<string, { readonly value: T; refs: number }>();

  take(content: string, make: () => T): T {
    let slot = this.slots.get(content);
    if (!slot) {
      slot = { value: make(), refs: 0 };
      this.slots.set(content, slot);
    }
    slot.refs++;
    return slot.value;
  }

  drop(content: string): void {
    const slot = this.slots.get(content);
    if (slot && --slot.refs === 0) this.slots.delete(content);
  }
}

export interface KeyIndexOptions {
  onInvalid?: (ref: string, what: string) => void;
}

export class KeyIndex {
  private readonly byHash = new Map<string, KeyEntry>();
  /**
   * Which ApiKeys (refs) claim a hash, in the order they claimed it, for ambiguity and
   * clean removal: only for hashes two or more ApiKeys claim. A hash with one claimant
   * has no entry here; its entry in byHash is that claimant's.
   */
  private readonly claims = new Map<string, Map<string, KeyEntry>>();
  /** Hashes each ApiKey contributed last time: a string when it is one (no rotation in progress). */
  private readonly hashesByRef = new Map<string, string | readonly string[]>();
  private readonly scopePool = new Pool<Scopes>();
  private readonly labelPool = new Pool<Readonly<Record<string, string>>>();
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
    const prev = this.hashesByRef.get(ref) ?? NO_HASHES;
    const held = this.recordOf(ref, prev);
    const next = type === "delete" ? new Map<string, KeyEntry>() : this.entriesOf(ref, key);
    for (const hash of typeof prev === "string" ? [prev] : prev) {
      if (!next.has(hash)) this.unclaim(hash, ref);
    }
    for (const [hash, entry] of next) this.claim(hash, ref, entry);
    if (next.size === 0 && type === "delete") this.hashesByRef.delete(ref);
    else this.hashesByRef.set(ref, next.size === 0 ? NO_HASHES : next.size === 1 ? (next.keys().next().value as string) : [...next.keys()]);
    // After the new record took its shares, so values both hold are kept, not rebuilt.
    if (held) this.release(held);
  }

  /** The record an ApiKey's entries hold now (the one whose pooled values it holds), if it has entries. */
  private recordOf(ref: string, hashes: string | readonly string[]): KeyRecord | undefined {
    const hash = typeof hashes === "string" ? hashes : hashes[0];
    if (hash === undefined) return undefined;
    const c = this.claims.get(hash);
    const entry = c ? c.get(ref) : this.byHash.get(hash);
    return entry?.record.ref === ref ? entry.record : undefined;
  }

  private release(record: KeyRecord): void {
    this.scopePool.drop(JSON.stringify(record.scopeList));
    this.labelPool.drop(JSON.stringify(record.labels));
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
    const compiled = compileLimits(spec.limits, (what) => this.onInvalid?.(ref, `limits: ${what}`));
    const limits = compiled.rate || compiled.quota ? compiled : NO_OWN_LIMITS;
    // Built with the first entry: a record takes shares of pooled values only when
    // entries (which release it on the next event) hold it.
    let record: KeyRecord | undefined;
    const makeRecord = (): KeyRecord => {
      const scopeList = [...(spec.scopes ?? [])];
      const scopes = this.scopePool.take(JSON.stringify(scopeList), () => ({ set: new Set(scopeList), list: Object.freeze(scopeList) }));
      const labelsCopy = { ...(key.metadata.labels ?? {}) };
      return {
        ref,
        namespace: key.metadata.namespace,
        name: key.metadata.name,
        uid: key.metadata.uid ?? ref,
        owner: spec.owner,
        scopes: scopes.set,
        scopeList: scopes.list,
        labels: this.labelPool.take(JSON.stringify(labelsCopy), () => Object.freeze(labelsCopy)),
        disabled: spec.disabled === true || state === "Disabled",
        expiresAtMs,
        limits,
        sources,
      };
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
      record ??= makeRecord();
      out.set(m[1].toLowerCase(), { id: v.id, record, validUntilMs, ambiguous: false });
    }
    return out;
  }

  private claim(hash: string, ref: string, entry: KeyEntry): void {
    let c = this.claims.get(hash);
    if (!c) {
      const sole = this.byHash.get(hash);
      if (!sole || sole.record.ref === ref) {
        this.byHash.set(hash, entry);
        return;
      }
      c = new Map([[sole.record.ref, sole]]);
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
      if (c.size === 1) this.claims.delete(hash); // back to one claimant, published as is
    }
  }

  private publish(hash: string, c: Map<string, KeyEntry>): void {
    const first = c.values().next().value;
    if (!first) return;
    this.byHash.set(hash, c.size === 1 ? first : { ...first, ambiguous: true });
  }
}
