import { describe, expect, it } from "vitest";
import type { Limits } from "../api/types.ts";
import { KeyIndex } from "../index/keys.ts";
import { Limiter } from "../limits/limiter.ts";
import { compileLimits } from "../limits/spec.ts";
import type { CheckInput } from "../check/decision.ts";
import { Checker } from "./check.ts";
import { quotaLarger, rateLarger } from "./maximums.ts";
import { PolicyIndex } from "../policy/policy.ts";
import { decisionVariant } from "./response-cache.ts";
import { decisionMetadata, okResponseHeaders } from "./response.ts";
import { apiKey, newKey, policy } from "../api/fixtures.test-support.ts";

const NOW = Date.UTC(2026, 5, 10, 12);
const rate = (l: NonNullable<Limits["rate"]>) => compileLimits({ rate: l }).rate!;
const quota = (l: NonNullable<Limits["quota"]>) => compileLimits({ quota: l }).quota!;

describe("which limits are larger than a maximum", () => {
  it("compares rates by refill speed and by burst", () => {
    const max = rate({ requests: 60, per: "1m" }); // 1/s, burst 60
    expect(rateLarger(undefined, max)).toBe(true);
    expect(rateLarger(rate({ requests: 2, per: "1s", burst: 2 }), max)).toBe(true); // faster
    expect(rateLarger(rate({ requests: 1, per: "1s" }), max)).toBe(false); // same speed, burst 1
    expect(rateLarger(rate({ requests: 3600, per: "1h" }), max)).toBe(true); // same speed, burst 3600
    expect(rateLarger(rate({ requests: 30, per: "1m", burst: 61 }), max)).toBe(true); // slower, bigger burst
    expect(rateLarger(rate({ requests: 60, per: "1m" }), max)).toBe(false);
  });

  it("compares quotas within one period of the maximum", () => {
    const month = quota({ requests: 20_000, per: "month" });
    const day = quota({ requests: 1000, per: "day" });
    expect(quotaLarger(undefined, month)).toBe(true);
    expect(quotaLarger(quota({ requests: 20_001, per: "month" }), month)).toBe(true);
    expect(quotaLarger(quota({ requests: 20_000, per: "month" }), month)).toBe(false);
    expect(quotaLarger(quota({ requests: 1000, per: "day" }), month)).toBe(true); // 31 000 in a long month
    expect(quotaLarger(quota({ requests: 645, per: "day" }), month)).toBe(false); // 19 995
    expect(quotaLarger(quota({ requests: 1001, per: "month" }), day)).toBe(true); // all of it on one day
    expect(quotaLarger(quota({ requests: 1000, per: "month" }), day)).toBe(false);
  });
});

describe("policy maximums in the check", () => {
  function setup(maximums: Limits, defaults?: Limits) {
    const keys = new KeyIndex();
    const policies = new PolicyIndex();
    let now = NOW;
    const checker = new Checker({ keys, policies, limiter: new Limiter(), now: () => now, xffTrustedHops: 0 });
    policies.apply("add", policy("shop", "capped", { hosts: ["capped.test"], maximums, ...(defaults ? { defaults } : {}) }));
    policies.apply("add", policy("shop", "open", { hosts: ["open.test"] }));
    const req = (key: string, host = "capped.test"): CheckInput => ({
      method: "GET",
      host,
      path: "/x",
      header: (n) => (n === "x-api-key" ? key : undefined),
      peerAddress: undefined,
      forwardedFor: undefined,
    });
    const add = (name: string, limits?: Limits): string => {
      const k = newKey(`shop_${name.padEnd(8, "0")}`);
      keys.apply("add", apiKey("shop", name, limits ? { limits } : {}, [k.version]));
      return k.key;
    };
    return { checker, req, add, setNow: (t: number) => (now = t) };
  }

  it("holds a key's larger rate to the maximum and says so in the metadata and headers", () => {
    const { checker, req, add } = setup({ rate: { requests: 3, per: "1m" } });
    const key = add("fast", { rate: { requests: 100, per: "1s" } });
    const ok = [1, 2, 3].map(() => checker.check(req(key)));
    expect(ok.map((d) => d.reason)).toEqual(["ok", "ok", "ok"]);
    expect(decisionMetadata(ok[0]!)).toMatchObject({ reason: "ok", policy: "shop/capped", limits_capped: ["rate"] });
    expect(okResponseHeaders(ok[0]!)).toContainEqual(["ratelimit-limit", "3"]);
    const refused = checker.check(req(key));
    expect(refused.reason).toBe("rate_limited");
    expect(decisionMetadata(refused)).toMatchObject({ limits_capped: ["rate"] });
    // Through a policy without maximums the key keeps its own limit; the capped requests counted against it too.
    const open = Array.from({ length: 97 }, () => checker.check(req(key, "open.test")).reason);
    expect(open.every((r) => r === "ok")).toBe(true);
    expect(checker.check(req(key, "open.test")).reason).toBe("rate_limited");
  });

  it("caps keys without limits and policy defaults, and leaves smaller limits alone", () => {
    const { checker, req, add } = setup({ quota: { requests: 2, per: "month" } }, { quota: { requests: 50, per: "day" } });
    const none = add("none");
    expect([1, 2, 3].map(() => checker.check(req(none)).reason)).toEqual(["ok", "ok", "quota_exceeded"]);
    const small = add("small", { quota: { requests: 2, per: "month" } });
    const d = checker.check(req(small));
    expect(d.reason).toBe("ok");
    expect(decisionMetadata(d).limits_capped).toBeUndefined();
    expect(checker.check(req(small)).reason).toBe("ok");
    expect(checker.check(req(small)).reason).toBe("quota_exceeded");
  });

  it("counts a day quota and a month maximum each in its own period", () => {
    const { checker, req, add, setNow } = setup({ quota: { requests: 3, per: "month" } });
    const key = add("daily", { quota: { requests: 2, per: "day" } });
    expect([1, 2, 3].map(() => checker.check(req(key)).reason)).toEqual(["ok", "ok", "quota_exceeded"]);
    setNow(NOW + 86_400_000);
    expect([1, 2].map(() => checker.check(req(key)).reason)).toEqual(["ok", "quota_exceeded"]);
  });

  it("tells capped and uncapped decision log lines apart", () => {
    const { checker, req, add } = setup({ rate: { requests: 5, per: "1m" } });
    const capped = checker.check(req(add("big", { rate: { requests: 10, per: "1m" } })));
    const free = checker.check(req(add("tiny", { rate: { requests: 1, per: "1m" } })));
    expect(decisionVariant(capped)).not.toBe(decisionVariant({ ...capped, entry: free.entry }));
    expect(decisionVariant(capped)).toContain("capped:rate");
  });
});
