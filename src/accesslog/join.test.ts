import { describe, expect, it } from "vitest";
import { joinEntry } from "./join.ts";
import type { HttpLogEntry } from "./proto.ts";

const entry = (meta: Record<string, string> | undefined, code = 200, ns = "envoy.filters.http.ext_authz"): HttpLogEntry => ({
  common_properties: {
    start_time: { seconds: "1795435200", nanos: 250_000_000 },
    time_to_last_upstream_rx_byte: { seconds: "0", nanos: 12_500_000 },
    metadata: meta ? { filter_metadata: { [ns]: { fields: Object.fromEntries(Object.entries(meta).map(([k, v]) => [k, { stringValue: v }])) } } } : {},
  },
  request: { path: "/v1/orders?api_key=kw_SECRETSECRETSECRET" },
  response: { response_code: { value: code } },
});

describe("access log join", () => {
  it("joins an entry to its key through the ext_authz metadata", () => {
    expect(joinEntry(entry({ key_id: "kw_AbCdEfGh", apikey: "shop/acme", owner: "acme", decision: "allowed" }, 503))).toEqual({
      kind: "joined",
      entry: { apikey: "shop/acme", keyId: "kw_AbCdEfGh", responseCode: 503, at: 1795435200250, upstreamSeconds: 0.0125 },
    });
  });

  it("finds the metadata under a filter named keyward too", () => {
    expect(joinEntry(entry({ key_id: "kw_AbCdEfGh", apikey: "shop/acme" }, 200, "keyward")).kind).toBe("joined");
  });

  it("leaves entries without a key unattributed and rejects malformed metadata", () => {
    expect(joinEntry(entry(undefined))).toEqual({ kind: "unattributed" });
    expect(joinEntry(entry({ decision: "unauthenticated", reason: "missing_key" }))).toEqual({ kind: "unattributed" });
    expect(joinEntry(entry({ key_id: "kw x", apikey: "shop/acme" })).kind).toBe("invalid");
    expect(joinEntry(entry({ key_id: "kw_AbCdEfGh", apikey: "acme" })).kind).toBe("invalid");
    expect(joinEntry({ ...entry({ key_id: "kw_AbCdEfGh", apikey: "shop/acme" }), response: {} }).kind).toBe("invalid");
  });

  it("never counts a request the ext_authz server denied as an upstream answer", () => {
    const limited = { key_id: "kw_AbCdEfGh", apikey: "shop/acme", owner: "acme", decision: "limited", reason: "rate_limited" };
    // Envoy's local 429, flagged UAEX, with the metadata keyward returned on the denial.
    const uaex = (e: HttpLogEntry, reason?: number): HttpLogEntry => ({
      ...e,
      common_properties: { ...e.common_properties, response_flags: { unauthorized_details: reason === undefined ? {} : { reason } } },
    });
    expect(joinEntry(uaex(entry(limited, 429), 1))).toEqual({ kind: "denied" });
    expect(joinEntry(uaex(entry(limited, 429)))).toEqual({ kind: "denied" });
    // Either signal is enough: the flag without keyward's decision, or the decision without the flag.
    expect(joinEntry(uaex(entry({ key_id: "kw_AbCdEfGh", apikey: "shop/acme" }, 403), 1))).toEqual({ kind: "denied" });
    expect(joinEntry(entry(limited, 429))).toEqual({ kind: "denied" });
    // An allowed request the upstream answered with 429 is an upstream answer.
    expect(joinEntry(entry({ ...limited, decision: "allowed", reason: "ok" }, 429))).toMatchObject({ kind: "joined", entry: { responseCode: 429 } });
    const plain = entry({ key_id: "kw_AbCdEfGh", apikey: "shop/acme" }, 429);
    expect(joinEntry({ ...plain, common_properties: { ...plain.common_properties, response_flags: { unauthorized_details: null } } }).kind).toBe("joined");
  });

  it("never reads the request path, where a key may be", () => {
    const j = joinEntry(entry({ key_id: "kw_AbCdEfGh", apikey: "shop/acme" }));
    expect(JSON.stringify(j)).not.toContain("SECRET");
  });
});
