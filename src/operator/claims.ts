// The operator's view of which ApiKey holds each key hash, fed by the ApiKey watch:
// every hash an ApiKey publishes in status.keys is its claim, dated by claimAge()
// (src/api/claims.ts, the rule the data plane's index follows too). The reconciler
// asks it before publishing a hash, and an ApiKey refused a hash waits here to be
// reconciled again when the hash is let go.
import { claimOf, olderClaim, type Claim } from "../api/claims.ts";
import type { ApiKey } from "../api/types.ts";

/** What the reconciler needs: the claim older than its own, and where to wait. */
export interface ClaimView {
  /** Another ApiKey's claim on `hash` older than `mine`, if any. */
  olderThan(hash: string, mine: Claim): Claim | undefined;
  /** Records the hashes `ref` was refused on its last reconcile (replacing earlier ones). */
  refused(ref: string, hashes: readonly string[]): void;
}

const normal = (hash: string): string => hash.toLowerCase();

export class HashClaims implements ClaimView {
  /** Hash -> claims on it: one object, or an array for a hash several ApiKeys publish. */
  private readonly byHash = new Map<string, Claim | Claim[]>();
  /** Hashes each ApiKey publishes now. */
  private readonly byRef = new Map<string, string[]>();
  /** Hash -> ApiKeys refused it, and the other way round. */
  private readonly waiters = new Map<string, Set<string>>();
  private readonly waitsFor = new Map<string, readonly string[]>();

  /**
   * Replaces what one ApiKey claims with what its status publishes (nothing once deleted).
   * Returns the other ApiKeys to reconcile now: those waiting for a hash it let go of, and
   * those that publish a hash it now publishes too (the newer claim must give it up).
   */
  update(ref: string, apiKey: ApiKey | undefined): string[] {
    const next = new Map<string, Claim>();
    if (apiKey) {
      for (const v of apiKey.status?.keys ?? []) {
        if (typeof v.hash !== "string") continue;
        const claim = { ...claimOf(apiKey, v), ref };
        const h = normal(v.hash);
        const had = next.get(h);
        if (!had || olderClaim(claim, had)) next.set(h, claim);
      }
    }
    const wake: string[] = [];
    const prev = this.byRef.get(ref) ?? [];
    for (const h of prev) {
      if (next.has(h)) continue;
      this.remove(h, ref);
      const w = this.waiters.get(h);
      if (w) wake.push(...w);
    }
    for (const [h, claim] of next) {
      const c = this.put(h, claim);
      if (Array.isArray(c) && !prev.includes(h)) wake.push(...c.map((x) => x.ref));
    }
    if (next.size > 0) this.byRef.set(ref, [...next.keys()]);
    else this.byRef.delete(ref);
    if (!apiKey) this.refused(ref, []);
    return [...new Set(wake)].filter((w) => w !== ref);
  }

  olderThan(hash: string, mine: Claim): Claim | undefined {
    const c = this.byHash.get(normal(hash));
    if (!c) return undefined;
    let oldest: Claim | undefined;
    for (const other of Array.isArray(c) ? c : [c]) {
      if (other.ref !== mine.ref && olderClaim(other, mine) && (!oldest || olderClaim(other, oldest))) oldest = other;
    }
    return oldest;
  }

  refused(ref: string, hashes: readonly string[]): void {
    for (const h of this.waitsFor.get(ref) ?? []) {
      const w = this.waiters.get(h);
      w?.delete(ref);
      if (w?.size === 0) this.waiters.delete(h);
    }
    const mine = hashes.map(normal);
    if (mine.length === 0) {
      this.waitsFor.delete(ref);
      return;
    }
    this.waitsFor.set(ref, mine);
    for (const h of mine) {
      let w = this.waiters.get(h);
      if (!w) this.waiters.set(h, (w = new Set()));
      w.add(ref);
    }
  }

  /** ApiKeys waiting for some hash (for tests and metrics). */
  get waiting(): number {
    return this.waitsFor.size;
  }

  /** Adds or replaces one claim; returns the hash's claims. */
  private put(hash: string, claim: Claim): Claim | Claim[] {
    const c = this.byHash.get(hash);
    let out: Claim | Claim[];
    if (!c || (!Array.isArray(c) && c.ref === claim.ref)) out = claim;
    else if (!Array.isArray(c)) out = [c, claim];
    else {
      const i = c.findIndex((x) => x.ref === claim.ref);
      if (i === -1) c.push(claim);
      else c[i] = claim;
      out = c;
    }
    this.byHash.set(hash, out);
    return out;
  }

  private remove(hash: string, ref: string): void {
    const c = this.byHash.get(hash);
    if (!c) return;
    if (!Array.isArray(c)) {
      if (c.ref === ref) this.byHash.delete(hash);
      return;
    }
    const rest = c.filter((x) => x.ref !== ref);
    this.byHash.set(hash, rest.length === 1 ? (rest[0] as Claim) : rest);
    if (rest.length === 0) this.byHash.delete(hash);
  }
}
