// Real kubectl (built into the tools cache by scripts/kubectl-build.sh) for the
// suites that drive what users type. Always asynchronous: the operator under test
// runs in the same process and must keep running while kubectl waits on it.
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { run, type Run } from "./run.ts";

export { run, type Run };
const cache = process.env.KEYWARD_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "keyward");
/** The directory holding kubectl. */
export const kubectlDir = join(cache, "tools", "bin");
export const kubectlPath = join(kubectlDir, "kubectl");

/** kubectl with only the given kubeconfig (no ~/.kube/config, no ambient KUBECONFIG). */
export function kubectl(kubeconfig: string, args: readonly string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  if (!existsSync(kubectlPath)) throw new Error(`kubectl is not built: run make kubectl (expected ${kubectlPath})`);
  return run(kubectlPath, args, { input: opts.input, env: { PATH: process.env.PATH, HOME: process.env.HOME, ...opts.env, KUBECONFIG: kubeconfig } });
}

/** The columns of a `kubectl get` table: header names, split where kubectl puts 3+ spaces. */
export function tableOf(text: string): { header: string[]; rows: Record<string, string>[] } {
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const head = lines[0] ?? "";
  const starts: number[] = [];
  for (const m of head.matchAll(/(?:^|\s{3,})(\S.*?)(?=\s{3,}|$)/g)) starts.push(m.index + (m[0].length - (m[1] ?? "").length));
  const cut = (line: string): string[] => starts.map((s, i) => line.slice(s, starts[i + 1] ?? line.length).trim());
  const header = cut(head);
  return { header, rows: lines.slice(1).map((l) => Object.fromEntries(cut(l).map((v, i) => [header[i] ?? String(i), v]))) };
}
