// The key index: sha256(key) -> entry, fed by the ApiKey watch. Writers call
// apply() for each watch event; the check path only calls lookup(), one Map.get.
//
// An ApiKey contributes one entry per hash in status.keys (the active key and
// keys in grace). Validity is not decided here: the entry carries what the check
// needs to decide at request time with its own clock (disabled, expiry, grace end).
// A hash more than one ApiKey claims belongs to the oldest claim (src/api/claims.ts),
// whatever order the events come in; when it lets go, the next oldest has it.
//
// Memory is what this module is shaped by (a million keys fit in a few hundred MB):
// the map is keyed by the raw 32-byte digest, not 64 hex characters; one object per
// hash holds what its ApiKey contributes, with what most keys share (namespace,
// scopes, labels; no limits, no sources, no expiry) pooled or held by one shared
// object; name is derived from `ref` when asked for.
import { hash as cryptoHash } from "node:crypto";
import { claimAge, olderClaim, type Claim } from "../api/claims.ts";
import type { ApiKey } from "../api/types.ts";
import { compileLimits, type LimitSpec } from "../limits/spec.ts";
import { parseCidrs, type CidrSet } from "./cidr.ts";

/** What every hash of one ApiKey shares. */
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

/**
 * What lookup() returns. Replaced, never mutated, on each watch event for its ApiKey, so
 * its identity can key a cache of what is derived from it.
 */
export interface KeyEntry {
  /** Public key id (`<prefix>_<8 chars>`), safe to log. */
  readonly id: string;
  readonly record: KeyRecord;
  /**
   * A key in grace stops at this time (ms); Infinity for the active key, -Infinity for a
   * key in grace without an end (the operator treats it as ended too).
   */
  readonly validUntilMs: number;
}

/** The form lookup() takes: the raw sha256 digest of the key, as a 32-character latin1 string. */
export function keyDigest(key: string): string {
  return cryptoHash("sha256", key, "binary");
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

/** Namespace, scopes and labels: most keys share them with many others. Pooled by content. */
interface Profile {
  /** Its content, the key of its pool slot. */
  readonly content: string;
  readonly namespace: string;
  readonly scopes: Scopes;
  readonly scopesContent: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly labelsContent: string;
}

/** The rarely set fields; every entry without any of them shares DEFAULTS. */
class Rare {
  readonly disabled: boolean;
  readonly expiresAtMs: number;
  readonly limits: LimitSpec;
  readonly sources: CidrSet | undefined;
  readonly validUntilMs: number;

  constructor(disabled: boolean, expiresAtMs: number, limits: LimitSpec, sources: CidrSet | undefined, validUntilMs: number) {
    this.disabled = disabled;
    this.expiresAtMs = expiresAtMs;
    this.limits = limits;
    this.sources = sources;
    this.validUntilMs = validUntilMs;
  }

  static of(disabled: boolean, expiresAtMs: number, limits: LimitSpec, sources: CidrSet | undefined, validUntilMs: number): Rare {
    if (!disabled && expiresAtMs === Infinity && limits === NO_OWN_LIMITS && !sources && validUntilMs === Infinity) return DEFAULTS;
    return new Rare(disabled, expiresAtMs, limits, sources, validUntilMs);
  }
}

const DEFAULTS = new Rare(false, Infinity, NO_OWN_LIMITS, undefined, Infinity);

/** One hash's entry; it is its own record (the record's fields do not depend on the hash). */
class Entry implements KeyEntry, KeyRecord, Claim {
  readonly id: string;
  readonly ref: string;
  readonly uid: string;
  readonly owner: string;
  readonly profile: Profile;
  private readonly rare: Rare;
  /** claimAge() of this ApiKey's claim on the hash: a small integer, so no boxed number per entry. */
  readonly age: number;

  constructor(id: string, ref: string, uid: string, owner: string, profile: Profile, rare: Rare, age: number) {
    this.id = id;
    this.ref = ref;
    this.uid = uid;
    this.owner = owner;
    this.profile = profile;
    this.rare = rare;
    this.age = age;
  }

  get record(): KeyRecord {
    return this;
  }
  get namespace(): string {
    return this.profile.namespace;
  }
  get name(): string {
    return this.ref.slice(this.profile.namespace.length + 1);
  }
  get scopes(): ReadonlySet<string> {
    return this.profile.scopes.set;
  }
  get scopeList(): readonly string[] {
    return this.profile.scopes.list;
  }
  get labels(): Readonly<Record<string, string>> {
    return this.profile.labels;
  }
  get disabled(): boolean {
    return this.rare.disabled;
  }
  get expiresAtMs(): number {
    return this.rare.expiresAtMs;
  }
  get limits(): LimitSpec {
    return this.rare.limits;
  }
  get sources(): CidrSet | undefined {
    return this.rare.sources;
  }
  get validUntilMs(): number {
    return this.rare.validUntilMs;
  }
}

/**
 * Values many entries share, by content. Each value is counted once per ApiKey holding
 * it and forgotten when the last one lets go, so ApiKeys coming and going do not leave
 * values behind. Shared values are frozen (a Set cannot be, but is only ever typed ReadonlySet).
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

  /** Lets go of one share; returns the value when that was the last. */
  drop(content: string): T | undefined {
    const slot = this.slots.get(content);
    if (!slot || --slot.refs !== 0) return undefined;
    this.slots.delete(content);
    return slot.value;
  }
}

