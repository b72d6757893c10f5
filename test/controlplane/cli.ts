// keyward's local control plane, for `make cluster`, `make cluster-down` and `make demo`.
//
//   node test/controlplane/cli.ts build        build the binaries into the cache (once)
//   node test/controlplane/cli.ts up           start in the background, print the kubeconfig path
//   node test/controlplane/cli.ts up --foreground   run in this terminal until Ctrl-C
//   node test/controlplane/cli.ts down         stop it; no process is left behind
//   node test/controlplane/cli.ts status       print the kubeconfig path if it is running
//
// State lives in $KEYWARD_CACHE_DIR/cluster (default ~/.cache/keyward/cluster).

import { spawn } from "node:child_process";
import { existsSync, openSync, readFileSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { ControlPlane, alive, controlPlaneBinDir, type ControlPlaneState } from "./controlplane.ts";

const cacheRoot = process.env.KEYWARD_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "keyward");
const stateDir = join(cacheRoot, "cluster");
const stateFile = join(stateDir, "state.json");

interface SupervisorState extends ControlPlaneState {
  supervisorPid: number;
}

const say = (line: string): void => {
  process.stderr.write(line.startsWith("[") ? `${line}\n` : `[cluster] ${line}\n`);
};

function readState(): SupervisorState | undefined {
  if (!existsSync(stateFile)) return undefined;
  try {
    return JSON.parse(readFileSync(stateFile, "utf8")) as SupervisorState;
  } catch {
    return undefined;
  }
}

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
}

async function foreground(): Promise<void> {
  await rm(stateDir, { recursive: true, force: true });
  const cp = await ControlPlane.start({ dir: stateDir, log: say });
  const state: SupervisorState = { ...cp.state(), supervisorPid: process.pid };
  await writeFile(stateFile, JSON.stringify(state, null, 2));
  say(`ready: ${cp.server}`);
  say(`export KUBECONFIG=${cp.kubeconfig}`);
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    say("stopping");
    await cp.stop();
    await rm(stateFile, { force: true });
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
  // Keep the event loop alive while the components run.
  setInterval(() => undefined, 1 << 30);
}

async function background(): Promise<void> {
  const running = readState();
  if (running && alive(running.supervisorPid)) {
    say(`already running at ${running.server}`);
    console.log(running.kubeconfig);
    return;
  }
  // Build in this terminal first so the progress of the first (long) build is visible.
  await controlPlaneBinDir(say);
  await down(true);
  const { mkdirSync } = await import("node:fs");
  mkdirSync(cacheRoot, { recursive: true });
  const logFile = join(cacheRoot, "cluster-supervisor.log");
  const out = openSync(logFile, "w");
  const child = spawn(process.execPath, [import.meta.filename, "up", "--foreground"], {
    detached: true,
    stdio: ["ignore", out, out],
  });
  child.unref();
  const pid = child.pid ?? -1;
  const ok = await until(() => readState()?.supervisorPid === pid || !alive(pid), 120_000);
  const state = readState();
  if (!ok || !state || state.supervisorPid !== pid) {
    say(`the control plane did not start; see ${logFile}:`);
    process.stderr.write(readFileSync(logFile, "utf8").split("\n").slice(-30).join("\n") + "\n");
    process.exitCode = 1;
    return;
  }
  say(`ready: ${state.server}`);
  say(`export KUBECONFIG=${state.kubeconfig}`);
  console.log(state.kubeconfig);
}

async function down(quiet = false): Promise<void> {
  const state = readState();
  if (!state) {
    if (!quiet) say("not running");
    return;
  }
  if (alive(state.supervisorPid)) {
    process.kill(state.supervisorPid, "SIGTERM");
    await until(() => !alive(state.supervisorPid), 30_000);
  }
  // Anything the supervisor could not stop (it was killed, say) is stopped here.
  for (const pid of [state.supervisorPid, ...Object.values(state.pids)]) {
    if (alive(pid)) {
      process.kill(pid, "SIGKILL");
      await until(() => !alive(pid), 10_000);
    }
  }
  await rm(stateFile, { force: true });
  if (!quiet) say("stopped");
}

async function main(cmd: string | undefined, args: string[]): Promise<void> {
switch (cmd) {
  case "build":
    console.log(await controlPlaneBinDir(say));
    break;
  case "up":
    if (args.includes("--foreground")) await foreground();
    else await background();
    break;
  case "down":
    await down();
    break;
  case "status": {
    const state = readState();
    if (state && alive(state.supervisorPid)) console.log(state.kubeconfig);
    else {
      say("not running");
      process.exitCode = 1;
    }
    break;
  }
  default:
    say("usage: cli.ts build | up [--foreground] | down | status");
    process.exitCode = 2;
}
}

const [command, ...rest] = process.argv.slice(2);
main(command, rest).catch((err: unknown) => {
  say(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
