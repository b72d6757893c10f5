import { describe, expect, it } from "vitest";
import type { ApiKey } from "../api/types.ts";
import type { CheckInput, Decision } from "../check/decision.ts";
import { checkRequestId, requestIdOf } from "../check/event.ts";
import type { CountryLookup } from "./geo.ts";
import { MAX_ROW_PATH } from "./row.ts";
import { checkEvent } from "./fixtures.test-support.ts";
import { keyRecordOf, leftToAccessLog, placeGeography, rowFromCheck, unplacedRowFromCheck } from "./rows.ts";

const geo: CountryLookup = { country: (a) => (a === "81.2.69.160" ? "GB" : a?.startsWith("10.") ? "private" : undefined) };
const event = checkEvent;

describe("rows from checks", () => {
  it("holds what the check knew, with the source's network and country", () => {
    // Everything the check event says but the key and the latency, which become the key's uid and id and microseconds.
    const { key: _key, latencySeconds: _seconds, ...said } = event();
    expect(rowFromCheck(event(), geo)).toEqual({ ...said, uid: "uid-1", keyId: "kw_AbCdEfGh", network: "81.2.69.0/24", country: "GB", checkMicros: 123 });
    expect(rowFromCheck(event({ source: "10.1.2.3" }), geo)).toMatchObject({ network: "10.1.2.0/24", country: "private" });
    expect(rowFromCheck(event({ source: "2001:db8:1:2::5" }), geo)).toMatchObject({ network: "2001:db8:1::/48" });
    expect(rowFromCheck(event({ source: "2001:db8:1:2::5" }), geo)).not.toHaveProperty("country");
  });

  it("never makes a row for a request without a known key", () => {
    expect(rowFromCheck(event({ key: undefined, outcome: "unauthenticated", reason: "unknown_key", status: 401 }), geo)).toBeUndefined();
  });

  it("cuts the path at the query string and at MAX_ROW_PATH, and keeps only an address as the source", () => {
    const key = "kw_SECRETSECRETSECRETSECRETSECRETSECRETSECRET1234";
    const row = rowFromCheck(event({ path: `/v1/${"a".repeat(400)}?api_key=${key}` }), geo);
    expect(row?.path).toHaveLength(MAX_ROW_PATH);
    expect(rowFromCheck(event({ path: `/v1/x?api_key=${key}#frag` }), geo)?.path).toBe("/v1/x");
    expect(JSON.stringify(rowFromCheck(event({ path: `/v1/x?api_key=${key}` }), geo))).not.toContain("SECRET");
    const odd = rowFromCheck(event({ source: "unknown, 1.2.3.4" }), geo);
    expect(odd).not.toHaveProperty("source");
    expect(odd).not.toHaveProperty("network");
  });

  it("leaves the network and country to the writer when it places them: the same row once placed", () => {
    const sources = ["81.2.69.160", "10.1.2.3", "2001:db8:1:2::5", "[2001:db8::1]", "::ffff:81.2.69.160", "unknown, 1.2.3.4", "kw_SECRET_1234", "1.2.3", undefined];
    for (const source of sources) {
      const unplaced = unplacedRowFromCheck(event({ source }));
      expect(unplaced).not.toHaveProperty("network");
      expect(unplaced).not.toHaveProperty("country");
      // Only an address crosses to the writer: nothing else a client put in X-Forwarded-For.
      if (rowFromCheck(event({ source }), geo)?.source === undefined) expect(unplaced).not.toHaveProperty("source");
      placeGeography([unplaced!], geo);
      expect(unplaced).toEqual(rowFromCheck(event({ source }), geo));
    }
  });

  it("leaves to the access log only allowed gRPC checks with a request id, and only when it is on", () => {
    expect(leftToAccessLog(event(), true)).toBe(true);
    expect(leftToAccessLog(event(), false)).toBe(false);
    expect(leftToAccessLog(event({ requestId: undefined }), true)).toBe(false);
    expect(leftToAccessLog(event({ front: "http" }), true)).toBe(false);
    expect(leftToAccessLog(event({ outcome: "limited", reason: "rate_limited", status: 429 }), true)).toBe(false);
    expect(leftToAccessLog(event({ outcome: "cancelled", reason: "cancelled" }), true)).toBe(false);
  });
});

describe("request ids", () => {
  const input = (id: string | undefined): CheckInput => ({ method: "GET", host: "h", path: "/", header: (n) => (n === "x-request-id" ? id : undefined), peerAddress: undefined, forwardedFor: undefined });
  const reading = (headers: string[]): Pick<Decision, "rule"> => ({ rule: { policy: { credentials: { headers, bearer: false, queryParams: [] } } } as unknown as Decision["rule"] });

  it("keeps Envoy's UUIDs and tracers' ids", () => {
    expect(requestIdOf(input("83c9600e-9cc8-48e9-b543-dd59374de47f"), reading(["x-api-key"]))).toBe("83c9600e-9cc8-48e9-b543-dd59374de47f");
    expect(checkRequestId("4bf92f3577b34da6a3ce929d0e0e4736")).toBe("4bf92f3577b34da6a3ce929d0e0e4736");
    expect(checkRequestId("a".repeat(64))).toHaveLength(64);
  });

  it("drops ids that are too long, that carry other characters, or that look like a key", () => {
    for (const bad of ["a".repeat(65), "", "id with space", "id\r\nx-evil: 1", "kw_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefgh", "-leading", ".leading", ":leading", "ä", "idä", "id/x", "id@x", "id`x", "id[x", "id{x", "id\u0000", "Ａ1"]) {
      expect(checkRequestId(bad), bad).toBeUndefined();
    }
    for (const good of ["0", "Z", "z", "a-b.c:d", "A9-", "trace:0001.span-7"]) expect(checkRequestId(good), good).toBe(good);
    expect(requestIdOf(undefined, reading([]))).toBeUndefined();
  });

  it("is never read from x-request-id when the policy takes keys from that header", () => {
    expect(requestIdOf(input("4bf92f3577b34da6a3ce929d0e0e4736"), reading(["x-request-id"]))).toBeUndefined();
  });
});

describe("key records", () => {
  const ak: ApiKey = {
    apiVersion: "keyward.dev/v1alpha1",
    kind: "ApiKey",
    metadata: { namespace: "shop", name: "acme", uid: "uid-1", labels: { team: "payments", tier: "gold" }, creationTimestamp: "2026-01-02T03:04:05Z" as unknown as Date },
    spec: { owner: "acme-team", scopes: ["orders:read"], expiresAt: "2027-01-01T00:00:00Z" },
  };

  it("carries owner, labels, scopes, creation and expiry; deletedAt once deleted", () => {
    expect(keyRecordOf(ak)).toEqual({
      uid: "uid-1",
      namespace: "shop",
      name: "acme",
      owner: "acme-team",
      labels: { team: "payments", tier: "gold" },
      scopes: ["orders:read"],
      createdAt: Date.parse("2026-01-02T03:04:05Z"),
      expiresAt: Date.parse("2027-01-01T00:00:00Z"),
    });
    expect(keyRecordOf(ak, 42)?.deletedAt).toBe(42);
    expect(keyRecordOf({ ...ak, metadata: { ...ak.metadata, uid: undefined } })).toBeUndefined();
  });
});
