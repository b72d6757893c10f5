import { describe, expect, it } from "vitest";
import { verifyProof } from "../accesslog/proof.ts";
import type { CheckInput, Decision } from "../check/decision.ts";
import { checkResponder, provenResponder } from "./check-messages.ts";
import { checkProof } from "./check-proof.ts";
import { AUTHZ_SERVICE, loadProtos, type CheckResponseMessage } from "./proto.ts";

const key = Buffer.from("p".repeat(32));
const now = 1_800_000_000_000;

function codec() {
  const svc = loadProtos()[AUTHZ_SERVICE] as Record<string, { responseSerialize: (m: CheckResponseMessage) => Buffer; responseDeserialize: (b: Buffer) => CheckResponseMessage }>;
  const m = svc.Check;
  if (!m) throw new Error("no Check");
  return m;
}

const allowed = {
  status: 200,
  reason: "ok",
  entry: { id: "kw_AAAAAAAA", record: { uid: "uid-1", owner: "alice", ref: "shop/acme", scopeList: [] } },
  removeHeaders: [],
  removeQueryParams: [],
} as unknown as Decision;
const input = (requestId?: string): CheckInput => ({ header: (n) => (n === "x-request-id" ? requestId : undefined) }) as CheckInput;

describe("proofs in allowed answers", () => {
  const { responseSerialize, responseDeserialize } = codec();
  const respond = provenResponder(checkResponder({ keyIdHeader: "x-keyward-key-id", ownerHeader: "x-keyward-owner", realm: "keyward" }, responseSerialize), responseSerialize, checkProof(key, () => now));

  it("appends a proof of the request id to the cached answer, leaving its bytes as they are", () => {
    // protobufjs replaces a repeated embedded message where protobuf (Envoy's C++) merges it, so the
    // two parts are read apart here; test/integration/envoy-grpc.test.ts proves Envoy's merge.
    const base = respond(allowed, input(undefined)) as Buffer;
    const a = respond(allowed, input("req-1")) as Buffer;
    const b = respond(allowed, input("req-2")) as Buffer;
    expect(Buffer.isBuffer(a) && Buffer.isBuffer(b)).toBe(true);
    expect(a.subarray(0, base.length).equals(base)).toBe(true);
    const fields = responseDeserialize(base).dynamic_metadata?.fields ?? {};
    expect(fields.key_id?.stringValue).toBe("kw_AAAAAAAA");
    expect(fields.proof).toBeUndefined();
    const added = responseDeserialize(a.subarray(base.length));
    expect(added.status).toBeUndefined();
    expect(Object.keys(added.dynamic_metadata?.fields ?? {})).toEqual(["proof"]);
    const proof = added.dynamic_metadata?.fields.proof?.stringValue;
    expect(verifyProof([key], proof, { requestId: "req-1", keyId: "kw_AAAAAAAA", uid: "uid-1" }, now, 3_600_000)).toBe(true);
    expect(verifyProof([key], proof, { requestId: "req-2", keyId: "kw_AAAAAAAA", uid: "uid-1" }, now, 3_600_000)).toBe(false);
    expect(responseDeserialize(b.subarray(base.length)).dynamic_metadata?.fields.proof?.stringValue).not.toBe(proof);
  });

  it("adds none without a usable request id, or to a denial", () => {
    const plain = responseDeserialize(respond(allowed, input(undefined)) as Buffer);
    expect(plain.dynamic_metadata?.fields.proof).toBeUndefined();
    const denied = { ...allowed, status: 403, reason: "no_policy" } as unknown as Decision;
    const d = respond(denied, input("req-1"));
    expect((Buffer.isBuffer(d) ? responseDeserialize(d) : d).dynamic_metadata?.fields.proof).toBeUndefined();
  });
});
