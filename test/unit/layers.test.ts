// The layer map of src/ (LAYERS and SIDEWAYS in eslint.config.js) is a rule:
// eslint refuses an import against it, the folders' import graph has no cycle,
// and docs/architecture.md shows the same map.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { ESLint } from "eslint";
import tseslint from "typescript-eslint";
import { describe, expect, it } from "vitest";
import { allowedImports, LAYERS, SIDEWAYS, unitOf } from "../../eslint.config.js";

const ROOT = resolve(import.meta.dirname, "../..");
const SRC = join(ROOT, "src");
const UNITS = LAYERS.flatMap((l) => Object.keys(l.units));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return name.endsWith(".ts") ? [p] : [];
  });
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^;]*?\sfrom\s*["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g;

/** unit -> the units it imports (relative imports of every .ts file under src/, tests included). */
function folderGraph(): Map<string, Map<string, string[]>> {
  const graph = new Map<string, Map<string, string[]>>();
  for (const file of sourceFiles(SRC)) {
    const from = unitOf(file);
    if (from === undefined) continue;
    for (const m of readFileSync(file, "utf8").matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? "";
      const to = unitOf(resolve(dirname(file), spec));
      if (to === undefined || to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string[]>();
      graph.set(from, edges);
      edges.set(to, [...(edges.get(to) ?? []), relative(ROOT, file)]);
    }
  }
  return graph;
}

/** One cycle of the graph as a path a -> ... -> a, or undefined. */
function findCycle(graph: ReadonlyMap<string, Iterable<string>>): string[] | undefined {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (n: string): string[] | undefined => {
    if (state.get(n) === "done") return undefined;
    if (state.get(n) === "open") return [...stack.slice(stack.indexOf(n)), n];
    state.set(n, "open");
    stack.push(n);
    for (const next of graph.get(n) ?? []) {
      const c = visit(next);
      if (c) return c;
    }
    stack.pop();
    state.set(n, "done");
    return undefined;
  };
  for (const n of graph.keys()) {
    const c = visit(n);
    if (c) return c;
  }
  return undefined;
}

/** The layer table of docs/architecture.md, as rendered from LAYERS and SIDEWAYS. */
function renderLayerTable(): string {
  const rows = ["| layer | unit | what it is | may import |", "| --- | --- | --- | --- |"];
  LAYERS.forEach((l, i) => {
    for (const [unit, what] of Object.entries(l.units)) {
      const path = existsSync(join(SRC, unit)) ? `src/${unit}/` : `src/${unit}.ts`;
      const below = i === LAYERS.length - 1 ? "nothing else in src/" : i === LAYERS.length - 2 ? `layer ${i + 2}` : `layers ${i + 2}–${LAYERS.length}`;
      const side = SIDEWAYS[unit] ?? [];
      const may = side.length ? `${i === LAYERS.length - 1 ? "" : `${below}, and `}${side.map((s) => `\`${s}\``).join(", ")} of its own layer` : below;
      rows.push(`| ${i + 1} ${l.layer} | \`${path}\` | ${what} | ${may} |`);
    }
  });
  return rows.join("\n");
}

describe("layer map", () => {
  it("eslint (the project's own config, as make lint runs it) refuses an import into a higher layer", async () => {
    const eslint = new ESLint({ cwd: ROOT, overrideConfig: tseslint.configs.disableTypeChecked });
    const [wrong] = await eslint.lintText('import { Reconciler } from "../operator/reconciler.ts";\nexport { Reconciler };\n', { filePath: join(SRC, "index/x.ts") });
    const layerErrors = wrong?.messages.filter((m) => m.ruleId === "keyward/layers") ?? [];
    expect(layerErrors).toHaveLength(1);
    expect(layerErrors[0]?.severity).toBe(2);
    expect(layerErrors[0]?.message).toContain("src/index may not import src/operator");

    // type-only imports, re-exports and dynamic imports count as well; a role may not import another role
    const [sideways] = await eslint.lintText(
      'import type { KeyIndex } from "../index/keys.ts";\nexport { startUsage } from "../usage/service.ts";\nexport type { KeyIndex };\nexport const later = () => import("../authz/service.ts");\n',
      { filePath: join(SRC, "operator/x.ts") },
    );
    expect(sideways?.messages.filter((m) => m.ruleId === "keyward/layers").map((m) => m.line)).toEqual([2, 4]);

    const [unmapped] = await eslint.lintText('import { KeywardError } from "../errors.ts";\nexport { KeywardError };\n', { filePath: join(SRC, "newfolder/x.ts") });
    expect(unmapped?.messages.filter((m) => m.ruleId === "keyward/layers").map((m) => m.message)).toEqual([expect.stringContaining("src/newfolder is not on the layer map") as string]);
  });

  it("every folder and top-level module of src/ is on the map, and nothing else", () => {
    const present = new Set(readdirSync(SRC).flatMap((name) => unitOf(join(SRC, name)) ?? []));
    expect([...present].sort()).toEqual([...UNITS].sort());
  });

  it("the map itself is acyclic: sideways imports stay inside their layer and form no cycle", () => {
    const sideways = new Map(Object.entries(SIDEWAYS));
    for (const [unit, targets] of sideways) {
      const layer = LAYERS.find((l) => unit in l.units);
      expect(layer, unit).toBeDefined();
      for (const t of targets) expect(Object.keys(layer?.units ?? {}), `${unit} -> ${t}`).toContain(t);
    }
    expect(findCycle(sideways)).toBeUndefined();
  });

  it("the folders of src/ import each other along the map only, with no cycle", () => {
    const graph = folderGraph();
    const wrong: string[] = [];
    for (const [from, edges] of graph) {
      const allowed = allowedImports(from);
      for (const [to, files] of edges) if (!allowed?.has(to)) wrong.push(`${from} -> ${to} (${files.join(", ")})`);
    }
    expect(wrong).toEqual([]);
    expect(findCycle(new Map([...graph].map(([k, v]) => [k, [...v.keys()]])))).toBeUndefined();
  });

  it("finds a cycle when there is one (the check above can fail)", () => {
    expect(findCycle(new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]]]))).toEqual(["a", "b", "c", "a"]);
  });

  it("docs/architecture.md shows the same map", () => {
    const doc = readFileSync(join(ROOT, "docs/architecture.md"), "utf8");
    const start = doc.indexOf("| layer | unit |");
    const end = doc.indexOf("\n\n", start);
    const table = start === -1 ? "" : doc.slice(start, end === -1 ? undefined : end).trimEnd();
    expect(table, `docs/architecture.md#layers should hold:\n${renderLayerTable()}`).toBe(renderLayerTable());
  });
});
