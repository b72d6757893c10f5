import { mkdtempSync, rmSync } from "node:fs";
import { getPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { defaultConfig, loadConfig } from "../config/config.ts";
import { silentLogger } from "../log.ts";
import { analyticsStoreOptions } from "./store.ts";
import { startThreadCalls } from "./thread-calls.ts";
import { lowerOwnPriority, ownThreadId } from "./thread-priority.ts";
import { niceByThread } from "../../test/support/proc.ts";
import { startWriterThread, WRITER_THREAD_NAME } from "./writer-thread.ts";

const SUPPORT = new URL("./thread-priority.test-support.ts", import.meta.url);

/** The nice value of this process's threads named `name`, from /proc. */
const niceOfThread = (name: string): number[] => niceByThread(process.pid).get(name) ?? [];

async function niceIn(options: { nice?: number; before?: number }): Promise<{ tid: number; nice: number; fromProc: number[] }> {
  const name = `kw-nice-${Math.random().toString(36).slice(2, 8)}`;
  const calls = await startThreadCalls<{ op: "nice" | "close" }>({ url: SUPPORT, name, what: "test", data: { before: options.before }, log: silentLogger, ...(options.nice !== undefined ? { nice: options.nice } : {}) });
  try {
    const answer = (await calls.call({ op: "nice" })) as { tid: number; nice: number };
    return { ...answer, fromProc: niceOfThread(name.slice(0, 15)) };
  } finally {
    await calls.close({ op: "close" });
  }
}

describe("analytics thread priority", () => {
  it("names the calling thread: the main thread's id is the process id", () => {
    expect(ownThreadId()).toBe(process.pid);
  });

  it("a thread started with a nice value lowers its own priority, and only its own", async () => {
    const main = getPriority(process.pid);
    const t = await niceIn({ nice: 7 });
    expect(t.tid).not.toBe(process.pid);
    expect(t.nice).toBe(7);
    // What the kernel schedules it with, read from outside the thread.
    expect(t.fromProc).toEqual([7]);
    // The thread answering checks keeps its priority.
    expect(getPriority(process.pid)).toBe(main);
  });

  it("without a nice value the thread runs at the process's priority", async () => {
    const t = await niceIn({});
    expect(t.nice).toBe(getPriority(process.pid));
  });

  it("never raises a thread's priority: one already at a higher nice keeps it", async () => {
    const t = await niceIn({ nice: 5, before: 12 });
    expect(t.nice).toBe(12);
  });

  it("refuses a nice value the kernel does not have", () => {
    expect(() => lowerOwnPriority(20)).toThrow(RangeError);
    expect(() => lowerOwnPriority(-1)).toThrow(RangeError);
    expect(() => lowerOwnPriority(2.5)).toThrow(RangeError);
  });

  it("keyward's writer thread runs at --analytics-thread-nice (default 19), the check thread at the process's", async () => {
    const config = defaultConfig({ analyticsStore: "sqlite" });
    expect(config.analyticsThreadNice).toBe(19);
    const dir = mkdtempSync(join(tmpdir(), "keyward-thread-nice-"));
    try {
      const options = { ...analyticsStoreOptions({ ...config, analyticsSqlitePath: join(dir, "a.sqlite") })!, retentionIntervalMs: 0, writerThread: true };
      expect(options.threadNice).toBe(19);
      const writer = startWriterThread(options, silentLogger);
      try {
        await writer.opened;
        expect(niceOfThread(WRITER_THREAD_NAME)).toEqual([19]);
        expect(getPriority(process.pid)).toBe(0);
      } finally {
        await writer.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("0 leaves the store's threads at the process's priority; above 19 is refused at start-up", () => {
    expect(analyticsStoreOptions(defaultConfig({ analyticsStore: "sqlite", analyticsThreadNice: 0 }))?.threadNice).toBeUndefined();
    expect(() => loadConfig(["--analytics-thread-nice", "20"], {})).toThrow(/--analytics-thread-nice must be 19 or less/);
    expect(loadConfig([], { KEYWARD_ANALYTICS_THREAD_NICE: "10" }).config.analyticsThreadNice).toBe(10);
  });
});
