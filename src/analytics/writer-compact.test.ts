import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SUPPORT = fileURLToPath(new URL("./writer-compact.test-support.ts", import.meta.url));

describe("the analytics writer thread's heap once the store is open", () => {
  it("holds little more than what lives on it: what loading and opening left is collected and compacted before the first call", () => {
    const dir = mkdtempSync(join(tmpdir(), "keyward-writer-compact-"));
    try {
      // Under the chart's authz.nodeOptions, as a pod runs it.
      const heap = JSON.parse(execFileSync(process.execPath, ["--max-semi-space-size=4", SUPPORT, join(dir, "a.sqlite")], { encoding: "utf8" })) as { total: number; used: number };
      // About 10 MiB live (the store's modules, Kysely's among them) on about 12 MiB of pages;
      // left to V8, which does not collect an idle thread's old generation, 17 MiB in use
      // (garbage counted) on 19–20 MiB of pages.
      expect(heap.used).toBeLessThan(13);
      expect(heap.total).toBeLessThan(15);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
