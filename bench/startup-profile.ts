// Where a role's start-up time goes: one start under `node --cpu-prof`, the profile
// cut at Ready and reduced to milliseconds per place (self time, by package or
// folder of src/) and per step (inclusive: module loading, type stripping, the
// lists and their JSON, the index build, ...).
//
//   node bench/startup-profile.ts --kubeconfig FILE [--role authz] [--keys 10000]
//
// The keys must be seeded (bench/startup.ts seeds them into startup-<keys>).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { CallFrame, CpuProfile } from "./profile.ts";
import { startOnce, type Role, type StartupRun } from "./startup.ts";

export interface StartupProfile {
  role: Role;
  keys: number;
  run: StartupRun;
  /** Wall time from the profile's start to Ready, and how much of it was idle (waiting on the apiserver or I/O). */
  wallMs: number;
  idleMs: number;
  /** Self time by place, busiest first. */
  places: { place: string; ms: number }[];
  /** Inclusive time of named steps (a sample counts once per step). */
  steps: { step: string; ms: number }[];
}

/** Where a frame's code lives: a package, a folder of src/, a part of Node, or V8's own entries. */
function placeOf(f: CallFrame): string {
  if (f.functionName.startsWith("(")) return f.functionName;
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f.url);
  if (pkg) return pkg[1]!;
  const src = /\/(src|bench|test)\/(?:([^/]+)\/)?[^/]+\.ts$/.exec(f.url);
  if (src) return src[2] ? `${src[1]}/${src[2]}/` : `${src[1]}/`;
  if (/internal\/modules|^node:internal\/vm/.test(f.url)) return "node: module loader";
  if (f.url.startsWith("node:")) return "node: other internals";
  if (f.url === "" && f.functionName === "parse") return "JSON.parse";
  return f.url === "" ? `native: ${f.functionName || "(anonymous)"}` : f.url;
}

const STEPS: [string, (f: CallFrame) => boolean][] = [
  ["loading modules (resolve, read, strip types, compile, evaluate)", (f) => /internal\/modules\//.test(f.url)],
  ["TypeScript type stripping (amaro)", (f) => /amaro|strip/i.test(f.url) || /stripTypeScript/i.test(f.functionName)],
  ["JSON.parse of list pages and watch events", (f) => f.url === "" && f.functionName === "parse"],
  ["informer relist (transform, cache, handlers)", (f) => f.functionName === "relist" && f.url.endsWith("src/k8s/informer.ts")],
  ["list requests (kubeListWatch.list)", (f) => f.functionName === "list" && f.url.endsWith("src/k8s/informer.ts")],
  ["key index (KeyIndex.apply)", (f) => f.functionName === "apply" && f.url.endsWith("src/index/keys.ts")],
  ["views (transform on arrival)", (f) => /src\/(authz\/views|usage\/view|operator\/view|operator\/secrets)\.ts$/.test(f.url)],
];

export function summarizeStartup(p: CpuProfile, untilMs: number): Omit<StartupProfile, "role" | "keys" | "run"> {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let t = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const d = p.timeDeltas[i] ?? 0;
    t += d;
    if (t / 1000 > untilMs) break;
    self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + d);
  }
  const places = new Map<string, number>();
  let idle = 0;
  let wall = 0;
  for (const [id, us] of self) {
    wall += us;
    const f = byId.get(id)!.callFrame;
    if (f.functionName === "(idle)") idle += us;
    else places.set(placeOf(f), (places.get(placeOf(f)) ?? 0) + us);
  }
  const steps = STEPS.map(([step, test]) => {
    let us = 0;
    for (const [id, s] of self) {
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        if (test(byId.get(cur)!.callFrame)) {
          us += s;
          break;
        }
      }
    }
    return { step, ms: Math.round(us / 1000) };
  });
  return {
    wallMs: Math.round(wall / 1000),
    idleMs: Math.round(idle / 1000),
    places: [...places].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([place, us]) => ({ place, ms: Math.round(us / 1000) })),
    steps,
  };
}

export async function profileStartup(kubeconfig: string, role: Role, keys: number): Promise<StartupProfile> {
  const dir = mkdtempSync(join(tmpdir(), "keyward-startup-prof-"));
  try {
    const run = await startOnce(kubeconfig, role, keys, ["--cpu-prof", `--cpu-prof-dir=${dir}`]);
    const file = readdirSync(dir).find((f) => f.endsWith(".cpuprofile"));
    if (!file) throw new Error("no CPU profile written");
    const p = JSON.parse(readFileSync(join(dir, file), "utf8")) as CpuProfile;
    return { role, keys, run, ...summarizeStartup(p, run.firstAllowedMs ?? run.readyMs) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { kubeconfig: { type: "string" }, role: { type: "string", default: "authz" }, keys: { type: "string", default: "10000" } } });
  if (!values.kubeconfig) throw new Error("--kubeconfig is required");
  process.stdout.write(JSON.stringify(await profileStartup(values.kubeconfig, values.role as Role, Number(values.keys)), null, 2) + "\n");
}
