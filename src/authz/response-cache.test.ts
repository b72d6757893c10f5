import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyIndex } from "../index/keys.ts";
import { Limiter } from "../limits/limiter.ts";
import { deny, type CheckInput, type Decision } from "../check/decision.ts";
import { Checker } from "./check.ts";
import { checkMethod, checkResponder, toCheckResponse } from "./check-messages.ts";
import { startGrpcFront, type GrpcFront } from "./ext-authz-grpc.ts";
import { PolicyIndex } from "../policy/policy.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckRequestMessage, type CheckResponseMessage } from "./proto.ts";
import { DecisionCache, responseVariant } from "./response-cache.ts";
import type { ResponseOptions } from "./response.ts";
import { apiKey, newKey, policy } from "../api/fixtures.test-support.ts";
import { checkInput } from "./fixtures.test-support.ts";

const NOW = Date.UTC(2026, 5, 1, 12);
const OPTS: ResponseOptions = { keyIdHeader: "x-keyward-key-id", ownerHeader: "x-keyward-owner", realm: "keyward" };

function loadedCheck(): grpc.MethodDefinition<CheckRequestMessage, CheckResponseMessage> {
  let node: unknown = grpc.loadPackageDefinition(loadProtos());
  for (const part of AUTHZ_SERVICE.split(".")) node = (node as Record<string, unknown>)[part];
  return (node as { service: Record<string, grpc.MethodDefinition<CheckRequestMessage, CheckResponseMessage>> }).service.Check!;
}

const method = loadedCheck();
/** proto-loader's encoding, as grpc-js applies it to an answer that is not cached. */
const encode = (m: CheckResponseMessage): Buffer => method.responseSerialize(m);
const fresh = (d: Decision): Buffer => encode(toCheckResponse(d, OPTS));
const bytes = (a: CheckResponseMessage | Buffer): Buffer => (Buffer.isBuffer(a) ? a : encode(a));

/** Two policies: one without limits (answers cacheable), one whose default rate limit every key gets. */
function setup() {
  const keys = new KeyIndex();
  const policies = new PolicyIndex();
  let now = NOW;
  const checker = new Checker({ keys, policies, limiter: new Limiter(), now: () => now, xffTrustedHops: 0 });
  policies.apply(
    "add",
    policy("shop", "orders", {
      hosts: ["orders.example.com"],
      credentials: { headers: ["x-api-key", "x-other-key"], bearer: true, queryParams: ["api_key", "key"] },
      rules: [
        { name: "read", paths: ["/v1/orders/*"], methods: ["GET"], scopes: ["orders:read"] },
        { name: "write", paths: ["/v1/orders"], methods: ["POST"], scopes: ["orders:write"] },
      ],
    }),
  );
  policies.apply(
    "add",
    policy("shop", "limited", {
      hosts: ["limited.example.com"],
      credentials: { headers: ["x-api-key"] },
      defaults: { rate: { requests: 100, per: "1m" } },
      rules: [{ name: "all", paths: ["/**"] }],
    }),
  );
  return { keys, checker, req: checkInput, setNow: (t: number) => (now = t) };
}