export interface KeyIndexOptions {
  onInvalid?: (ref: string, what: string) => void;
}

export class KeyIndex {
  /** By keyDigest(). */
  private readonly byHash = new Map<string, Entry>();
  /**
   * Which ApiKeys (refs) claim a hash, with their entries, so the next oldest takes over
   * when the owner lets go: only for hashes two or more ApiKeys claim. A hash with one
   * claimant has no entry here; its entry in byHash is that claimant's.
   */
  private readonly claims = new Map<string, Map<string, Entry>>();
  /** Hashes each ApiKey contributed last time: a string when it is one (no rotation in progress). */
  private readonly hashesByRef = new Map<string, string | readonly string[]>();
  /** Profiles, and under them the scopes and labels they hold (shared by profiles that differ in the rest). */
  private readonly profiles = new Pool<Profile>();
  private readonly scopePool = new Pool<Scopes>();
  private readonly labelPool = new Pool<Readonly<Record<string, string>>>();
  private readonly onInvalid: ((ref: string, what: string) => void) | undefined;

  constructor(opts: KeyIndexOptions = {}) {
    this.onInvalid = opts.onInvalid;
  }

  /** The entry for a key's digest (keyDigest(key)), or undefined. */
  lookup(digest: string): KeyEntry | undefined {
    return this.byHash.get(digest);
  }

  get size(): number {
    return this.byHash.size;
  }

  get apiKeyCount(): number {
    return this.hashesByRef.size;
  }

  /**
   * Applies one watch event. `cacheRef` is the ApiKey's `namespace/name` as the watch's cache
   * holds it: the index keeps that string rather than one of its own.
   */
  apply(type: "add" | "update" | "delete", key: ApiKey, cacheRef?: string): void {
    // join() makes a flat string; a template literal would make a cons string holding both parts.
    const fresh = cacheRef ?? [key.metadata.namespace, key.metadata.name].join("/");
    const prev = this.hashesByRef.get(fresh);
    const held = prev === undefined ? undefined : this.heldBy(fresh, prev);
    // The string the map already holds, so one ApiKey keeps one copy of its ref.
    const ref = held?.ref ?? fresh;
    const next = type === "delete" ? new Map<string, Entry>() : this.entriesOf(ref, key);
    if (prev !== undefined) {
      for (const hash of typeof prev === "string" ? [prev] : prev) {
        if (!next.has(hash)) this.unclaim(hash, ref);
      }
    }
    for (const [hash, entry] of next) this.claim(hash, ref, entry);
    if (next.size === 0 && type === "delete") this.hashesByRef.delete(ref);
    else {
      // A ref held by no entry (the ApiKey had no hash) is replaced by the entries' string.
      if (prev !== undefined && !held) this.hashesByRef.delete(ref);
      this.hashesByRef.set(ref, next.size === 0 ? NO_HASHES : next.size === 1 ? (next.keys().next().value as string) : [...next.keys()]);
    }
    // After the new entries took their shares, so values both hold are kept, not rebuilt.
    if (held) this.release(held.profile);
  }

