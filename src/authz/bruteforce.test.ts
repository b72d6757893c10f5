import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../config/config.ts";
import { KeyIndex } from "../index/keys.ts";
import { Limiter } from "../limits/limiter.ts";
import { registerUnknownKeyMetrics, UnknownKeyGuard, type UnknownKeyGuardOptions } from "./bruteforce.ts";
import type { CheckInput } from "../check/decision.ts";
import { Checker } from "./check.ts";
import { apiKey, newKey, policy } from "../api/fixtures.test-support.ts";
import { checkInput } from "./fixtures.test-support.ts";
import { parseHostAssignments } from "../policy/hosts.ts";
import { PolicyIndex } from "../policy/policy.ts";
import { denialBody, denialHeaders } from "./response.ts";

const T0 = Date.UTC(2026, 5, 1, 12);
const OPTS = { keyIdHeader: "x-keyward-key-id", ownerHeader: "x-keyward-owner", realm: "keyward" };

function setup(over: Partial<UnknownKeyGuardOptions> = {}) {
  let now = T0;
  const clock = (): number => now;
  const keys = new KeyIndex();
  // The fixture policy protects `*`, which only a namespace an administrator names may claim.
  const policies = new PolicyIndex(parseHostAssignments(["*=shop"]));
  policies.apply("add", policy("shop", "orders", { credentials: { headers: ["x-api-key"] } }));
  const valid = newKey("shop_valid000");
  keys.apply("add", apiKey("shop", "v", {}, [valid.version]));
  const xffTrustedHops = over.xffTrustedHops ?? 0;
  const guard = new UnknownKeyGuard({
    threshold: 3,
    windowMs: 60_000,
    cooldownMs: 300_000,
    ipv4Prefix: 24,
    ipv6Prefix: 64,
    maxNetworks: 1000,
    blockAll: false,
    xffTrustedHops,
    now: clock,
    ...over,
  });
  const checker = new Checker({ keys, policies, limiter: new Limiter(), now: clock, xffTrustedHops, unknownKeys: guard });
  /** A check with a fresh random (unknown) key, or `key`, from `peer`. */
  const from = (peer: string | undefined, key = newKey("x").key, over2: Partial<CheckInput> = {}) =>
    checker.check(checkInput({ "x-api-key": key }, { peerAddress: peer, ...over2 }));
  const reasons = (peer: string, n: number): string[] => Array.from({ length: n }, () => from(peer).reason);
  return { guard, checker, from, reasons, valid: valid.key, advance: (ms: number) => (now += ms) };
}


