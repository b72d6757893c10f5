// Child processes for the bench: pinned servers, CPU accounting, the ghz binary.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { procStatFields } from "../../test/support/proc.ts";
import { runDelayNanos } from "../../src/util/run-delay.ts";

export const repoRoot = resolve(import.meta.dirname, "..", "..");

export function toolsBin(): string {
  const cache = process.env.KEYWARD_CACHE_DIR ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "keyward");
  return join(cache, "tools", "bin");
}

/** A program scripts/tools-build.sh builds into the tools cache. */
export function toolPath(name: string): string {
  const p = join(toolsBin(), name);
  if (!existsSync(p)) throw new Error(`${name} is not built: run scripts/tools-build.sh (expected ${p})`);
  return p;
}

export function ghzPath(): string {
  return toolPath("ghz");
}

/**
 * An analytics store of its own for one `keyward authz` or `keyward run` process: a SQLite file
 * (`path`; `args` also chooses SQLite, the default store) in a fresh temporary directory, never the
 * working directory's default file, which every run would share and whose size would carry over
 * from run to run. `remove()` deletes the directory once the process has stopped.
 */
export function ownAnalyticsStore(): { path: string; args: string[]; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), "keyward-bench-analytics-"));
  const path = join(dir, "keyward-analytics.sqlite");
  return {
    path,
    args: ["--analytics-store=sqlite", `--analytics-sqlite-path=${path}`],
    remove: () => {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Wraps a command in `taskset -c <cpus>` when cpus is given. */
export function pinned(cpus: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpus === undefined ? [cmd, args] : ["taskset", ["-c", cpus, cmd, ...args]];
}

/** Moves a running process and all its threads to `cpus` (taskset -a -p), at niceness `nice`. */
export function placeProcess(pid: number, cpus: string, nice = 0): void {
  execFileSync("taskset", ["-a", "-p", "-c", cpus, String(pid)], { stdio: "ignore" });
  execFileSync("renice", ["-n", String(nice), "-p", String(pid)], { stdio: "ignore" });
}

/** utime+stime of a process and its threads (or of one thread: "PID/task/TID"), in seconds (Linux /proc). */
export function cpuSeconds(pid: number | string): number {
  const fields = procStatFields(pid);
  // fields[11] = utime, fields[12] = stime (fields 14 and 15 of proc(5)), in clock ticks.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** utime+stime of one thread of a process, in seconds (Linux /proc/PID/task/TID). */
export function threadCpuSeconds(pid: number, tid: number): number {
  return cpuSeconds(`${pid}/task/${tid}`);
}

/** Seconds a thread of `pid` has waited on a run queue so far (runnable, not running; schedstat's second field). */
export function threadWaitSeconds(pid: number, tid: number): number {
  return (runDelayNanos(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8")) ?? 0) / 1e9;
}

/** The ids of a process's threads whose name (comm) is `name`. */
export function threadsNamed(pid: number, name: string): number[] {
  const out: number[] = [];
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      if (readFileSync(`/proc/${pid}/task/${t}/comm`, "utf8").trim() === name) out.push(Number(t));
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

/** CPU seconds of a process tree rooted at pid (the server and, with workers, its children). */
export function treeCpuSeconds(pid: number): number {
  let total = 0;
  const seen = new Set<number>();
  const walk = (p: number): void => {
    if (seen.has(p)) return;
    seen.add(p);
    try {
      total += cpuSeconds(p);
    } catch {
      return;
    }
    let children: string[];
    try {
      children = readFileSync(`/proc/${p}/task/${p}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    } catch {
      children = [];
    }
    for (const c of children) walk(Number(c));
  };
  walk(pid);
  return total;
}

export interface ServerProc {
  port: number;
  pid: number;
  child: ChildProcess;
  stats(): Promise<Record<string, unknown>>;
  /** The server's monotonic clock, in microseconds. */
  mark(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts bench/servers/server.ts (optionally pinned) and waits for `READY <port>`. */
/** `env`: variables added to the bench's own environment for the server. */
export async function startServer(args: string[], opts: { cpus?: string; nodeFlags?: string[]; timeoutMs?: number; program?: string; env?: Record<string, string> } = {}): Promise<ServerProc> {
  const [cmd, argv] = opts.program
    ? pinned(opts.cpus, toolPath(opts.program), args)
    : pinned(opts.cpus, process.execPath, [...(opts.nodeFlags ?? []), join(repoRoot, "bench/servers/server.ts"), ...args]);
  // stderr carries the server's JSON log lines (one per denial, as in production): discarded.
  const child = spawn(cmd, argv, { stdio: ["pipe", "pipe", "ignore"], cwd: repoRoot, ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) });
  const lines = createInterface({ input: child.stdout });
  const waiters: ((line: string) => void)[] = [];
  lines.on("line", (l) => {
    const w = waiters.shift();
    if (w) w(l);
  });
  const next = (prefix: string, timeoutMs: number): Promise<string> =>
    new Promise((res, rej) => {
      const t = setTimeout(() => {
        rej(new Error(`server did not print ${prefix} within ${timeoutMs} ms`));
      }, timeoutMs);
      const onExit = (code: number | null): void => {
        clearTimeout(t);
        rej(new Error(`server exited with ${String(code)} before ${prefix}`));
      };
      child.once("exit", onExit);
      const take = (l: string): void => {
        if (!l.startsWith(prefix)) {
          waiters.unshift(take);
          return;
        }
        clearTimeout(t);
        child.off("exit", onExit);
        res(l.slice(prefix.length).trim());
      };
      waiters.push(take);
    });
  const port = Number(await next("READY ", opts.timeoutMs ?? 900_000));
  return {
    port,
    pid: child.pid!,
    child,
    stats: async () => {
      const p = next("STATS ", 10_000);
      child.stdin.write("stats\n");
      return JSON.parse(await p) as Record<string, unknown>;
    },
    mark: async () => {
      const p = next("MARK ", 10_000);
      child.stdin.write("mark\n");
      return Number(await p);
    },
    stop: () =>
      new Promise<void>((res) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          res();
          return;
        }
        const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
        child.once("exit", () => {
          clearTimeout(t);
          res();
        });
        child.kill("SIGTERM");
      }),
  };
}

/** Runs a command to completion; resolves with stdout (stderr is passed through on failure). */
export function run(cmd: string, args: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<string> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const t = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 300_000);
    child.on("error", rej);
    child.on("exit", (code) => {
      clearTimeout(t);
      if (code === 0) res(out);
      else rej(new Error(`${cmd} exited with ${String(code)}: ${err.slice(-2000)}`));
    });
  });
}

/** Clock ticks of each line of /proc/stat's CPU lines ("cpu", all cores, then "cpu0", "cpu1", ...): in all, and idle (idle + iowait). */
export function cpuTicks(): { name: string; total: number; idle: number }[] {
  return readFileSync("/proc/stat", "utf8")
    .split("\n")
    .filter((l) => /^cpu\d*\s/.test(l))
    .map((l) => {
      const [name = "", ...f] = l.trim().split(/\s+/);
      const n = f.map(Number);
      return { name, total: n.reduce((a, b) => a + b, 0), idle: (n[3] ?? 0) + (n[4] ?? 0) };
    });
}

/** Busy share (0 idle .. 1 busy) between two cpuTicks() readings: of all cores first, then of each core (cpu0, cpu1, ...). */
export function busyShares(before: ReturnType<typeof cpuTicks>, after: ReturnType<typeof cpuTicks>): number[] {
  return after.map((b, i) => {
    const a = before[i] ?? b;
    return b.total === a.total ? 0 : Math.round((1 - (b.idle - a.idle) / (b.total - a.total)) * 1000) / 1000;
  });
}

/** Busy share of all CPUs over `ms` (from /proc/stat): 0 idle .. 1 every core busy. */
export async function cpuBusy(ms = 1000): Promise<number> {
  const t0 = cpuTicks();
  await new Promise((r) => setTimeout(r, ms));
  return busyShares(t0, cpuTicks())[0] ?? 0;
}

/**
 * Waits (up to `maxMs`) until the machine is quiet: other work on it (tests, builds) would
 * take CPU from the pinned server and load generator. Returns the busy share last seen.
 */
export async function waitQuiet(log: (s: string) => void, maxBusy = 0.15, maxMs = 60_000): Promise<number> {
  const deadline = Date.now() + maxMs;
  let busy = await cpuBusy(2000);
  let said = false;
  while (busy > maxBusy && Date.now() < deadline) {
    if (!said) log(`machine busy (${Math.round(busy * 100)}% of all cores); waiting up to ${maxMs / 1000} s for it to calm down`);
    said = true;
    busy = await cpuBusy(3000);
  }
  return Math.round(busy * 100) / 100;
}
