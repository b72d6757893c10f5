// Whether this process's CPU limit is being hit: the CFS throttling count of its own CPU cgroup
// (a pod's limits.cpu is a CFS quota per 100 ms period; a period in which the container used its
// whole quota stops every thread of it until the next one, and is counted in cpu.stat's
// nr_throttled). Analytics sheds its work while it rises, so that a CPU-limited pod spends its
// quota on checks (ADR 0075, cpu-pressure.ts). Read from /proc/self/cgroup and the cgroup file system, v2 or v1;
// where neither shows a quota (no limit, not Linux), nothing is ever throttled.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { sampledPressure, type CpuPressure } from "./cpu-pressure.ts";

/** A reading source: the text of a file under the root (undefined when absent or unreadable). */
export type ReadText = (path: string) => string | undefined;

/** The text of a file, or undefined when it cannot be read. */
export const readText: ReadText = (path) => {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
};

/**
 * The cpu.stat file of the process's CPU cgroup: v2's `0::/path` under the unified root, else
 * v1's `N:...cpu...:/path` under the cpu hierarchy's mount (cpu, or cpu,cpuacct). Inside a
 * container with its own cgroup namespace the path is `/`, the container's own group. A group
 * without a quota is never throttled, so its count stays; undefined where there is no such file.
 */
export function cpuStatPath(read: ReadText = readText, root = "/sys/fs/cgroup"): string | undefined {
  const self = read("/proc/self/cgroup");
  if (self === undefined) return undefined;
  for (const line of self.split("\n")) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (!m) continue;
    const [, hierarchy, controllers, path] = m as unknown as [string, string, string, string];
    const mounts = hierarchy === "0" && controllers === "" ? [""] : controllers.split(",").includes("cpu") ? [controllers, "cpu", "cpu,cpuacct"] : [];
    for (const mount of mounts) {
      const stat = join(root, mount, path, "cpu.stat");
      if (throttledCount(read(stat)) !== undefined) return stat;
    }
  }
  return undefined;
}

/** nr_throttled of a cpu.stat text (both versions name it so); undefined when missing. */
export function throttledCount(stat: string | undefined): number | undefined {
  if (stat === undefined) return undefined;
  const m = /^nr_throttled\s+(\d+)/m.exec(stat);
  return m ? Number(m[1]) : undefined;
}

/** The kubelet's CFS period: one reading a period tells whether the last one was throttled. */
export const THROTTLE_INTERVAL_MS = 100;

/** Readings between two lookups of the process's cgroup (it may be moved into another, as a bench does). */
const RELOCATE_EVERY = 50;

/** One reading of the process's cpu.stat: the file's path (undefined where none is found) and its text. */
export interface CpuStatReading {
  path: string | undefined;
  text: string | undefined;
}

/** A reader of the process's own cpu.stat, its cgroup looked up again every RELOCATE_EVERY readings. */
export function ownCpuStat(read: ReadText = readText, root?: string): () => CpuStatReading {
  let readings = 0;
  let path: string | undefined;
  return () => {
    if (readings++ % RELOCATE_EVERY === 0) path = cpuStatPath(read, root);
    return { path, text: path === undefined ? undefined : read(path) };
  };
}

/** The time a cpu.stat's group has been throttled, in ns: v2's throttled_usec, v1's throttled_time (ns); undefined when missing. */
export function throttledNanos(stat: string | undefined): number | undefined {
  if (stat === undefined) return undefined;
  const v2 = /^throttled_usec\s+(\d+)/m.exec(stat);
  if (v2) return Number(v2[1]) * 1000;
  const v1 = /^throttled_time\s+(\d+)/m.exec(stat);
  return v1 ? Number(v1[1]) : undefined;
}

/**
 * The process's cgroup's throttled time so far (ns), as a counter: undefined where it cannot be
 * read, and from a new zero when the process is found in another cgroup.
 */
export function ownThrottledNanos(read: ReadText = readText, root?: string): () => number | undefined {
  const stat = ownCpuStat(read, root);
  let path: string | undefined;
  let base = 0;
  let last = 0;
  return () => {
    const r = stat();
    const ns = throttledNanos(r.text);
    if (ns === undefined) return undefined;
    // Another group counts from its own start: carry on from where the last one left.
    if (r.path !== path) {
      path = r.path;
      base = last - ns;
    }
    last = ns + base;
    return last;
  };
}

/** Why the CPU is short, while the cgroup's throttling count rises. */
export const THROTTLED = "keyward's CPU limit is hit (its cgroup is throttled)";

/**
 * The process's throttling sampler: pressed when a reading's nr_throttled rose over the one before
 * (short from two such readings in a row, cpu-pressure.ts). A reading is a small synchronous file
 * read (a few µs). Never short where no cpu.stat is found (not Linux).
 */
export function ownCpuThrottle(read: ReadText = readText, root?: string, intervalMs = THROTTLE_INTERVAL_MS): CpuPressure {
  const stat = ownCpuStat(read, root);
  let path: string | undefined;
  let last: number | undefined;
  return sampledPressure(
    THROTTLED,
    () => {
      const r = stat();
      if (r.path !== path) last = undefined;
      path = r.path;
      const n = throttledCount(r.text);
      const rises = n !== undefined && last !== undefined && n > last;
      last = n;
      return rises;
    },
    intervalMs,
  );
}
