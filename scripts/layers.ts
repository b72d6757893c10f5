// The layer map of src/ as docs/architecture.md#layers shows it: the table is
// rendered from LAYERS and SIDEWAYS in eslint.config.js, the mermaid diagram from
// the folders' real import graph, grouped by layer. scripts/layers-doc.ts writes
// both into the doc; test/unit/layers.test.ts fails when the doc differs.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { LAYERS, SIDEWAYS, unitOf } from "../eslint.config.js";

export const ROOT = resolve(import.meta.dirname, "..");
export const SRC = join(ROOT, "src");
export const ARCHITECTURE_DOC = join(ROOT, "docs/architecture.md");

/** unit -> the units it imports -> the files (relative to the repository) that do. */
export type FolderGraph = Map<string, Map<string, string[]>>;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((name) => {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) return sourceFiles(p);
      return name.endsWith(".ts") ? [p] : [];
    });
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s[^;]*?\sfrom\s*["'](\.[^"']+)["']|import\(\s*["'](\.[^"']+)["']\s*\)/g;
const TEST_FILE = /\.test(-support)?\.ts$/;

/**
 * The units' relative imports (type-only, re-exports and `import()` included) of every .ts
 * file under `src`; with `tests: false`, of the code only (no `*.test.ts`, `*.test-support.ts`).
 */
export function folderGraph(options: { tests: boolean }, src: string = SRC): FolderGraph {
  const graph: FolderGraph = new Map();
  for (const file of sourceFiles(src)) {
    if (!options.tests && TEST_FILE.test(file)) continue;
    const from = unitOf(file, src);
    if (from === undefined) continue;
    for (const m of readFileSync(file, "utf8").matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? "";
      const to = unitOf(resolve(dirname(file), spec), src);
      if (to === undefined || to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string[]>();
      graph.set(from, edges);
      edges.set(to, [...(edges.get(to) ?? []), relative(ROOT, file)]);
    }
  }
  return graph;
}

/** The layer table of docs/architecture.md, rendered from LAYERS and SIDEWAYS. */
export function renderLayerTable(): string {
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

/** Words mermaid reads as syntax, which a unit's node id must not be. */
const MERMAID_WORDS = new Set(["end", "graph", "flowchart", "subgraph", "direction", "style", "class", "classDef", "click", "linkStyle", "default"]);

/**
 * The mermaid flowchart of the layer map: one subgraph per layer, top to bottom, holding its
 * units; one arrow per unit that imports another, dotted into the base layer (which nearly
 * everything imports). Units and arrows follow LAYERS' order, so the text is deterministic.
 */
export function renderLayerDiagram(graph: FolderGraph): string {
  const order = LAYERS.flatMap((l, layer) => Object.keys(l.units).map((unit) => ({ unit, layer })));
  const position = new Map(order.map((u, i) => [u.unit, i]));
  const layerOf = new Map(order.map((u) => [u.unit, u.layer]));
  const base = LAYERS.length - 1;
  const lines = ["flowchart TB"];
  LAYERS.forEach((l, i) => {
    lines.push(`  subgraph layer${i + 1}["${i + 1} ${l.layer}"]`);
    for (const unit of Object.keys(l.units)) {
      if (MERMAID_WORDS.has(unit)) throw new Error(`src/${unit} cannot be a mermaid node id; name the unit otherwise or prefix the ids`);
      lines.push(`    ${unit}["${existsSync(join(SRC, unit)) ? `src/${unit}/` : `src/${unit}.ts`}"]`);
    }
    lines.push("  end");
  });
  const rank = (unit: string): number => {
    const p = position.get(unit);
    if (p === undefined) throw new Error(`src/${unit} is not on the layer map (eslint.config.js LAYERS)`);
    return p;
  };
  const froms = [...graph.keys()].sort((a, b) => rank(a) - rank(b));
  for (const from of froms) {
    const tos = [...(graph.get(from)?.keys() ?? [])].sort((a, b) => rank(a) - rank(b));
    for (const to of tos) lines.push(`  ${from} ${layerOf.get(to) === base ? "-.->" : "-->"} ${to}`);
  }
  return lines.join("\n");
}

const TABLE_START = "| layer | unit |";
const DIAGRAM_START = "```mermaid\nflowchart TB\n";
const DIAGRAM_END = "\n```";

const SECTION = "\n## Layers\n";

/** Where the block that begins with `start` in the doc's Layers section is (up to `end`), or undefined. */
function block(doc: string, start: string, end: string): { from: number; to: number } | undefined {
  const section = doc.indexOf(SECTION);
  if (section === -1) return undefined;
  const from = doc.indexOf(start, section);
  if (from === -1) return undefined;
  const stop = doc.indexOf(end, from + start.length - 1);
  return { from, to: stop === -1 ? doc.length : stop };
}

/** The layer table docs/architecture.md shows ("" when it has none). */
export function docLayerTable(doc: string): string {
  const at = block(doc, TABLE_START, "\n\n");
  return at ? doc.slice(at.from, at.to).trimEnd() : "";
}

/** The mermaid source of the layer diagram docs/architecture.md shows ("" when it has none). */
export function docLayerDiagram(doc: string): string {
  const at = block(doc, DIAGRAM_START, DIAGRAM_END);
  return at ? doc.slice(at.from + "```mermaid\n".length, at.to) : "";
}

/** The doc with its layer table and diagram replaced by the rendered ones (both must be present). */
export function withRenderedLayers(doc: string, table: string, diagram: string): string {
  const t = block(doc, TABLE_START, "\n\n");
  const d = block(doc, DIAGRAM_START, DIAGRAM_END);
  if (!t || !d) throw new Error("docs/architecture.md#layers lacks the layer table or the ```mermaid block (flowchart TB) to rewrite");
  const parts = [
    { ...t, text: table },
    { from: d.from + "```mermaid\n".length, to: d.to, text: diagram },
  ].sort((a, b) => b.from - a.from);
  let out = doc;
  for (const p of parts) out = out.slice(0, p.from) + p.text + out.slice(p.to);
  return out;
}