  /** One entry an ApiKey holds now (they all hold the same pooled profile), if it has entries. */
  private heldBy(ref: string, hashes: string | readonly string[]): Entry | undefined {
    const hash = typeof hashes === "string" ? hashes : hashes[0];
    if (hash === undefined) return undefined;
    const c = this.claims.get(hash);
    const entry = c ? c.get(ref) : this.byHash.get(hash);
    return entry?.ref === ref ? entry : undefined;
  }

  private takeProfile(namespace: string, scopeList: string[], labels: Record<string, string>): Profile {
    const scopesContent = JSON.stringify(scopeList);
    const labelsContent = JSON.stringify(labels);
    const content = `${namespace}\n${scopesContent}\n${labelsContent}`;
    return this.profiles.take(content, () => ({
      content,
      namespace,
      scopes: this.scopePool.take(scopesContent, () => ({ set: new Set(scopeList), list: Object.freeze(scopeList) })),
      scopesContent,
      labels: this.labelPool.take(labelsContent, () => Object.freeze(labels)),
      labelsContent,
    }));
  }

  private release(profile: Profile): void {
    if (this.profiles.drop(profile.content)) {
      this.scopePool.drop(profile.scopesContent);
      this.labelPool.drop(profile.labelsContent);
    }
  }

  private entriesOf(ref: string, key: ApiKey): Map<string, Entry> {
    const out = new Map<string, Entry>();
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
    const disabled = spec.disabled === true || state === "Disabled";
    const uid = key.metadata.uid ?? ref;
    // Taken with the first entry: an ApiKey takes a share of a profile only when entries
    // (which release it on the next event) hold it.
    let profile: Profile | undefined;
    for (const v of versions) {
      const m = HASH_RE.exec(v.hash);
      if (!m?.[1]) {
        this.onInvalid?.(ref, `status.keys[${v.id}].hash is not sha256:<64 hex>`);
        continue;
      }
      let validUntilMs = Infinity;
      if (v.state === "grace") {
        // A grace without an end (or with an unreadable one) has ended.
        validUntilMs = v.expiresAt ? Date.parse(v.expiresAt) : -Infinity;
        if (Number.isNaN(validUntilMs)) validUntilMs = -Infinity;
      } else if ((v.state as string) !== "active") continue; // a state this version does not know: not accepted
      profile ??= this.takeProfile(key.metadata.namespace, [...(spec.scopes ?? [])], { ...(key.metadata.labels ?? {}) });
      const rare = Rare.of(disabled, expiresAtMs, limits, sources, validUntilMs);
      const age = claimAge(v, key.metadata.creationTimestamp);
      out.set(Buffer.from(m[1], "hex").toString("latin1"), new Entry(v.id, ref, uid, spec.owner, profile, rare, age));
    }
    return out;
  }

  private claim(hash: string, ref: string, entry: Entry): void {
    let c = this.claims.get(hash);
    if (!c) {
      const sole = this.byHash.get(hash);
      if (!sole || sole.ref === ref) {
        this.byHash.set(hash, entry);
        return;
      }
      // Contested: from now on every claimant's entry is kept, and the oldest is published.
      c = new Map([[sole.ref, sole]]);
      this.claims.set(hash, c);
    }
    c.set(ref, entry);
    this.publish(hash, c);
  }

  private unclaim(hash: string, ref: string): void {
    const c = this.claims.get(hash);
    if (!c) {
      if (this.byHash.get(hash)?.ref === ref) this.byHash.delete(hash);
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

  /** Publishes the oldest claim's own entry. */
  private publish(hash: string, c: Map<string, Entry>): void {
    let owner: Entry | undefined;
    for (const e of c.values()) if (!owner || olderClaim(e, owner)) owner = e;
    if (owner) this.byHash.set(hash, owner);
  }
}
