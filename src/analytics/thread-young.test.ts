import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SUPPORT = fileURLToPath(new URL("./thread-young.test-support.ts", import.meta.url));

/** The new space (MiB) of the main thread and of the store's threads, in a process started with `flags`. */
function newSpaces(flags: string[]): { main: number; writer: number; reader: number } {
  const dir = mkdtempSync(join(tmpdir(), "keyward-thread-young-"));
  try {
    return JSON.parse(execFileSync(process.execPath, [...flags, SUPPORT, join(dir, "a.sqlite")], { encoding: "utf8" })) as { main: number; writer: number; reader: number };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("the analytics threads' young generation", () => {
  it("under the chart's --max-semi-space-size=4 the main thread keeps the flag's, the writer and reader threads have their own", () => {
    const out = newSpaces(["--max-semi-space-size=4"]);
    // Two semi-spaces of 4 MiB on the thread answering checks, as the flag asks.
    expect(out.main).toBe(8);
    // The writer's: two of 1 MiB (WRITER_YOUNG_GENERATION_MB), where the flag alone gave it 8 MiB.
    expect(out.writer).toBeLessThanOrEqual(2);
    // The reader's: two of 4 MiB at most (READER_YOUNG_GENERATION_MB), not V8's default once the flag is cleared.
    expect(out.reader).toBeLessThanOrEqual(8);
  }, 60_000);

  it("without the flag the store's threads have the same young generations", () => {
    const out = newSpaces([]);
    expect(out.writer).toBeLessThanOrEqual(2);
    expect(out.reader).toBeLessThanOrEqual(8);
  }, 60_000);
});
