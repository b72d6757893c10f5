// Plain-text tables in the style of `kubectl get`: left-aligned columns
// separated by three spaces.
export function formatTable(header: string[], rows: string[][], indent = ""): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all
    .map((r) => indent + widths.map((w, i) => (r[i] ?? "").padEnd(w)).join("   ").trimEnd())
    .join("\n");
}
