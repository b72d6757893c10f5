// The start-up benches' reading of /proc/PID/smaps (bench/startup.ts): resident kB summed by
// what each mapping is, so the RSS breakdown and the per-mapping view add up the same pages.
import { describe, expect, it } from "vitest";
import { smapsByKind, smapsResident } from "../../bench/startup.ts";

const SMAPS = [
  "00400000-00500000 r-xp 00000000 08:01 1234                               /opt/node/bin/node",
  "Size:               1024 kB",
  "Rss:                 600 kB",
  "00600000-00700000 r--p 00100000 08:01 1234                               /opt/node/bin/node",
  "Rss:                 100 kB",
  "01000000-02000000 rw-p 00000000 00:00 0                                  [heap]",
  "Rss:                 300 kB",
  "7f0000000000-7f0000100000 rw-p 00000000 00:00 0 ",
  "Rss:                  50 kB",
  "7f0000200000-7f0000300000 r-xp 00000000 08:01 99                         /usr/lib/x86_64-linux-gnu/libc.so.6",
  "Rss:                  20 kB",
  "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]",
  "Rss:                   8 kB",
].join("\n");

/** A glibc arena's heap (64 MiB-aligned, 9 MiB written, the rest of its 64 MiB reserved), and a V8 page that happens to lie at a 64 MiB boundary. */
const ARENAS = [
  "7f1e5c000000-7f1e5c900000 rw-p 00000000 00:00 0 ",
  "Rss:                9000 kB",
  "7f1e5c900000-7f1e60000000 ---p 00000000 00:00 0 ",
  "Rss:                   0 kB",
  "7f1e64000000-7f1e64040000 rw-p 00000000 00:00 0 ",
  "Rss:                 256 kB",
].join("\n");

describe("smaps by kind", () => {
  it("sums the binary's mappings, glibc's [heap], other files and the anonymous rest", () => {
    expect(smapsByKind(SMAPS, "/opt/node/bin/node")).toEqual({ binary: 700, otherFiles: 20, mallocHeap: 300, mallocArenas: 0, otherAnon: 58 });
  });

  it("tells glibc's other malloc arenas from the anonymous rest: a heap at a 64 MiB boundary with the rest of its 64 MiB reserved", () => {
    expect(smapsByKind(`${SMAPS}\n${ARENAS}`, "/opt/node/bin/node")).toEqual({ binary: 700, otherFiles: 20, mallocHeap: 300, mallocArenas: 9000, otherAnon: 58 + 256 });
  });

  it("groups by any key of the mapping's name, anonymous mappings named ''", () => {
    expect(smapsResident(SMAPS, (name) => name.split("/").pop() || "[anon]")).toEqual({ node: 700, "[heap]": 300, "[anon]": 50, "libc.so.6": 20, "[stack]": 8 });
  });
});
