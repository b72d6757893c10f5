// `keyward scan`: finds keyward API keys in files, offline. A candidate must match
// the key format and carry a valid checksum, so random strings are not reported.
// Reports the key id (derived from the hash), never the key.
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { KEY_PATTERN, hashKey, keyIdFromHash, verifyKey } from "../keys/keymaterial.ts";

export interface Finding {
  file: string;
  line: number;
  prefix: string;
  keyId: string;
}

const SKIP_DIRS = new Set(["node_modules", ".git", "dist", "coverage"]);

/** Findings in one text. */
export function scanText(text: string, file: string): Finding[] {
  const out: Finding[] = [];
  const lines = text.split("\n");
  lines.forEach((lineText, i) => {
    for (const m of lineText.matchAll(KEY_PATTERN)) {
      const key = m[0];
      if (!verifyKey(key)) continue;
      const prefix = m[1] ?? "";
      out.push({ file, line: i + 1, prefix, keyId: keyIdFromHash(hashKey(key), prefix) });
    }
  });
  return out;
}

/** Scans files and directories (recursively, skipping node_modules and .git). */
export async function scanPaths(paths: string[]): Promise<Finding[]> {
  const out: Finding[] = [];
  const visit = async (p: string): Promise<void> => {
    const st = await stat(p);
    if (st.isDirectory()) {
      for (const entry of await readdir(p)) if (!SKIP_DIRS.has(entry)) await visit(join(p, entry));
      return;
    }
    if (!st.isFile() || st.size > 10 * 1024 * 1024) return;
    const buf = await readFile(p);
    if (buf.includes(0)) return; // binary
    out.push(...scanText(buf.toString("utf8"), p));
  };
  for (const p of paths) await visit(p);
  return out;
}