describe("encoded-response cache", () => {
  it("answers every decision of a mix with the bytes a fresh encoding gives, from the cache unless the key has limits", () => {
    const { keys, checker, req, setNow } = setup();
    const ok = newKey("shop_ok000000");
    const own = newKey("shop_own00000");
    const dis = newKey("shop_dis00000");
    const exp = newKey("shop_exp00000");
    const active = newKey("shop_new00000");
    const grace = newKey("shop_old00000", "grace", new Date(NOW + 60_000).toISOString());
    keys.apply("add", apiKey("shop", "ok", { scopes: ["orders:read"] }, [ok.version]));
    keys.apply("add", apiKey("shop", "own", { scopes: ["orders:read"], limits: { rate: { requests: 1000, per: "1m" } } }, [own.version]));
    keys.apply("add", apiKey("shop", "dis", { disabled: true, scopes: ["orders:read"] }, [dis.version]));
    keys.apply("add", apiKey("shop", "exp", { expiresAt: new Date(NOW + 30_000).toISOString(), scopes: ["orders:read"] }, [exp.version]));
    keys.apply("add", apiKey("shop", "rot", { scopes: ["orders:read", "orders:write"] }, [active.version, grace.version]));
    const post = { method: "POST", path: "/v1/orders" };
    const mix: [string, CheckInput][] = [
      ["ok", req({ "x-api-key": ok.key })],
      ["ok", req({ authorization: `Bearer ${ok.key}` })],
      ["ok", req({ "x-api-key": ok.key, "x-other-key": ok.key })],
      ["ok", req({}, { path: `/v1/orders/1?key=${ok.key}&api_key=${ok.key}` })],
      ["ok", req({}, { path: `/v1/orders/1?api_key=${ok.key}&key=${ok.key}` })],
      ["ok", req({ "x-api-key": active.key })],
      ["ok", req({ "x-api-key": active.key }, post)],
      ["ok", req({ "x-api-key": grace.key })],
      ["ok", req({ "x-api-key": own.key })],
      ["ok", req({ "x-api-key": ok.key }, { host: "limited.example.com" })],
      ["scope_missing", req({ "x-api-key": ok.key }, post)],
      ["unknown_key", req({ "x-api-key": newKey("x").key })],
      ["unknown_key", req({ "x-api-key": newKey("x").key }, post)],
      ["missing_key", req({})],
      ["conflicting_keys", req({ "x-api-key": ok.key, "x-other-key": own.key })],
      ["no_policy", req({ "x-api-key": ok.key }, { host: "nowhere.example.com" })],
      ["bad_request", req({}, { path: "x" })],
      ["key_disabled", req({ "x-api-key": dis.key })],
      ["ok", req({ "x-api-key": exp.key }, { path: "/v1/orders/2" })],
    ];
    const respond = checkResponder(OPTS, encode);
    const seen: Decision[] = [];
    const check = (t: number): void => {
      setNow(t);
      for (let round = 0; round < 3; round++) {
        for (const [, input] of mix) {
          const d = checker.check(input);
          seen.push(d);
          const answer = respond(d);
          expect(bytes(answer).equals(fresh(d)), d.reason).toBe(true);
          // Only answers with RateLimit-* headers are encoded afresh.
          expect(Buffer.isBuffer(answer), d.reason).toBe(d.limit?.limit === undefined);
        }
      }
    };
    check(NOW);
    expect(mix.map(([, input]) => checker.check(input).reason)).toEqual(mix.map(([r]) => r));
    // The same entries later: the expiring key has expired, the key in grace has ended
    // (the cached answers for them as OK do not stand in).
    check(NOW + 60_000);
    expect(checker.check(req({ "x-api-key": exp.key })).reason).toBe("key_expired");
    expect(checker.check(req({ "x-api-key": grace.key })).reason).toBe("key_grace_ended");
    expect(new Set(seen.map((d) => d.reason))).toEqual(
      new Set(["ok", "scope_missing", "unknown_key", "missing_key", "conflicting_keys", "no_policy", "bad_request", "key_disabled", "key_expired", "key_grace_ended"]),
    );
    // A decision that is not the check's own (not ready, internal error) is answered alike.
    for (const d of [deny("not_ready"), deny("internal_error")]) expect(bytes(respond(d)).equals(fresh(d))).toBe(true);
  });

  it("serves the same encoded bytes again for the same kind of decision", () => {
    const { keys, checker, req } = setup();
    const ok = newKey("shop_ok000000");
    keys.apply("add", apiKey("shop", "ok", { scopes: ["orders:read"] }, [ok.version]));
    const respond = checkResponder(OPTS, encode);
    const first = respond(checker.check(req({ "x-api-key": ok.key })));
    expect(respond(checker.check(req({ "x-api-key": ok.key })))).toBe(first);
    // Another credential to strip is another answer.
    const bearer = respond(checker.check(req({ authorization: `Bearer ${ok.key}` })));
    expect(bearer).not.toBe(first);
    expect(bytes(bearer).equals(bytes(first))).toBe(false);
    const unknown = respond(checker.check(req({ "x-api-key": newKey("x").key })));
    expect(respond(checker.check(req({ "x-api-key": newKey("y").key })))).toBe(unknown);
  });

  it("answers afresh once a watch event replaced the key's entry", () => {
    const { keys, checker, req } = setup();
    const k = newKey("shop_upd00000");
    keys.apply("add", apiKey("shop", "upd", { owner: "acme", scopes: ["orders:read"] }, [k.version]));
    const respond = checkResponder(OPTS, encode);
    const before = checker.check(req({ "x-api-key": k.key }));
    const a = respond(before);
    expect(respond(checker.check(req({ "x-api-key": k.key })))).toBe(a);
    const decoded = (b: CheckResponseMessage | Buffer): CheckResponseMessage => method.responseDeserialize(bytes(b));

    keys.apply("update", apiKey("shop", "upd", { owner: "globex", scopes: ["orders:read", "orders:write"] }, [k.version]));
    const after = checker.check(req({ "x-api-key": k.key }));
    expect(after.entry).not.toBe(before.entry);
    const b = respond(after);
    expect(bytes(b).equals(fresh(after))).toBe(true);
    expect(decoded(a).ok_response?.headers).toContainEqual(expect.objectContaining({ header: { key: "x-keyward-owner", value: "acme" } }));
    expect(decoded(b).ok_response?.headers).toContainEqual(expect.objectContaining({ header: { key: "x-keyward-owner", value: "globex" } }));
    expect(decoded(b).dynamic_metadata?.fields.scopes).toMatchObject({ listValue: { values: [{ stringValue: "orders:read" }, { stringValue: "orders:write" }] } });
    // The new scopes allow what was denied.
    expect(checker.check(req({ "x-api-key": k.key }, { method: "POST", path: "/v1/orders" })).reason).toBe("ok");

    keys.apply("update", apiKey("shop", "upd", { owner: "globex", disabled: true }, [k.version]));
    const disabled = checker.check(req({ "x-api-key": k.key }));
    expect(disabled.reason).toBe("key_disabled");
    expect(bytes(respond(disabled)).equals(fresh(disabled))).toBe(true);
  });

  it("never caches answers with RateLimit-* headers: they change with every call", () => {
    const { keys, checker, req } = setup();
    const k = newKey("shop_lim00000");
    keys.apply("add", apiKey("shop", "lim", { scopes: ["orders:read"], limits: { rate: { requests: 3, per: "1m" } } }, [k.version]));
    const respond = checkResponder(OPTS, encode);
    const remaining: string[] = [];
    const answers: Buffer[] = [];
    for (let i = 0; i < 4; i++) {
      const d = checker.check(req({ "x-api-key": k.key }));
      const a = respond(d);
      expect(Buffer.isBuffer(a)).toBe(false);
      answers.push(bytes(a));
      const m = method.responseDeserialize(bytes(a));
      const h = d.status === 200 ? m.ok_response?.response_headers_to_add : m.denied_response?.headers;
      remaining.push(h?.find((x) => x.header.key === "ratelimit-remaining")?.header.value ?? "?");
    }
    expect(remaining).toEqual(["2", "1", "0", "0"]);
    expect(checker.check(req({ "x-api-key": k.key })).reason).toBe("rate_limited");
    expect(new Set(answers.map((b) => b.toString("hex"))).size).toBe(4);
  });
});

