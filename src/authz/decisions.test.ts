import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { KeyIndex } from "../index/keys.ts";
import { Limiter } from "../limits/limiter.ts";
import { createLogger, type Level } from "../log.ts";
import { deny, type CheckInput, type Decision } from "../check/decision.ts";
import { Checker } from "./check.ts";
import { decisionRecorder } from "./decisions.ts";
import { createAuthzMetrics } from "./metrics.ts";
import { PolicyIndex } from "../policy/policy.ts";
import { decisionMetadata } from "./response.ts";
import { apiKey, newKey, policy } from "../api/fixtures.test-support.ts";
import { checkInput } from "./fixtures.test-support.ts";

const NOW = Date.UTC(2026, 5, 1, 12);

function logger(level: Level) {
  const lines: string[] = [];
  let t = NOW;
  return { lines, log: createLogger({ level, sink: (l) => lines.push(l), now: () => new Date(t++) }).child({ role: "authz" }) };
}

/** The "check" line as it has always been written: the whole record rendered per line. */
function reference(log: ReturnType<typeof logger>["log"], d: Decision, input: CheckInput | undefined, cancelled: boolean): void {
  const level = d.status === 200 && !cancelled ? "debug" : "info";
  if (!log.enabled(level)) return;
  const clip = (v: string | undefined): string | undefined => (v !== undefined && v.length > 256 ? `${v.slice(0, 256)}...` : v);
  const path = input?.path;
  const q = path?.indexOf("?") ?? -1;
  log[level]("check", {
    front: "grpc",
    status: d.status,
    ...decisionMetadata(d),
    ...(cancelled ? { reason: "cancelled" } : {}),
    method: clip(input?.method),
    host: clip(input?.host),
    path: clip(q === -1 ? path : path?.slice(0, q)),
  });
}

function setup() {
  const keys = new KeyIndex();
  const policies = new PolicyIndex();
  const checker = new Checker({ keys, policies, limiter: new Limiter(), now: () => NOW, xffTrustedHops: 0 });
  policies.apply(
    "add",
    policy("shop", "orders", {
      hosts: ["orders.example.com"],
      credentials: { headers: ["x-api-key"], queryParams: ["api_key"] },
      rules: [{ name: "read", paths: ["/v1/orders/*"], methods: ["GET"], scopes: ["orders:read"] }],
    }),
  );
  return { keys, checker, req: checkInput };
}

describe("decision log lines", () => {
  for (const level of ["info", "debug"] as const) {
    it(`are the lines keyward always wrote, at ${level}`, () => {
      const { keys, checker, req } = setup();
      const ok = newKey("shop_ok000000");
      const none = newKey("shop_none0000");
      keys.apply("add", apiKey("shop", "ok", { scopes: ["orders:read"] }, [ok.version]));
      keys.apply("add", apiKey("shop", "none", { scopes: [] }, [none.version]));
      const cases: [CheckInput | undefined, boolean][] = [
        [req({ "x-api-key": ok.key }), false],
        [req({ "x-api-key": ok.key }, { host: "h".repeat(300) }), false],
        [req({ "x-api-key": none.key }), false],
        [req({ "x-api-key": none.key }, { path: "/v1/orders/2?a=b" }), false],
        [req({}, { path: `/v1/orders/1?api_key=${none.key}` }), false],
        [req({ "x-api-key": newKey("x").key }), false],
        [req({ "x-api-key": newKey("y").key }, { path: "/v1/orders/3" }), false],
        [req({}), false],
        [req({ "x-api-key": ok.key }), true],
        [req({ "x-api-key": none.key }), true],
        [undefined, false],
      ];
      const a = logger(level);
      const b = logger(level);
      const record = decisionRecorder({ front: "grpc", metrics: createAuthzMetrics(new Registry(), { keys: () => 0, apiKeys: () => 0, policies: () => 0 }), log: a.log });
      for (let round = 0; round < 2; round++) {
        for (const [input, cancelled] of cases) {
          const d = input ? checker.check(input) : deny("not_ready");
          record(d, 0.001, input, cancelled);
          reference(b.log, d, input, cancelled);
        }
      }
      expect(a.lines).toEqual(b.lines);
      expect(a.lines.length).toBe(level === "debug" ? 22 : 20);
      const all = a.lines.join("\n");
      for (const k of [ok.key, none.key]) expect(all.includes(k)).toBe(false);
    });
  }

  it("show a changed key as it is now", () => {
    const { keys, checker, req } = setup();
    const k = newKey("shop_chg00000");
    keys.apply("add", apiKey("shop", "chg", { owner: "acme", scopes: ["a"] }, [k.version]));
    const { lines, log } = logger("info");
    const record = decisionRecorder({ front: "http", metrics: createAuthzMetrics(new Registry(), { keys: () => 0, apiKeys: () => 0, policies: () => 0 }), log });
    record(checker.check(req({ "x-api-key": k.key })), 0, undefined, false);
    keys.apply("update", apiKey("shop", "chg", { owner: "globex", scopes: ["b", "c"] }, [k.version]));
    record(checker.check(req({ "x-api-key": k.key })), 0, undefined, false);
    const [before, after] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(before).toMatchObject({ reason: "scope_missing", owner: "acme", scopes: ["a"], front: "http", role: "authz" });
    expect(after).toMatchObject({ reason: "scope_missing", owner: "globex", scopes: ["b", "c"] });
  });
});
