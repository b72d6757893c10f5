// Renders the layer map of docs/architecture.md#layers: the table from LAYERS and
// SIDEWAYS in eslint.config.js, the mermaid diagram from src/'s import graph.
//   node scripts/layers-doc.ts           prints both
//   node scripts/layers-doc.ts --write   rewrites them in docs/architecture.md (make docs)
// test/unit/layers.test.ts fails while the doc differs from what this renders.
import { readFileSync, writeFileSync } from "node:fs";
import { ARCHITECTURE_DOC, folderGraph, renderLayerDiagram, renderLayerTable, withRenderedLayers } from "./layers.ts";

const table = renderLayerTable();
const diagram = renderLayerDiagram(folderGraph({ tests: false }));
const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--write") {
  const doc = readFileSync(ARCHITECTURE_DOC, "utf8");
  const next = withRenderedLayers(doc, table, diagram);
  if (next !== doc) writeFileSync(ARCHITECTURE_DOC, next);
  console.log(next === doc ? "docs/architecture.md#layers is up to date" : "docs/architecture.md#layers rewritten");
} else if (args.length === 0) {
  console.log(`${table}\n\n\`\`\`mermaid\n${diagram}\n\`\`\``);
} else {
  console.error("usage: node scripts/layers-doc.ts [--write]");
  process.exitCode = 2;
}
