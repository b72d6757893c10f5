// A fake of the apiserver's reviews for the usage API's unit tests.
import type { ReviewedUser, Reviewer } from "./api-auth.ts";

/** A reviewer that knows some tokens and who may read which namespaces ("" for every one), and counts its calls. */
export class FakeReviewer implements Reviewer {
  tokenReviews = 0;
  accessReviews: string[] = [];
  /** Every user an access review was asked for, in order. */
  reviewedUsers: ReviewedUser[] = [];
  failing = false;
  readonly tokens: Map<string, ReviewedUser>;
  readonly access: Map<string, readonly string[]>;

  constructor(tokens: Record<string, ReviewedUser>, access: Record<string, readonly string[]>) {
    this.tokens = new Map(Object.entries(tokens));
    this.access = new Map(Object.entries(access));
  }

  reviewToken(token: string): Promise<ReviewedUser | undefined> {
    this.tokenReviews++;
    if (this.failing) return Promise.reject(new Error("apiserver unreachable"));
    return Promise.resolve(this.tokens.get(token));
  }

  mayGetApiKeys(user: ReviewedUser, namespace: string): Promise<boolean> {
    this.accessReviews.push(`${user.username}@${namespace}`);
    this.reviewedUsers.push(user);
    if (this.failing) return Promise.reject(new Error("apiserver unreachable"));
    const may = this.access.get(user.username) ?? [];
    return Promise.resolve(may.includes("") || (namespace !== "" && may.includes(namespace)));
  }
}

/** A reviewer whose token reviews wait until released: requests pile up in flight. */
export class HeldReviewer extends FakeReviewer {
  #release: (() => void)[] = [];

  override reviewToken(token: string): Promise<ReviewedUser | undefined> {
    return new Promise<void>((resolve) => this.#release.push(resolve)).then(() => super.reviewToken(token));
  }

  get waiting(): number {
    return this.#release.length;
  }

  releaseAll(): void {
    for (const r of this.#release.splice(0)) r();
  }
}
