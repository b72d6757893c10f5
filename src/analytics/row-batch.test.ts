import { MessageChannel } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import type { CheckEvent } from "../check/event.ts";
import { isKeywardError } from "../errors.ts";
import { MAX_ROW_PATH, type RequestRow } from "./row.ts";
import { batchTransfer, RowBatchDecoder, RowBatchEncoder, type RowBatch } from "./row-batch.ts";
import { rawText } from "./row-columns.ts";
import { unplacedRowFromCheck } from "./rows.ts";

const AT = 1_800_000_000_000;
const row = (i: number, more: Partial<RequestRow> = {}): RequestRow => ({
  at: AT + i,
  uid: `uid-${i % 3}`,
  keyId: `kw_key${i % 3}`,
  front: "grpc",
  outcome: "allowed",
  reason: "ok",
  status: 200,
  checkMicros: 40 + i,
  policy: "shop/api",
  rule: "read",
  route: "GET /v1/orders/*",
  method: "GET",
  host: "api.example.com",
  path: `/v1/orders/${i}`,
  source: `198.51.100.${i % 250}`,
  requestId: `req-${i}`,
  ...more,
});
const rows = (n: number, from = 0): RequestRow[] => Array.from({ length: n }, (_, i) => row(from + i));

/** Every string a batch carries, as the other thread would see it. */
const carried = (b: RowBatch): string => `${b.strings.join("\n")}\n${rawText(b.raw)}`;

const outOfStep = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
};

