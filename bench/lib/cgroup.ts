// A CPU limit for one process of the bench, as a pod's `resources.limits.cpu` sets one: a CPU
// cgroup of its own with a CFS quota per 100 ms period (the kubelet's default period). The
// process's threads, and those it starts later, share the quota; when they have used it, the
// kernel stops them until the next period (throttling), whatever cores are idle. Linux only, as
// root: cgroup v2 where the cpu controller is on at /sys/fs/cgroup, else v1's cpu hierarchy.
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The CFS period the kubelet sets (cpu.cfs_period_us, cpu.max's second field). */
export const CFS_PERIOD_MICROS = 100_000;

export interface CpuLimit {
  /** The cgroup's directory. */
  dir: string;
  /** CPUs the quota allows per period (0.7: 70 ms of CPU time every 100 ms); 0: no quota. */
  cpus: number;
  /** Periods so far, those in which the group was throttled, and the time it was throttled (µs). */
  stat(): CpuLimitStat;
  /** Removes the cgroup; the process must have ended, or been moved out, first. */
  remove(): void;
}

export interface CpuLimitStat {
  periods: number;
  throttledPeriods: number;
  throttledMicros: number;
}

/** Where CPU cgroups are made here, and in which version; undefined where neither is writable. */
function cpuHierarchy(): { root: string; v2: boolean } | undefined {
  const v2 = "/sys/fs/cgroup";
  try {
    if (readFileSync(join(v2, "cgroup.controllers"), "utf8").split(/\s+/).includes("cpu")) return { root: v2, v2: true };
  } catch {
    // No unified hierarchy at the root: v1 or hybrid.
  }
  const v1 = "/sys/fs/cgroup/cpu";
  return existsSync(join(v1, "cpu.cfs_quota_us")) ? { root: v1, v2: false } : undefined;
}

/** cpu.stat's fields by name (v1: nr_periods, nr_throttled, throttled_time in ns; v2: nr_periods, nr_throttled, throttled_usec). */
export function parseCpuStat(text: string): CpuLimitStat {
  const f = new Map<string, number>();
  for (const line of text.split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined) f.set(k, Number(v));
  }
  const throttledMicros = f.get("throttled_usec") ?? (f.get("throttled_time") ?? 0) / 1000;
  return { periods: f.get("nr_periods") ?? 0, throttledPeriods: f.get("nr_throttled") ?? 0, throttledMicros };
}

/** The quota file's text for `cpus` per period: v2's cpu.max ("70000 100000"), v1's cpu.cfs_quota_us ("70000"). */
export function quotaText(cpus: number, v2: boolean): string {
  if (!(cpus > 0) || !Number.isFinite(cpus)) throw new RangeError(`a CPU limit must be a positive number of CPUs, got ${cpus}`);
  // The kernel refuses a quota under 1 ms.
  const quota = Math.max(1000, Math.round(cpus * CFS_PERIOD_MICROS));
  return v2 ? `${quota} ${CFS_PERIOD_MICROS}` : String(quota);
}

/**
 * Puts process `pid` (every thread of it) under a CPU limit of `cpus` in a new cgroup `name`; 0: in
 * a cgroup of its own without a limit, as a pod without limits.cpu, sharing the CPU with other such
 * groups by their (equal, default) weights.
 */
export function limitCpu(pid: number, cpus: number, name: string): CpuLimit {
  const h = cpuHierarchy();
  if (!h) throw new Error("no writable CPU cgroup hierarchy (neither /sys/fs/cgroup/cgroup.controllers with cpu nor /sys/fs/cgroup/cpu): a CPU limit needs Linux cgroups and root");
  const dir = join(h.root, name);
  mkdirSync(dir);
  try {
    // 0: no quota; a new group has none, in either version.
    if (cpus > 0) {
      if (h.v2) writeFileSync(join(dir, "cpu.max"), quotaText(cpus, true));
      else {
        writeFileSync(join(dir, "cpu.cfs_period_us"), String(CFS_PERIOD_MICROS));
        writeFileSync(join(dir, "cpu.cfs_quota_us"), quotaText(cpus, false));
      }
    }
    // cgroup.procs moves the whole thread group, in both versions.
    writeFileSync(join(dir, "cgroup.procs"), String(pid));
  } catch (err) {
    rmdirSync(dir);
    throw new Error(`could not put process ${pid} under a CPU limit of ${cpus} in ${dir}`, { cause: err });
  }
  return {
    dir,
    cpus,
    stat: () => parseCpuStat(readFileSync(join(dir, "cpu.stat"), "utf8")),
    remove: () => {
      if (existsSync(dir)) rmdirSync(dir);
    },
  };
}