describe("DecisionCache bounds", () => {
  /** Decisions on n different key entries. */
  const entries = (n: number): Decision[] => {
    const { keys, checker, req } = setup();
    const out: Decision[] = [];
    for (let i = 0; i < n; i++) {
      const k = newKey(`shop_${String(i).padStart(8, "0")}`);
      keys.apply("add", apiKey("shop", `k${i}`, {}, [k.version]));
      const d = checker.check(req({ "x-api-key": k.key }));
      expect(d.reason).toBe("scope_missing");
      out.push(d);
    }
    expect(new Set(out.map((d) => d.entry)).size).toBe(n);
    return out;
  };

  it("keeps at most two generations of entries, and moves a hit in the older one back", () => {
    let made = 0;
    const cache = new DecisionCache<number>(() => ++made, { entries: 2 });
    const [a, b, c, d] = entries(4) as [Decision, Decision, Decision, Decision];
    cache.get(a, "v");
    cache.get(b, "v"); // a, b move to the older generation
    expect(made).toBe(2);
    cache.get(a, "v"); // from the older one, back into the current one
    cache.get(c, "v"); // full again: a, c older; b dropped
    expect(made).toBe(3);
    cache.get(a, "v");
    cache.get(c, "v");
    expect(made).toBe(3);
    cache.get(b, "v");
    cache.get(d, "v");
    expect(made).toBe(5);
  });

  it("keeps a few variants per entry and a few values without an entry", () => {
    let made = 0;
    const cache = new DecisionCache<number>(() => ++made, { variants: 2, keyless: 2 });
    const [a] = entries(1) as [Decision];
    for (const v of ["x", "y", "z", "x", "y", "z"]) cache.get(a, v);
    expect(made).toBe(4); // x and y kept, z made twice
    made = 0;
    const none = deny("unknown_key");
    for (const v of ["x", "y", "x", "y", "z", "x"]) cache.get(none, v);
    expect(made).toBe(4); // full at z: cleared, then z and x again
  });

  it("tells apart the credentials an answer strips", () => {
    const base = { ...deny("ok"), status: 200 };
    const v = (h: string[], q: string[]): string => responseVariant({ ...base, removeHeaders: h, removeQueryParams: q });
    const all = [v([], []), v(["a"], []), v([], ["a"]), v(["a", "b"], []), v(["b", "a"], []), v(["a"], ["b"]), v(["a", "b"], ["c"]), v(["a"], ["b", "c"])];
    expect(new Set(all).size).toBe(all.length);
  });

  it("gives the same variant for the same rule, reason and stripped header, another for any of them changed", () => {
    const { keys, checker, req } = setup();
    const ok = newKey("shop_var00000");
    keys.apply("add", apiKey("shop", "var", { scopes: ["orders:read"] }, [ok.version]));
    const post = { method: "POST", path: "/v1/orders" };
    const cases: CheckInput[] = [
      req({ "x-api-key": ok.key }),
      req({ "x-other-key": ok.key }),
      req({ authorization: `Bearer ${ok.key}` }),
      req({ "x-api-key": ok.key, "x-other-key": ok.key }),
      req({}, { path: `/v1/orders/1?key=${ok.key}` }),
      req({ "x-api-key": ok.key }, post),
      req({ "x-api-key": ok.key }, { host: "limited.example.com" }),
    ];
    const first = cases.map((c) => responseVariant(checker.check(c)));
    expect(new Set(first).size).toBe(cases.length);
    // Asked again (answered from the rule's memo where it applies): the same strings.
    expect(cases.map((c) => responseVariant(checker.check(c)))).toEqual(first);
    expect(first[0]).toBe(`ok\u0000${checker.check(cases[0]!).rule!.policy.ref}\u0000read\u0001x-api-key\u0001`);
    expect(first[5]).toContain("scope_missing");
    // A denial strips nothing: the header the key came in does not tell its answers apart.
    expect(responseVariant(checker.check(req({ "x-other-key": ok.key }, post)))).toBe(first[5]);
  });
});

