// The layer map of src/ (LAYERS and SIDEWAYS in eslint.config.js) is a rule:
// eslint refuses an import against it, the folders' import graph has no cycle,
// and docs/architecture.md shows the same map, as a table and as a diagram of the
// real import graph (both rendered by scripts/layers.ts).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ESLint } from "eslint";
import tseslint from "typescript-eslint";
import { describe, expect, it } from "vitest";
import { allowedImports, LAYERS, SIDEWAYS, unitOf } from "../../eslint.config.js";
import { ARCHITECTURE_DOC, docLayerDiagram, docLayerTable, folderGraph, renderLayerDiagram, renderLayerTable, ROOT, SRC, withRenderedLayers } from "../../scripts/layers.ts";

const UNITS = LAYERS.flatMap((l) => Object.keys(l.units));

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

describe("layer map", () => {
  // The first lint loads every rule of the project's config (typescript-eslint's among them): about
  // 2 s of module loading on a quiet core, well past the default 5 s on a loaded one.
  it("eslint (the project's own config, as make lint runs it) refuses an import into a higher layer", { timeout: 30_000 }, async () => {
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
    const graph = folderGraph({ tests: true });
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
    const doc = readFileSync(ARCHITECTURE_DOC, "utf8");
    expect(docLayerTable(doc), `docs/architecture.md#layers should hold (node scripts/layers-doc.ts --write):\n${renderLayerTable()}`).toBe(renderLayerTable());
  });

  it("docs/architecture.md's diagram is the folders' import graph", () => {
    const doc = readFileSync(ARCHITECTURE_DOC, "utf8");
    const diagram = renderLayerDiagram(folderGraph({ tests: false }));
    expect(docLayerDiagram(doc), "docs/architecture.md#layers: run node scripts/layers-doc.ts --write").toBe(diagram);
    // rewriting the doc changes nothing in it
    expect(withRenderedLayers(doc, renderLayerTable(), diagram)).toBe(doc);
  });

  it("the diagram follows the imports: one more import is one more arrow, tests left out", () => {
    const src = mkdtempSync(join(tmpdir(), "keyward-layers-"));
    try {
      mkdirSync(join(src, "cli"));
      mkdirSync(join(src, "keys"));
      writeFileSync(join(src, "cli/scan.ts"), 'import { generateKey } from "../keys/keymaterial.ts";\nimport type { Logger } from "../log.ts";\n');
      writeFileSync(join(src, "cli/scan.test.ts"), 'import { KeywardError } from "../errors.ts";\n');
      writeFileSync(join(src, "keys/keymaterial.ts"), 'export const later = () => import("../errors.ts");\n');
      const graph = (tests: boolean): string[] => [...folderGraph({ tests }, src)].flatMap(([from, to]) => [...to.keys()].map((t) => `${from} -> ${t}`)).sort();
      expect(graph(false)).toEqual(["cli -> keys", "cli -> log", "keys -> errors"]);
      expect(graph(true)).toEqual(["cli -> errors", "cli -> keys", "cli -> log", "keys -> errors"]);
      const arrows = renderLayerDiagram(folderGraph({ tests: false }, src))
        .split("\n")
        .filter((l) => l.includes("->"));
      expect(arrows).toEqual(["  cli --> keys", "  cli -.-> log", "  keys -.-> errors"]);
    } finally {
      rmSync(src, { recursive: true, force: true });
    }
  });

  it("the diagram shows every unit of the map once, in its layer's box", () => {
    const diagram = renderLayerDiagram(new Map());
    for (const [i, l] of LAYERS.entries()) {
      const box = diagram.slice(diagram.indexOf(`subgraph layer${i + 1}[`), diagram.indexOf("  end", diagram.indexOf(`subgraph layer${i + 1}[`)));
      for (const unit of Object.keys(l.units)) expect(box, unit).toMatch(new RegExp(`\\n    ${unit}\\["src/${unit}(/|\\.ts)"\\]`));
    }
    expect(diagram).toContain('analytics["src/analytics/"]');
  });
});
