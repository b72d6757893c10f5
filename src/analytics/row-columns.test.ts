import { describe, expect, it } from "vitest";
import { MAX_ROW_PATH, type RequestRow } from "./row.ts";
import { DEFAULT_ROW_TABLE_LIMITS, rawText, RowColumns, rowsOf, StringTable } from "./row-columns.ts";
import { unplacedRowFromCheck } from "./rows.ts";
import { checkEvent } from "./fixtures.test-support.ts";

const SECRET = "kw_SECRETSECRETSECRETSECRETSECRETSECRETSECRET1234";
const event = checkEvent;

/** Every string the columns hold or would send, as one text. */
const held = (c: RowColumns): string => `${c.table.strings.join("\n")}\n${rawText(c.bytes)}`;

describe("request rows in columns", () => {
  it("writes a check's row straight from its event, as unplacedRowFromCheck makes it, and none for a check without a key", () => {
    const events = [
      event(),
      event({ requestId: undefined, policy: undefined, rule: undefined, route: undefined, outcome: "forbidden", reason: "scope_missing", status: 403, front: "http" }),
      event({ source: "2001:db8:1:2::5", path: "/日本/😀", host: "bücher.example" }),
      // A source that is not an address (a proxy's odd X-Forwarded-For) is left out, as is one that is none.
      event({ source: "unknown, 1.2.3.4" }),
      event({ source: undefined, method: undefined, host: undefined, path: undefined }),
      event({ path: `/v1/${"a".repeat(400)}`, outcome: "cancelled", reason: "cancelled" }),
    ];
    const c = new RowColumns(100, new StringTable());
    for (const e of events) expect(c.appendCheck(e)).toBe(true);
    expect(c.appendCheck(event({ key: undefined, outcome: "unauthenticated", reason: "unknown_key", status: 401 }))).toBe(false);
    expect(c.count).toBe(events.length);
    expect(rowsOf(c)).toEqual(events.map((e) => unplacedRowFromCheck(e)));
    expect(rowsOf(c)[5]?.path).toHaveLength(MAX_ROW_PATH);
  });

  it("never holds the query string, the key, or a source that is not an address", () => {
    const c = new RowColumns(10, new StringTable());
    c.appendCheck(event({ path: `/v1/x?api_key=${SECRET}#${SECRET}`, source: SECRET }));
    c.appendCheck(event({ path: `/v1/y#${SECRET}` }));
    expect(held(c)).not.toContain("SECRET");
    expect(rowsOf(c).map((r) => [r.path, r.source])).toEqual([["/v1/x", undefined], ["/v1/y", "81.2.69.160"]]);
  });

  it("holds a row's raw fields as their UTF-8 bytes, not as the strings the check made, and sends only the rows it holds", () => {
    const c = new RowColumns(10, new StringTable());
    c.appendCheck(event());
    expect(rawText(c.rawBytes())).toBe("uid-1kw_AbCdEfGh/v1/orders/781.2.69.16083c9600e-9cc8-48e9-b543-dd59374de47f");
    expect(Object.values(c).some((v) => Array.isArray(v) && v.some((s) => typeof s === "string" && s.startsWith("/v1/")))).toBe(false);
    c.appendCheck(event({ path: "/日本", requestId: undefined }));
    // UTF-8: the two characters of the second path take three bytes each.
    expect(c.rawBytes().length).toBe(75 + 28 + 6);
    c.dropFront(1);
    expect(rawText(c.rawBytes())).toBe("uid-1kw_AbCdEfGh/日本81.2.69.160");
    expect(rowsOf(c).map((r) => r.path)).toEqual(["/日本"]);
    c.clear(c.table);
    expect(c.rawBytes().length).toBe(0);
    c.appendCheck(event({ path: "/again" }));
    expect(rowsOf(c).map((r) => r.path)).toEqual(["/again"]);
  });

  it("writes other rows as they are: the access log's upstream answer, the network and country placed", () => {
    const rows: RequestRow[] = [
      { at: 1, uid: "u", keyId: "kw_x", front: "grpc", outcome: "allowed", reason: "ok", status: 200, checkMicros: 0, upstreamStatus: 503, upstreamMicros: 1_234_567, requestBytes: 0, responseBytes: 2 ** 40, network: "81.2.69.0/24", country: "GB", source: "81.2.69.160", path: "/a\u0000b" },
      { at: 2, uid: "u", keyId: "kw_x", front: "http", outcome: "forbidden", reason: "scope_missing", status: 403, checkMicros: 7 },
    ];
    const c = new RowColumns(1, new StringTable());
    c.appendRow(rows[0]!);
    expect(() => {
      c.appendRow(rows[1]!);
    }).toThrow(RangeError);
    const d = new RowColumns(2, new StringTable());
    for (const r of rows) d.appendRow(r);
    expect(rowsOf(d)).toEqual(rows);
  });

  it("grows to its capacity as rows come, and moves rows from the front of other columns of its table", () => {
    const table = new StringTable();
    const a = new RowColumns(1000, table);
    for (let i = 0; i < 700; i++) a.appendCheck(event({ at: i, path: `/v1/orders/${"x".repeat(i % 300)}` }));
    a.dropFront(3);
    const b = new RowColumns(1000, table);
    b.appendCheck(event({ at: -1 }));
    b.takeFrom(a, 500);
    expect([a.count, b.count]).toEqual([197, 501]);
    expect(rowsOf(b).map((r) => r.at)).toEqual([-1, ...Array.from({ length: 500 }, (_, i) => i + 3)]);
    expect(rowsOf(b)[10]?.path).toBe(`/v1/orders/${"x".repeat(12)}`);
    expect(rowsOf(a).map((r) => r.at)).toEqual(Array.from({ length: 197 }, (_, i) => i + 503));
    expect(() => {
      b.takeFrom(new RowColumns(10, new StringTable()), 0);
    }).toThrow();
  });

  it("gives a row's repeated strings the ids of its own table, after its columns were emptied for another", () => {
    const c = new RowColumns(10, new StringTable());
    c.appendCheck(event());
    c.appendCheck(event({ host: "other.example" }));
    const next = new StringTable();
    for (let i = 0; i < 20; i++) next.id(`s${i}`);
    c.clear(next);
    c.appendCheck(event());
    c.appendCheck(event());
    expect(rowsOf(c)).toEqual([unplacedRowFromCheck(event()), unplacedRowFromCheck(event())]);
    expect(next.strings).toContain("api.example.com");
  });

  it("keeps each repeated string once in its table, which tells when it has outgrown its bounds", () => {
    const t = new StringTable();
    expect([t.id("a"), t.id("b"), t.id("a"), t.id(undefined)]).toEqual([1, 2, 1, 0]);
    expect(t.strings).toEqual(["a", "b"]);
    expect(t.full({ maxStrings: 3, maxChars: 10 })).toBe(false);
    t.id("cccccccccc");
    expect(t.full({ maxStrings: 3, maxChars: 100 })).toBe(true);
    expect(t.full({ maxStrings: 100, maxChars: 12 })).toBe(true);
    expect(t.full(DEFAULT_ROW_TABLE_LIMITS)).toBe(false);
  });
});
