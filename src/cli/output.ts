// What the reporting commands print: a table (as kubectl get), JSON, or CSV
// (RFC 4180: fields with a comma, quote or line break are quoted).
import { formatTable } from "./table.ts";

export type OutputFormat = "table" | "json" | "csv";
export const OUTPUT_FORMATS: readonly OutputFormat[] = ["table", "json", "csv"];

export interface Column<R> {
  header: string;
  cell(row: R): string;
}

export function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** Rows as a table or CSV by the columns, or as JSON (`json` is the document printed). */
export function render<R>(format: OutputFormat, columns: readonly Column<R>[], rows: readonly R[], json: unknown): string {
  switch (format) {
    case "json":
      return `${JSON.stringify(json, null, 2)}\n`;
    case "csv":
      return [columns.map((c) => c.header), ...rows.map((r) => columns.map((c) => c.cell(r)))].map((line) => `${line.map(csvField).join(",")}\r\n`).join("");
    case "table":
      return rows.length ? `${formatTable(columns.map((c) => c.header), rows.map((r) => columns.map((c) => c.cell(r))))}\n` : "no requests on record for this filter\n";
  }
}

/** An instant as RFC 3339 UTC, to the second. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}
