// What keyward's image sets and runs for every process (the Dockerfile's last stage): its `ENV`
// lines, its ENTRYPOINT, and the application directory it runs in, so a bench or a test can
// start keyward as its pods run it.
import { mkdirSync, readFileSync, symlinkSync } from "node:fs";
import { dirname, join } from "node:path";
import { build, type BuildResult } from "../../scripts/build.ts";
import { repoRoot } from "./proc.ts";

const lastStage = (dockerfile: string): string => dockerfile.split(/^FROM /m).at(-1) ?? "";
const readDockerfile = (): string => readFileSync(join(repoRoot, "Dockerfile"), "utf8");

/** `NAME=value` of each `ENV` line of the Dockerfile's last stage. */
export function imageEnv(dockerfile = readDockerfile()): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of lastStage(dockerfile).matchAll(/^ENV\s+(.+)$/gm)) {
    for (const pair of m[1]!.trim().split(/\s+/)) {
      const eq = pair.indexOf("=");
      if (eq > 0) env[pair.slice(0, eq)] = pair.slice(eq + 1);
    }
  }
  return env;
}

/** The exec form of the last stage's ENTRYPOINT, e.g. `["node", "dist/main.js"]`. */
export function imageEntrypoint(dockerfile = readDockerfile()): string[] {
  const m = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(lastStage(dockerfile));
  if (!m) throw new Error("the Dockerfile's last stage has no ENTRYPOINT in exec form");
  return JSON.parse(m[1]!) as string[];
}

export interface ImageApp {
  /** The application directory, as the image's WORKDIR. */
  dir: string;
  /** The script the image's ENTRYPOINT runs with `node`, absolute. */
  main: string;
  build: BuildResult;
}

/**
 * The image's application directory in `dir` (which must not exist yet or be empty): keyward
 * built into dist/ (scripts/build.ts, as the image's build stage runs it), and this checkout's
 * package.json, node_modules, protos/ and crds/ linked where the image copies them.
 */
export function imageApp(dir: string): ImageApp {
  const [node, script] = imageEntrypoint();
  if (node !== "node" || !script) throw new Error(`the image's ENTRYPOINT is not \`node SCRIPT\`: ${JSON.stringify(imageEntrypoint())}`);
  mkdirSync(dir, { recursive: true });
  const result = build(join(dir, dirname(script)));
  for (const name of ["package.json", "node_modules", "protos", "crds"]) symlinkSync(join(repoRoot, name), join(dir, name));
  return { dir, main: join(dir, script), build: result };
}
