import { describe, expect, it } from "vitest";
import type { CpuPressure } from "./cpu-pressure.ts";
import { cpuStatPath, ownCpuThrottle, THROTTLED, throttledCount, type ReadText } from "./cpu-throttle.ts";

/** A file system of these files' texts, counting the reads of each. */
function files(texts: Record<string, string>): ReadText & { reads: Map<string, number>; texts: Record<string, string> } {
  const reads = new Map<string, number>();
  const read = ((path: string) => {
    reads.set(path, (reads.get(path) ?? 0) + 1);
    return texts[path];
  }) as ReadText & { reads: Map<string, number>; texts: Record<string, string> };
  read.reads = reads;
  read.texts = texts;
  return read;
}

const V1_STAT = (n: number) => `nr_periods 120\nnr_throttled ${n}\nthrottled_time 3000000000\n`;
const V2_STAT = (n: number) => `usage_usec 900\nnr_periods 10\nnr_throttled ${n}\nthrottled_usec 120000\n`;

describe("cpuStatPath", () => {
  it("finds cgroup v2's group of the process under the unified root", () => {
    const read = files({ "/proc/self/cgroup": "0::/kubepods.slice/pod1/cri-abc\n", "/sys/fs/cgroup/kubepods.slice/pod1/cri-abc/cpu.stat": V2_STAT(0) });
    expect(cpuStatPath(read)).toBe("/sys/fs/cgroup/kubepods.slice/pod1/cri-abc/cpu.stat");
  });

  it("finds a container's own group, `/` in its cgroup namespace", () => {
    const read = files({ "/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/cpu.stat": V2_STAT(0) });
    expect(cpuStatPath(read)).toBe("/sys/fs/cgroup/cpu.stat");
  });

  it("finds cgroup v1's cpu group, mounted as cpu,cpuacct or as cpu alone", () => {
    const self = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/\n";
    expect(cpuStatPath(files({ "/proc/self/cgroup": self, "/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.stat": V1_STAT(3) }))).toBe("/sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.stat");
    expect(cpuStatPath(files({ "/proc/self/cgroup": self, "/sys/fs/cgroup/cpu/docker/abc/cpu.stat": V1_STAT(3) }))).toBe("/sys/fs/cgroup/cpu/docker/abc/cpu.stat");
  });

  it("skips a group whose cpu.stat counts no throttling (v2 without the cpu controller), and gives none where there is no cgroup", () => {
    expect(cpuStatPath(files({ "/proc/self/cgroup": "0::/x\n", "/sys/fs/cgroup/x/cpu.stat": "usage_usec 5\n" }))).toBeUndefined();
    expect(cpuStatPath(files({}))).toBeUndefined();
  });
});

describe("throttledCount", () => {
  it("reads nr_throttled of either version, and nothing else that ends in it", () => {
    expect(throttledCount(V1_STAT(42))).toBe(42);
    expect(throttledCount(V2_STAT(7))).toBe(7);
    expect(throttledCount("nr_throttled_other 5\n")).toBeUndefined();
    expect(throttledCount(undefined)).toBeUndefined();
  });
});

const isShort = (p: CpuPressure, now: number): boolean => p.short(now) !== undefined;

describe("ownCpuThrottle", () => {
  const STAT = "/sys/fs/cgroup/pod/cpu.stat";

  it("is throttled from a reading whose count rose in two intervals in a row until two in a row show no rise, reading at most once per interval", () => {
    const read = files({ "/proc/self/cgroup": "0::/pod\n", [STAT]: V2_STAT(5) });
    const t = ownCpuThrottle(read, "/sys/fs/cgroup", 100);
    expect(t.intervalMs).toBe(100);
    // The first reading has nothing to compare with.
    expect(isShort(t, 1000)).toBe(false);
    const reads = read.reads.get(STAT) ?? 0;
    read.texts[STAT] = V2_STAT(6);
    expect(isShort(t, 1050)).toBe(false); // not due: no read
    expect(read.reads.get(STAT)).toBe(reads);
    // One throttled interval alone is a burst, not a pod out of CPU.
    expect(isShort(t, 1100)).toBe(false);
    expect(read.reads.get(STAT)).toBe(reads + 1);
    read.texts[STAT] = V2_STAT(8);
    expect(t.short(1200)).toBe(THROTTLED);
    expect(isShort(t, 1299)).toBe(true);
    read.texts[STAT] = V2_STAT(9);
    expect(isShort(t, 1300)).toBe(true);
    // One reading without a new throttled period is a gap: still short; two in a row end it.
    expect(isShort(t, 1400)).toBe(true);
    expect(isShort(t, 1500)).toBe(false);
    // Then a lone rise is a burst again.
    read.texts[STAT] = V2_STAT(10);
    expect(isShort(t, 1600)).toBe(false);
    read.texts[STAT] = V2_STAT(11);
    expect(isShort(t, 1700)).toBe(true);
  });

  it("is never throttled without a cgroup, and finds one the process is moved into later", () => {
    const read = files({ "/proc/self/cgroup": "0::/\n" });
    const t = ownCpuThrottle(read, "/sys/fs/cgroup", 100);
    let now = 0;
    for (let i = 0; i < 50; i++) expect(isShort(t, (now += 100))).toBe(false);
    read.texts["/proc/self/cgroup"] = "0::/pod\n";
    read.texts[STAT] = V2_STAT(1);
    expect(isShort(t, (now += 100))).toBe(false); // found; its first reading
    read.texts[STAT] = V2_STAT(2);
    expect(isShort(t, (now += 100))).toBe(false);
    read.texts[STAT] = V2_STAT(3);
    expect(isShort(t, now + 100)).toBe(true);
  });
});