describe("gRPC front, answered from the cache", () => {
  let front: GrpcFront;
  let client: grpc.Client;
  const decisions: Decision[] = [];
  const s = setup();
  const ok = newKey("shop_grpc0000");
  const lim = newKey("shop_glim0000");

  beforeAll(async () => {
    s.keys.apply("add", apiKey("shop", "ok", { scopes: ["orders:read"] }, [ok.version]));
    s.keys.apply("add", apiKey("shop", "lim", { scopes: ["orders:read"], limits: { rate: { requests: 100, per: "1m" } } }, [lim.version]));
    front = await startGrpcFront({
      address: "127.0.0.1:0",
      checker: s.checker,
      response: OPTS,
      ready: () => true,
      onDecision: (d) => decisions.push(d),
      onError: (err) => {
        throw err;
      },
    });
    client = new grpc.Client(`127.0.0.1:${front.port}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    client.close();
    await front.stop();
  });

  /** One Check, its answer as the raw bytes on the wire. */
  const call = (r: CheckRequestMessage): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      client.makeUnaryRequest(`/${AUTHZ_SERVICE}/Check`, method.requestSerialize, (b: Buffer) => b, r, (err, res) => {
        if (err || !res) reject(err ?? new Error("no answer"));
        else resolve(res);
      });
    });
  const request = (headers: Record<string, string>): CheckRequestMessage => ({
    attributes: { request: { http: { method: "GET", host: "orders.example.com", path: "/v1/orders/1", headers } } },
  });

  it("sends the bytes proto-loader would have encoded", async () => {
    const reqs: Record<string, string>[] = [{ "x-api-key": ok.key }, { "x-api-key": lim.key }, { "x-api-key": newKey("x").key }, {}, { authorization: `Bearer ${ok.key}` }];
    for (let round = 0; round < 2; round++) {
      for (const h of reqs) {
        decisions.length = 0;
        const wire = await call(request(h));
        const d = decisions[0] as Decision;
        expect(wire.equals(fresh(d)), d.reason).toBe(true);
      }
    }
    // Both kinds of answer go through the method's serializer.
    const m = checkMethod({ Check: method });
    const cached = fresh(deny("missing_key"));
    expect(m.responseSerialize(cached)).toBe(cached);
    expect(m.responseSerialize(toCheckResponse(deny("missing_key"), OPTS)).equals(cached)).toBe(true);
  });
});
