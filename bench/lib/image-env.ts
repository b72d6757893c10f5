// The environment keyward's image sets for every process it runs (the `ENV` lines of the
// Dockerfile's last stage), so a bench can start keyward as its pods run it.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "./proc.ts";

/** `NAME=value` of each `ENV` line of the Dockerfile's last stage. */
export function imageEnv(dockerfile = readFileSync(join(repoRoot, "Dockerfile"), "utf8")): Record<string, string> {
  const lastStage = dockerfile.split(/^FROM /m).at(-1) ?? "";
  const env: Record<string, string> = {};
  for (const m of lastStage.matchAll(/^ENV\s+(.+)$/gm)) {
    for (const pair of m[1]!.trim().split(/\s+/)) {
      const eq = pair.indexOf("=");
      if (eq > 0) env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}