/** How many times `fn` walks a Map (keys, values, entries, forEach or for...of), any Map. */
function mapWalks(fn: () => void): number {
  const proto = Map.prototype as unknown as Record<string | symbol, (...args: unknown[]) => unknown>;
  const names: (string | symbol)[] = ["keys", "values", "entries", "forEach", Symbol.iterator];
  const saved = names.map((n) => proto[n]);
  let walks = 0;
  names.forEach((n, i) => {
    const original = saved[i]!;
    proto[n] = function (this: unknown, ...args: unknown[]) {
      walks++;
      return original.apply(this, args);
    };
  });
  try {
    fn();
  } finally {
    names.forEach((n, i) => {
      proto[n] = saved[i]!;
    });
  }
  return walks;
}
describe("unknown keys per source network", () => {
  it("answers 429 with Retry-After past the threshold, for the whole /24", () => {
    const { from, reasons } = setup();
    expect(reasons("203.0.113.9", 3)).toEqual(["unknown_key", "unknown_key", "unknown_key"]);
    const d = from("203.0.113.9");
    expect(d).toMatchObject({ reason: "unknown_key_throttled", status: 429 });
    expect(denialHeaders(d, OPTS)).toContainEqual(["retry-after", "300"]);
    expect(denialBody(d.status)).toContain("too_many_requests");
    // Another address in the same /24 is the same network; the next /24 is not.
    expect(from("203.0.113.200").reason).toBe("unknown_key_throttled");
    expect(from("203.0.114.9").reason).toBe("unknown_key");
  });

  it("keeps valid keys working, from the blocked network and from any other", () => {
    const { from, reasons, valid } = setup();
    reasons("203.0.113.9", 4);
    expect(from("203.0.113.9").reason).toBe("unknown_key_throttled");
    expect(from("203.0.113.9", valid).reason).toBe("ok");
    expect(from("198.51.100.1", valid).reason).toBe("ok");
  });

  it("lifts the block when the cool-down ends, and counts afresh", () => {
    const { from, reasons, advance } = setup();
    reasons("203.0.113.9", 4);
    advance(299_001);
    const d = from("203.0.113.9");
    expect(d.reason).toBe("unknown_key_throttled");
    expect(denialHeaders(d, OPTS)).toContainEqual(["retry-after", "1"]);
    advance(999);
    expect(reasons("203.0.113.9", 4)).toEqual(["unknown_key", "unknown_key", "unknown_key", "unknown_key_throttled"]);
  });

  it("counts within the window only: the threshold per window never blocks", () => {
    const { reasons, advance } = setup();
    for (let w = 0; w < 5; w++) {
      expect(reasons("203.0.113.9", 3)).toEqual(["unknown_key", "unknown_key", "unknown_key"]);
      advance(60_000);
    }
  });

  it("groups IPv6 clients by /64 and IPv4-mapped addresses with IPv4", () => {
    const { from, reasons } = setup();
    reasons("2001:db8:1:2::1", 2);
    expect(from("[2001:db8:1:2:ffff:ffff:ffff:ffff]").reason).toBe("unknown_key");
    expect(from("2001:db8:1:2:abcd::9").reason).toBe("unknown_key_throttled");
    expect(from("2001:db8:1:3::1").reason).toBe("unknown_key");
    reasons("::ffff:192.0.2.1", 3);
    expect(from("192.0.2.77").reason).toBe("unknown_key_throttled");
  });

  it("masks prefixes that do not end on a byte", () => {
    const { guard } = setup({ ipv4Prefix: 20, ipv6Prefix: 60 });
    expect(guard.network("10.1.16.1")).toBe(guard.network("10.1.31.255"));
    expect(guard.network("10.1.16.1")).not.toBe(guard.network("10.1.32.1"));
    expect(guard.network("2001:db8::1")).toBe(guard.network("2001:db8:0:f:ffff::1"));
    expect(guard.network("2001:db8::1")).not.toBe(guard.network("2001:db8:0:10::1"));
    const all = setup({ ipv4Prefix: 0, ipv6Prefix: 0 }).guard;
    expect(all.network("1.2.3.4")).toBe(all.network("255.0.0.1"));
    expect(all.network("::1")).toBe(all.network("2001:db8::1"));
  });

  it("reads every way of writing an IPv6 address as the same network, at any prefix length", () => {
    let seed = 7;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    // Every spelling read otherwise than its reference, gathered and compared once (an expect per spelling costs more than the reading).
    const misread: string[] = [];
    for (const prefix of [0, 1, 17, 48, 56, 64, 100, 127, 128]) {
      const { guard } = setup({ ipv6Prefix: prefix });
      for (let n = 0; n < 200; n++) {
        const groups = Array.from({ length: 8 }, () => (rand() < 0.4 ? 0 : Math.floor(rand() * 0x10000)));
        const hex = groups.map((g) => g.toString(16));
        const full = groups.map((g) => g.toString(16).padStart(4, "0")).join(":");
        // Brackets take parseIp's path (src/index/cidr.ts): the reference.
        const expected = guard.network(`[${full}]`);
        const forms = [full, full.toUpperCase(), hex.join(":")];
        for (let a = 0; a < 8; a++) {
          for (let b = a + 1; b <= 8; b++) if (groups.slice(a, b).every((g) => g === 0)) forms.push(`${hex.slice(0, a).join(":")}::${hex.slice(b).join(":")}`);
        }
        const isMapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
        const reference = isMapped ? guard.network(`${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`) : expected;
        for (const f of forms) if (guard.network(f) !== reference) misread.push(`${f} /${String(prefix)}`);
      }
      expect(guard.network("::ffff:c000:0201")).toBe(guard.network("192.0.2.1"));
      expect(guard.network("::")).toBe(guard.network("[0:0:0:0:0:0:0:0]"));
      for (const bad of ["1::2::3", "1:2:3:4:5:6:7:8:9", "12345::", ":1::", "1:", "g::1", ":::", "1:2:3:4:5:6:7::8", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", ""]) {
        expect(guard.network(bad), bad).toBe(guard.network(undefined));
      }
    }
    expect(misread).toEqual([]);
  });

  it("counts by the client address X-Forwarded-For names: spoofed entries to its left change nothing", () => {
    const { from } = setup({ xffTrustedHops: 1 });
    const got = Array.from({ length: 4 }, (_, i) => from("10.0.0.1", undefined, { forwardedFor: `192.0.2.${i}, 203.0.113.9` }).reason);
    expect(got.at(-1)).toBe("unknown_key_throttled");
    // Clients with no usable address share one network: they cannot slip past the count.
    const bad = ["", "not-an-ip", "999.1.1.1", undefined].map((xff) => from("10.0.0.1", undefined, { forwardedFor: xff }).reason);
    expect(bad).toEqual(["unknown_key", "unknown_key", "unknown_key", "unknown_key_throttled"]);
  });

  it("counts over-long credentials as unknown keys", () => {
    const { from } = setup();
    const long = "k".repeat(2000);
    expect([1, 2, 3, 4].map(() => from("203.0.113.9", long).reason).at(-1)).toBe("unknown_key_throttled");
  });

  it("stays within its bounds against an attacker cycling through networks, and keeps blocks meanwhile", () => {
    const { guard, from, reasons } = setup({ maxNetworks: 100 });
    reasons("203.0.113.9", 4);
    // One unknown key from each of 2,000 IPv6 /64s and 2,000 IPv4 /24s: forty times the table.
    for (let i = 0; i < 2000; i++) {
      from(`2001:db8:${(i >> 8).toString(16)}:${(i & 0xff).toString(16)}::1`);
      from(`10.${i >> 8}.${i & 0xff}.1`);
    }
    expect(guard.sizes.counting).toBeLessThanOrEqual(100);
    expect(guard.evictions).toBeGreaterThanOrEqual(3900);
    // The counted networks churn; the blocked one is still blocked.
    expect(from("203.0.113.9").reason).toBe("unknown_key_throttled");
    // Blocking many networks keeps at most maxNetworks blocks, dropping the oldest.
    for (let i = 0; i < 500; i++) reasons(`100.${64 + (i >> 8)}.${i & 0xff}.1`, 4);
    expect(guard.sizes.blocked).toBeLessThanOrEqual(100);
    expect(guard.blocks).toBe(501);
  });

  it("spends little per attempt on an attacker that fills its tables with new networks", () => {
    // 49,152 new /24 networks: three times a table of 16,384, so its generations turn over again and again.
    const { guard } = setup({ maxNetworks: 16_384 });
    const inputs = Array.from({ length: 49_152 }, (_, i) => checkInput({}, { peerAddress: `${String(11 + (i >> 16))}.${String((i >> 8) & 0xff)}.${String(i & 0xff)}.9` }));
    const rule = undefined as unknown as Parameters<UnknownKeyGuard["unknownKey"]>[1];
    const started = performance.now();
    const walks = mapWalks(() => {
      for (const input of inputs) guard.unknownKey(input, rule);
    });
    const ms = performance.now() - started;
    // No attempt walks a table: an eviction drops a whole generation. Evicting by scanning a Map
    // from its oldest entry took over 10 s for 200,000 attempts.
    expect(walks).toBe(0);
    expect(guard.evictions).toBeGreaterThan(30_000);
    expect(guard.sizes.counting).toBeLessThanOrEqual(16_384);
    // About 0.1 s on a quiet core.
    expect(ms).toBeLessThan(2000);
  });

  it("does nothing when turned off", () => {
    const { guard, reasons } = setup({ threshold: 0 });
    expect(new Set(reasons("203.0.113.9", 1000))).toEqual(new Set(["unknown_key"]));
    expect(guard.sizes).toEqual({ counting: 0, blocked: 0 });
  });

  it("with blockAll, refuses valid keys from a blocked network too, and only from it", () => {
    const { from, reasons, valid, advance } = setup({ blockAll: true });
    expect(from("203.0.113.9", valid).reason).toBe("ok");
    reasons("203.0.113.9", 4);
    const d = from("203.0.113.9", valid);
    expect(d).toMatchObject({ reason: "unknown_key_throttled", status: 429, entry: undefined });
    expect(from("198.51.100.1", valid).reason).toBe("ok");
    advance(300_000);
    expect(from("203.0.113.9", valid).reason).toBe("ok");
  });

  it("reads no client address for a valid key while no network is blocked", () => {
    const { checker, valid } = setup({ blockAll: true });
    let reads = 0;
    const input = checkInput({ "x-api-key": valid });
    const counted: CheckInput = {
      ...input,
      get peerAddress() {
        reads++;
        return "203.0.113.9";
      },
    };
    for (let i = 0; i < 10; i++) expect(checker.check(counted).reason).toBe("ok");
    expect(reads).toBe(0);
  });

  it("exports blocks, evictions and table sizes", async () => {
    const { guard, reasons } = setup({ maxNetworks: 2 });
    const registry = new Registry();
    registerUnknownKeyMetrics(registry, guard);
    reasons("203.0.113.9", 4);
    reasons("198.51.100.1", 1);
    reasons("192.0.2.1", 1);
    reasons("192.0.3.1", 1);
    const text = await registry.metrics();
    expect(text).toContain("keyward_authz_unknown_key_blocks_total 1");
    expect(text).toContain("keyward_authz_unknown_key_evictions_total 1");
    expect(text).toContain('keyward_authz_unknown_key_networks{state="counting"} 2');
    expect(text).toContain('keyward_authz_unknown_key_networks{state="blocked"} 1');
  });
});

describe("brute-force settings", () => {
  it("are on by default and reject prefixes longer than an address", () => {
    const { config } = loadConfig([], {});
    expect(config).toMatchObject({ unknownKeyThreshold: 100, unknownKeyWindow: 60_000, unknownKeyCooldown: 300_000, unknownKeyIpv4Prefix: 24, unknownKeyIpv6Prefix: 64 });
    expect(loadConfig(["--unknown-key-threshold=0"], {}).config.unknownKeyThreshold).toBe(0);
    expect(() => loadConfig(["--unknown-key-ipv4-prefix=33"], {})).toThrow(/ipv4-prefix/);
    expect(() => loadConfig(["--unknown-key-ipv6-prefix=129"], {})).toThrow(/ipv6-prefix/);
    expect(loadConfig(["--unknown-key-ipv6-prefix=128"], {}).config.unknownKeyIpv6Prefix).toBe(128);
  });
});
