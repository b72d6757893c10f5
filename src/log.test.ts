import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { batchedSink, createLogger, type Fields, type Level } from "./log.ts";

function pair(level: Level = "debug", base: Fields = {}) {
  const lines: string[] = [];
  let t = Date.UTC(2026, 5, 1, 12, 0, 0, 123);
  const root = createLogger({ level, sink: (l) => lines.push(l), now: () => new Date(t++) });
  const log = Object.keys(base).length ? root.child(base) : root;
  return { log, lines };
}

describe("prepared log lines", () => {
  const cases: [string, Fields, Fields | undefined, Fields?][] = [
    ["plain", { front: "grpc", status: 401, reason: "unknown_key", scopes: ["a", 'b"c'] }, { method: "GET", host: undefined, path: "/x\n" }],
    ["no more fields", { a: 1 }, undefined],
    ["empty more fields", { a: 1 }, {}],
    ["a field given again", { reason: "ok", b: 2 }, { reason: "cancelled", c: 3 }],
    ["an error among the fixed fields", { err: new Error("boom", { cause: new Error("deeper") }) }, { x: 1 }],
    ["an error among the others", { a: 1 }, { err: new Error("late") }],
    ["a field named ts", { ts: "mine" }, { a: 1 }],
    ["index-like keys", { 1: "one", a: "a" }, { 0: "zero" }],
    ["an index-like key later", { a: "a" }, { 7: "seven" }],
    ["nested and odd values", { o: { x: [1, null] }, n: Number.NaN, f: () => 1 }, { big: 1e21, neg: -0, s: "\u2028" }],
    ["base fields", { front: "http" }, { queue: "q", path: "/" }, { queue: "base", worker: 2 }],
  ];
  for (const [what, fields, more, base] of cases) {
    it(`writes what a direct call writes: ${what}`, () => {
      const a = pair("debug", base);
      const b = pair("debug", base);
      a.log.prepare("info", "check", fields)(more);
      a.log.prepare("info", "check", fields)(more);
      b.log.info("check", more ? { ...fields, ...more } : fields);
      b.log.info("check", more ? { ...fields, ...more } : fields);
      expect(a.lines).toEqual(b.lines);
      expect(a.lines).toHaveLength(2);
    });
  }

  it("writes nothing below the logger's level", () => {
    const { log, lines } = pair("info");
    log.prepare("debug", "check", { a: 1 })({ b: 2 });
    expect(lines).toEqual([]);
  });
});

describe("the batched stderr sink", () => {
  function harness(maxBytes = 64) {
    const writes: string[] = [];
    const turns: (() => void)[] = [];
    const b = batchedSink((c) => writes.push(c), (f) => turns.push(f), maxBytes);
    const endTurn = (): void => {
      for (const f of turns.splice(0)) f();
    };
    return { ...b, writes, endTurn };
  }

  it("writes the lines of one turn together, in order, at the end of the turn", () => {
    const h = harness(1000);
    h.sink("one");
    h.sink("two");
    expect(h.writes).toEqual([]);
    h.endTurn();
    h.sink("three");
    h.endTurn();
    expect(h.writes).toEqual(["one\ntwo\n", "three\n"]);
  });

  it("keeps every write within maxBytes, whole lines only; a longer line goes alone", () => {
    const h = harness(64);
    const lines = Array.from({ length: 40 }, (_, i) => `line ${i} ${"é".repeat(i % 9)}`);
    const long = "x".repeat(100);
    for (const l of [...lines.slice(0, 20), long, ...lines.slice(20)]) h.sink(l);
    h.endTurn();
    expect(h.writes.join("")).toBe([...lines.slice(0, 20), long, ...lines.slice(20)].map((l) => `${l}\n`).join(""));
    for (const w of h.writes) {
      expect(w.endsWith("\n")).toBe(true);
      if (w !== `${long}\n`) expect(Buffer.byteLength(w)).toBeLessThanOrEqual(64);
    }
    expect(h.writes).toContain(`${long}\n`);
    expect(h.writes.length).toBeLessThan(lines.length);
  });

  it("shares one sink per stream, so the decision log and keyward's log keep their order on stderr", () => {
    const script = `
      import { createLogger, streamSink } from ${JSON.stringify(new URL("./log.ts", import.meta.url).href)};
      import { decisionLogSink } from ${JSON.stringify(new URL("./usage/decisionlog.ts", import.meta.url).href)};
      const log = createLogger();
      const decisions = decisionLogSink("stderr");
      const out = decisionLogSink("stdout");
      for (let i = 0; i < 200; i++) {
        log.info("line", { i });
        decisions(JSON.stringify({ decision: i }));
        out(JSON.stringify({ decision: i }));
      }
      process.exitCode = streamSink("stderr") === decisions && streamSink("stdout") === out ? 0 : 9;
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(r.status).toBe(0);
    const err = r.stderr.trim().split("\n").map((l) => JSON.parse(l) as { i?: number; decision?: number });
    const expected: unknown[] = [];
    for (let i = 0; i < 200; i++) expected.push(expect.objectContaining({ i }), { decision: i });
    expect(err).toEqual(expected);
    const lines = r.stdout.trim().split("\n");
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual(Array.from({ length: 200 }, (_, i) => ({ decision: i })));
  });

  it("writes what is pending when the process exits", () => {
    const script = `
      import { createLogger } from ${JSON.stringify(new URL("./log.ts", import.meta.url).href)};
      const log = createLogger();
      for (let i = 0; i < 300; i++) log.info("line", { i });
      process.exit(3);
    `;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(r.status).toBe(3);
    const got = r.stderr.trim().split("\n").map((l) => (JSON.parse(l) as { i: number }).i);
    expect(got).toEqual(Array.from({ length: 300 }, (_, i) => i));
  });
});