describe("row batches for the writer thread", () => {
  it("gives back every row as it was: each field, and none that was missing", () => {
    const sent: RequestRow[] = [
      row(1),
      // A row from Envoy's access log, with the upstream's answer and its network and country placed.
      { at: AT, uid: "u", keyId: "kw_x", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 0, upstreamStatus: 503, upstreamMicros: 1_234_567, requestBytes: 0, responseBytes: 2 ** 40, network: "81.2.69.0/24", country: "GB", source: "81.2.69.160" },
      // The fewest fields a row has.
      { at: AT + 5, uid: "u", keyId: "kw_x", front: "http", outcome: "forbidden", reason: "scope_missing", status: 403, checkMicros: 7 },
      row(2, { path: "", host: "" }),
    ];
    const back = new RowBatchDecoder().decode(new RowBatchEncoder().encode(sent));
    expect(back).toEqual(sent);
    // No field the row did not have, not even as undefined.
    expect(Object.keys(back[2] as object).sort()).toEqual(Object.keys(sent[2] as object).sort());
    expect(new RowBatchDecoder().decode(new RowBatchEncoder().encode([]))).toEqual([]);
  });

  it("keeps unicode and the longest paths exact", () => {
    const long = `/v1/${"é😀x".repeat(200)}`.slice(0, MAX_ROW_PATH);
    // A lone surrogate decodes as U+FFFD, one code unit as it was; a leading BOM is kept.
    const sent = [row(1, { path: long, host: "bücher.example", source: "2001:db8::1" }), row(2, { path: "/日本/😀" }), row(3, { path: "/a\u0000b" }), row(4, { uid: "\uFEFFuid", path: "/\uFEFF" })];
    expect(new RowBatchDecoder().decode(new RowBatchEncoder().encode(sent))).toEqual(sent);
    const lone = row(5, { path: "/a\uD800b", source: "192.0.2.1", requestId: "req-after" });
    expect(new RowBatchDecoder().decode(new RowBatchEncoder().encode([lone]))).toEqual([{ ...lone, path: "/a\uFFFDb" }]);
  });

  it("sends each repeated string once across batches, and the rarely repeated ones in the batch", () => {
    const enc = new RowBatchEncoder();
    const dec = new RowBatchDecoder();
    const first = enc.encode(rows(100));
    // One of each value: uids, key ids, paths, sources and request ids are not in the table.
    expect(first.base).toBe(0);
    expect(first.strings).toEqual(["grpc", "shop/api", "read", "GET /v1/orders/*", "GET", "api.example.com", "allowed", "ok"]);
    expect(rawText(first.raw)).toContain("/v1/orders/99");
    expect(dec.decode(first)).toEqual(rows(100));
    const second = enc.encode(rows(100, 100));
    expect(second.base).toBe(8);
    expect(second.strings).toEqual([]);
    expect(dec.decode(second)).toEqual(rows(100, 100));
    const third = enc.encode([row(7, { host: "other.example" })]);
    expect([third.base, third.strings]).toEqual([8, ["other.example"]]);
    expect(dec.decode(third)).toEqual([row(7, { host: "other.example" })]);
    expect(dec.size).toBe(9);
  });

  it("starts a new table when the table outgrows its bounds, and the writer follows", () => {
    const enc = new RowBatchEncoder({ maxStrings: 20, maxChars: 1_000_000 });
    const dec = new RowBatchDecoder();
    const many = (tag: string): RequestRow[] => Array.from({ length: 14 }, (_, i) => row(i, { host: `${tag}-${i}.example` }));
    expect(dec.decode(enc.encode(many("a")))).toEqual(many("a"));
    expect(enc.size).toBeGreaterThanOrEqual(20);
    const next = enc.encode(many("b"));
    // A new table: base 0, every string the batch uses.
    expect(next.base).toBe(0);
    expect(next.strings).toContain("grpc");
    expect(dec.decode(next)).toEqual(many("b"));
    expect(dec.size).toBe(next.strings.length);
    // Bounded by characters too.
    const chars = new RowBatchEncoder({ maxStrings: 1_000, maxChars: 50 });
    chars.encode([row(1, { host: "h".repeat(60) })]);
    expect(chars.encode([row(1)]).base).toBe(0);
  });

  it("refuses a batch that does not fit its table, taking nothing of it: a writer thread started anew", () => {
    const enc = new RowBatchEncoder();
    enc.encode(rows(10));
    const later = enc.encode([row(11, { host: "new.example" })]);
    const fresh = new RowBatchDecoder();
    const err = outOfStep(() => fresh.decode(later));
    expect(isKeywardError(err, "AnalyticsBatchOutOfStep")).toBe(true);
    expect(fresh.size).toBe(0);
    // The same rows from a new table are taken.
    enc.reset();
    expect(fresh.decode(enc.encode([row(11, { host: "new.example" })]))).toEqual([row(11, { host: "new.example" })]);
  });

  it("takes a refused batch sent again after the table changed, whether or not the writer had taken its strings", () => {
    const enc = new RowBatchEncoder();
    const tookThem = new RowBatchDecoder();
    const lostThem = new RowBatchDecoder();
    const first = enc.encode(rows(5));
    tookThem.decode(structuredClone(first));
    lostThem.decode(structuredClone(first));
    // The second batch brings new strings; the writer takes them, the store refuses the write.
    const refused = enc.encode([row(6, { rule: "write", route: "POST /v1/orders" })]);
    expect(refused.strings).toEqual(["write", "POST /v1/orders"]);
    tookThem.decode(refused);
    // The queue puts the rows back; newer rows with more new strings join them; the encoder starts anew after the refusal.
    enc.reset();
    const again = [row(6, { rule: "write", route: "POST /v1/orders" }), row(8, { host: "late.example" })];
    const retry = enc.encode(again);
    expect(retry.base).toBe(0);
    expect(tookThem.decode(structuredClone(retry))).toEqual(again);
    expect(lostThem.decode(structuredClone(retry))).toEqual(again);
    // And both follow the next batch.
    const next = enc.encode([row(9)]);
    expect(tookThem.decode(structuredClone(next))).toEqual([row(9)]);
    expect(lostThem.decode(structuredClone(next))).toEqual([row(9)]);
  });

  it("refuses a malformed batch: an id past the table, raw strings that do not match their lengths, columns of another size", () => {
    const enc = new RowBatchEncoder();
    const good = enc.encode(rows(3));
    const dec = new RowBatchDecoder();
    const badId = structuredClone(good);
    badId.ids[0] = 999;
    const badRaw = { ...structuredClone(good), raw: new Uint8Array([...good.raw, 0x78]) };
    // A multi-byte character counts as its code units, not its bytes.
    const badWide = { ...structuredClone(good), raw: new Uint8Array([...good.raw.subarray(0, -2), 0xc3, 0xa9]) };
    const badRows = { ...structuredClone(good), rows: 4 };
    for (const b of [badId, badRaw, badWide, badRows]) expect(isKeywardError(outOfStep(() => dec.decode(b)), "AnalyticsBatchOutOfStep")).toBe(true);
    expect(dec.size).toBe(0);
    expect(dec.decode(good)).toEqual(rows(3));
  });

  it("moves the batch's buffers to the other thread rather than copying them", async () => {
    const b = new RowBatchEncoder().encode(rows(50));
    const { port1, port2 } = new MessageChannel();
    const got = new Promise<RowBatch>((resolve) => port2.once("message", resolve));
    port1.postMessage(b, batchTransfer(b));
    expect([b.ids.byteLength, b.numbers.byteLength, b.lengths.byteLength, b.raw.byteLength]).toEqual([0, 0, 0, 0]);
    expect(new RowBatchDecoder().decode(await got)).toEqual(rows(50));
    port1.close();
  });

  it("never encodes key material: only a row's named fields, from a row without the query string", () => {
    const key = "kw_SECRETSECRETSECRETSECRETSECRETSECRETSECRET1234";
    const e: CheckEvent = {
      at: AT,
      key: { namespace: "shop", name: "acme", uid: "uid-1", keyId: "kw_AbCdEfGh", owner: "acme-team" },
      outcome: "allowed",
      reason: "ok",
      status: 200,
      front: "http",
      path: `/v1/x?api_key=${key}#${key}`,
      // A client's X-Forwarded-For is not an address: it is never kept.
      source: key,
      latencySeconds: 0.0001,
    };
    const made = unplacedRowFromCheck(e) as RequestRow;
    expect(made).not.toHaveProperty("source");
    // Whatever else a row object holds is not read.
    const withMore = Object.assign(made, { key, headers: { authorization: `Bearer ${key}` } });
    const b = new RowBatchEncoder().encode([withMore]);
    expect(carried(b)).not.toContain("SECRET");
    expect(new RowBatchDecoder().decode(b)).toEqual([{ at: AT, uid: "uid-1", keyId: "kw_AbCdEfGh", front: "http", outcome: "allowed", reason: "ok", status: 200, checkMicros: 100, path: "/v1/x" }]);
  });
});
