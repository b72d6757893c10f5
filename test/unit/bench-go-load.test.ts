// The closed loop's client report (bench/lib/go-load.ts): read from keyward-bench-go-load's
// output, and refused when a call failed or an answer is not the one its request expects, so a
// broken check path cannot look fast.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { requestMix } from "../../bench/lib/fixture.ts";
import { checkedLoad, goLoadArgs, parseGoLoadReport, writeLoadFile, type GoLoadReport } from "../../bench/lib/go-load.ts";

const report = (over: Partial<GoLoadReport> = {}): GoLoadReport => ({
  seconds: 6.002,
  count: 120_000,
  rps: 19_993.3,
  codes: { "0": 96_000, "16": 12_000, "7": 12_000 },
  unexpected: 0,
  errors: 0,
  errorKinds: {},
  p50Ms: 2.1234,
  p99Ms: 9.87654,
  p999Ms: 20.5,
  maxMs: 31,
  cpuSeconds: 1.8,
  concurrency: 64,
  connections: 4,
  ...over,
});

describe("parseGoLoadReport", () => {
  it("reads the report on the output's last line", () => {
    const r = parseGoLoadReport(`warming up\n${JSON.stringify(report())}\n`);
    expect(r.count).toBe(120_000);
    expect(r.codes).toEqual({ "0": 96_000, "16": 12_000, "7": 12_000 });
  });

  it("refuses output without a report, or a report with a field missing or not a number", () => {
    expect(() => parseGoLoadReport("panic: boom")).toThrow(/no JSON report/);
    const { p99Ms: _, ...noP99 } = report();
    expect(() => parseGoLoadReport(JSON.stringify(noP99))).toThrow(/p99Ms is not a number/);
    expect(() => parseGoLoadReport(JSON.stringify({ ...report(), count: "many" }))).toThrow(/count is not a number/);
    expect(() => parseGoLoadReport(JSON.stringify({ ...report(), codes: { "0": "all" } }))).toThrow(/codes is not a map of counts/);
  });
});

describe("checkedLoad", () => {
  it("gives the run's rate, latency percentiles, answers by code and the client's CPU per call", () => {
    expect(checkedLoad(report())).toEqual({
      rps: 19_993.3,
      count: 120_000,
      errors: 0,
      p50Ms: 2.123,
      p99Ms: 9.877,
      p999Ms: 20.5,
      maxMs: 31,
      codes: { "0": 96_000, "16": 12_000, "7": 12_000 },
      clientCpuMicrosPerCall: 15,
    });
  });

  it("refuses a run with a failed call, an answer other than its request's expected one, or no call at all", () => {
    expect(() => checkedLoad(report({ errors: 3, errorKinds: { "connection refused": 3 } }))).toThrow(/3 of 120003 calls failed: .*connection refused/);
    // A server that allows everything answers the 20% of unknown keys and missing scopes wrongly.
    expect(() => checkedLoad(report({ codes: { "0": 120_000 }, unexpected: 24_000 }))).toThrow(/24000 of 120000 answers were not the ones their requests expect/);
    expect(() => checkedLoad(report({ count: 0, rps: 0, codes: {} }))).toThrow(/no call completed/);
  });
});

describe("writeLoadFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "keyward-go-load-test-"));
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes the check bench's requests, each with the code its kind is answered with", () => {
    const mix = requestMix(1000, 100);
    const entries = JSON.parse(readFileSync(writeLoadFile(dir, "load", mix), "utf8")) as { request: unknown; expect: number }[];
    expect(entries.map((e) => e.request)).toEqual(mix.requests);
    expect(entries.map((e) => e.expect)).toEqual(mix.order.map((k) => ({ valid: 0, unknown: 16, scope_missing: 7 })[k]));
    expect(entries.filter((e) => e.expect === 0)).toHaveLength(mix.kinds.valid);
  });

  it("refuses requests and kinds that differ in number", () => {
    const mix = requestMix(1000, 10);
    expect(() => writeLoadFile(dir, "bad", { requests: mix.requests, order: mix.order.slice(1) })).toThrow(/differ in number/);
  });
});

describe("goLoadArgs", () => {
  it("asks for a closed loop unless a rate is given", () => {
    const base = { port: 9001, requestsFile: "/tmp/r.json", seconds: 6, concurrency: 64, connections: 4 };
    expect(goLoadArgs(base)).toEqual(["-addr", "127.0.0.1:9001", "-requests", "/tmp/r.json", "-seconds", "6", "-concurrency", "64", "-connections", "4"]);
    expect(goLoadArgs({ ...base, rps: 12_345.6 })).toContain("12346");
  });
});
