// The chart's README lists every value of values.yaml, and nothing else: each key, or
// the key of the Kubernetes object or list that holds it, has a row in its Values table.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const chart = join(resolve(import.meta.dirname, "..", ".."), "charts", "keyward");

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v) && Object.keys(v).length > 0;

/** Every key path of a values tree: maps are walked; lists, empty maps and scalars end a path. */
function keyPaths(v: unknown, prefix: string[] = []): string[][] {
  if (!isMap(v)) return [];
  return Object.entries(v).flatMap(([k, c]) => [[...prefix, k], ...keyPaths(c, [...prefix, k])]);
}

describe("charts/keyward/README.md", () => {
  const values = parse(readFileSync(join(chart, "values.yaml"), "utf8")) as Record<string, unknown>;
  const readme = readFileSync(join(chart, "README.md"), "utf8");
  const table = readme.slice(readme.indexOf("\n## Values\n"));
  const listed = [...table.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1] ?? "");
  const paths = keyPaths(values);
  const all = new Set(paths.map((p) => p.join(".")));
  const leaves = paths.filter((p) => !isMap(p.reduce<unknown>((node, k) => (node as Record<string, unknown>)[k], values)));

  it("has a Values table", () => {
    expect(listed.length).toBeGreaterThan(50);
  });

  it("lists every value, or the object holding it", () => {
    const missing = leaves.map((p) => p.join(".")).filter((leaf) => !listed.some((k) => leaf === k || leaf.startsWith(`${k}.`)));
    expect(missing).toEqual([]);
  });

  it("lists only keys values.yaml has, each once", () => {
    expect(listed.filter((k) => !all.has(k))).toEqual([]);
    expect(listed.filter((k, i) => listed.indexOf(k) !== i)).toEqual([]);
  });
});
