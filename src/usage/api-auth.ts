// Who may read the usage API, and which namespaces: the caller's Kubernetes
// bearer token is checked with a TokenReview, and each namespace with a
// SubjectAccessReview for `get apikeys.keyward.dev` (ADR 0044). Answers are
// cached for a short TTL in bounded maps keyed by the token's SHA-256: the
// token itself is never kept. A review that fails (apiserver unreachable,
// refused) is never cached and denies the request.
import { createHash } from "node:crypto";
import { KeywardError } from "../errors.ts";
import type { KubeRest } from "../k8s/rest.ts";

/** The user a TokenReview reports. */
export interface ReviewedUser {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/** The two reviews the usage API asks the apiserver for. */
export interface Reviewer {
  /** The token's user, or undefined when the apiserver does not authenticate it (for `audiences`, when given). */
  reviewToken(token: string, audiences: readonly string[]): Promise<ReviewedUser | undefined>;
  /** May `user` get apikeys.keyward.dev in `namespace` ("" for every namespace)? */
  mayGetApiKeys(user: ReviewedUser, namespace: string): Promise<boolean>;
}

interface TokenReviewStatus {
  authenticated?: boolean;
  user?: ReviewedUser;
  audiences?: string[];
  error?: string;
}

/** The reviews on the apiserver (authentication.k8s.io/v1 and authorization.k8s.io/v1). */
export class KubeReviewer implements Reviewer {
  readonly #rest: KubeRest;

  constructor(rest: KubeRest) {
    this.#rest = rest;
  }

  async reviewToken(token: string, audiences: readonly string[]): Promise<ReviewedUser | undefined> {
    const review = await this.#rest.request<{ status?: TokenReviewStatus }>("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
      body: { apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token, ...(audiences.length ? { audiences: [...audiences] } : {}) } },
    });
    const st = review.status ?? {};
    if (st.authenticated !== true || !st.user?.username) return undefined;
    // An apiserver that ignores spec.audiences answers without them: only a listed audience counts.
    if (audiences.length && !(st.audiences ?? []).some((a) => audiences.includes(a))) return undefined;
    return st.user;
  }

  async mayGetApiKeys(user: ReviewedUser, namespace: string): Promise<boolean> {
    const review = await this.#rest.request<{ status?: { allowed?: boolean } }>("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
      body: {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SubjectAccessReview",
        spec: {
          user: user.username,
          ...(user.uid ? { uid: user.uid } : {}),
          ...(user.groups ? { groups: user.groups } : {}),
          ...(user.extra ? { extra: user.extra } : {}),
          resourceAttributes: { group: "keyward.dev", resource: "apikeys", verb: "get", ...(namespace ? { namespace } : {}) },
        },
      },
    });
    return review.status?.allowed === true;
  }
}

/** A map of at most `max` entries that forget after `ttlMs`; the oldest entry goes first when full. */
export class TtlCache<V> {
  readonly #entries = new Map<string, { value: V; until: number }>();
  readonly #max: number;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(max: number, ttlMs: number, now: () => number = Date.now) {
    this.#max = max;
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string): V | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.until <= this.#now()) {
      this.#entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: V): void {
    if (this.#ttlMs <= 0 || this.#max <= 0) return;
    this.#entries.delete(key);
    while (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next().value;
      if (oldest === undefined) break;
      this.#entries.delete(oldest);
    }
    this.#entries.set(key, { value, until: this.#now() + this.#ttlMs });
  }
}

export interface ApiAuthOptions {
  /** Audiences the token must be valid for; empty: the apiserver's own. */
  audiences: readonly string[];
  /** How long a review's answer is reused; 0 asks every time. */
  cacheTtlMs: number;
  /** Entries each cache holds at most. */
  cacheSize?: number;
  /** SubjectAccessReviews one request has in flight at most. */
  reviewConcurrency?: number;
  now?: () => number;
}

/** One caller: the reviewed user, and the cache key their answers are kept under. */
export interface Caller {
  readonly user: ReviewedUser;
  /** The token's SHA-256 (hex); for a user named by the front proxy, that of the whole identity. */
  readonly tokenHash: string;
}

export function reviewFailed(what: string, err: unknown): KeywardError {
  return new KeywardError("KubernetesRequestFailed", `the usage API could not ${what}`, { cause: err });
}

/** TokenReview and SubjectAccessReview with bounded, TTL'd caches keyed by the token's SHA-256. */
export class ApiAuth {
  readonly #reviewer: Reviewer;
  readonly #options: ApiAuthOptions;
  readonly #users: TtlCache<ReviewedUser | null>;
  readonly #access: TtlCache<boolean>;

  constructor(reviewer: Reviewer, options: ApiAuthOptions) {
    this.#reviewer = reviewer;
    this.#options = options;
    const size = options.cacheSize ?? 10_000;
    this.#users = new TtlCache(size, options.cacheTtlMs, options.now);
    this.#access = new TtlCache(size, options.cacheTtlMs, options.now);
  }

  /** The token's caller, or undefined when it is not authenticated. Throws when the review fails. */
  async authenticate(token: string): Promise<Caller | undefined> {
    const tokenHash = createHash("sha256").update(token).digest("hex");
    let user = this.#users.get(tokenHash);
    if (user === undefined) {
      try {
        user = (await this.#reviewer.reviewToken(token, this.#options.audiences)) ?? null;
      } catch (err) {
        throw reviewFailed("review the bearer token", err);
      }
      this.#users.set(tokenHash, user);
    }
    return user ? { user, tokenHash } : undefined;
  }

  /**
   * A user the apiserver's front proxy authenticated and named (src/usage/front-proxy.ts): no
   * TokenReview; their SubjectAccessReviews are cached under a hash of the whole identity, which
   * a token's hash can never equal.
   */
  proxied(user: ReviewedUser): Caller {
    const extra = Object.entries(user.extra ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const identity = JSON.stringify(["front-proxy", user.username, user.uid ?? "", user.groups ?? [], extra]);
    return { user, tokenHash: createHash("sha256").update("\u0000").update(identity).digest("hex") };
  }

  /** May the caller get apikeys in `namespace` ("": in every namespace)? Throws when the review fails. */
  async may(caller: Caller, namespace: string): Promise<boolean> {
    const key = `${caller.tokenHash}\u0000${namespace}`;
    const cached = this.#access.get(key);
    if (cached !== undefined) return cached;
    let allowed: boolean;
    try {
      allowed = await this.#reviewer.mayGetApiKeys(caller.user, namespace);
    } catch (err) {
      throw reviewFailed(`review access to apikeys${namespace ? ` in namespace ${namespace}` : " in every namespace"}`, err);
    }
    this.#access.set(key, allowed);
    return allowed;
  }

  /** The namespaces among `candidates` the caller may get apikeys in, in their order. */
  async allowedAmong(caller: Caller, candidates: readonly string[]): Promise<string[]> {
    const verdicts = new Array<boolean>(candidates.length).fill(false);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < candidates.length) {
        const i = next++;
        verdicts[i] = await this.may(caller, candidates[i] as string);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.#options.reviewConcurrency ?? 4, candidates.length) }, worker));
    return candidates.filter((_, i) => verdicts[i]);
  }
}
