import { getHeapSpaceStatistics } from "node:v8";
import { describe, expect, it } from "vitest";
import { compactHeap } from "./heap.ts";

const oldSpaceBytes = (): number => getHeapSpaceStatistics().find((s) => s.space_name === "old_space")?.space_size ?? 0;

describe("compactHeap", () => {
  it("returns the old generation's emptied pages: a heap one tenth live after a burst is compacted to about its live size", async () => {
    // A burst like a large list: many objects, of which one in ten is kept, promoted to the old
    // generation by surviving collections while the burst goes on.
    const kept: object[][] = [];
    for (let round = 0; round < 16; round++) {
      const burst = Array.from({ length: 100_000 }, (_, i) => ({ i, name: `key-${round}-${i}` }));
      kept.push(burst.filter((_, i) => i % 10 === 0));
    }
    const before = oldSpaceBytes();
    expect(await compactHeap()).toBe(true);
    const after = oldSpaceBytes();
    expect(kept.length).toBe(16);
    // What is kept is about a tenth of the burst: the pages it left mostly empty are returned.
    expect(after).toBeLessThan(before * 0.75);
  });
});
