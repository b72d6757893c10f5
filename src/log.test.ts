import { describe, expect, it } from "vitest";
import { createLogger, type Fields, type Level } from "./log.ts";

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
