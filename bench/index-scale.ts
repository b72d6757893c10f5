// The key index from 1k to 1M keys: memory per key (heap delta around the build,
// after full GCs), build time (watch "add" events applied one by one), and the
// cost of a lookup (Map.get of a key's digest, and sha256 + Map.get as the check does).
//
//   node --expose-gc --max-old-space-size=8192 bench/index-scale.ts [--sizes 1000,10000,100000,1000000]
import { parseArgs } from "node:util";
import { KeyIndex, keyDigest } from "../src/index/keys.ts";
import { apiKeyObject, fillIndex, keyFor, rng } from "./lib/fixture.ts";

export interface IndexPoint {
  keys: number;
  buildMs: number;
  heapBytes: number;
  bytesPerKey: number;
  /** ns per Map.get of a present digest (random over the whole index). */
  lookupNs: number;
  /** ns per sha256(key) + Map.get, as Checker.check does. */
  hashAndLookupNs: number;
  /** ns per lookup of an absent digest. */
  missNs: number;
  /** Object bytes the watch would hand over per key (JSON size of the ApiKey), for scale. */
  objectJsonBytes: number;
}

const gc = (globalThis as { gc?: () => void }).gc;

function fullGc(): void {
  if (!gc) throw new Error("run with --expose-gc");
  for (let i = 0; i < 4; i++) gc();
}

function timeLoop(iters: number, fn: (i: number) => unknown): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) if (fn(i) !== undefined) sink++;
  const ns = Number(process.hrtime.bigint() - t0);
  if (sink < 0) console.log(sink);
  return ns / iters;
}

export function measureIndex(n: number): IndexPoint {
  fullGc();
  const before = process.memoryUsage().heapUsed;
  const index = new KeyIndex();
  const t0 = performance.now();
  fillIndex(index, n);
  const buildMs = performance.now() - t0;
  fullGc();
  const heapBytes = process.memoryUsage().heapUsed - before;
  if (index.size !== n) throw new Error(`index has ${index.size} keys, expected ${n}`);

  // Probes: 4096 present digests spread over the index, and 4096 absent ones.
  const r = rng(7);
  const present: string[] = [];
  const presentKeys: string[] = [];
  const absent: string[] = [];
  for (let i = 0; i < 4096; i++) {
    const k = keyFor(Math.floor(r() * n));
    presentKeys.push(k);
    present.push(keyDigest(k));
    absent.push(keyDigest(keyFor(-1 - i)));
  }
  const iters = 2_000_000;
  timeLoop(iters, (i) => index.lookup(present[i & 4095]!)); // warm up
  const lookupNs = Math.min(...[0, 1, 2].map(() => timeLoop(iters, (i) => index.lookup(present[i & 4095]!))));
  const missNs = Math.min(...[0, 1, 2].map(() => timeLoop(iters, (i) => index.lookup(absent[i & 4095]!))));
  const hashAndLookupNs = Math.min(
    ...[0, 1, 2].map(() => timeLoop(400_000, (i) => index.lookup(keyDigest(presentKeys[i & 4095]!)))),
  );
  const objectJsonBytes = JSON.stringify(apiKeyObject(n - 1)).length;
  const point: IndexPoint = {
    keys: n,
    buildMs: Math.round(buildMs),
    heapBytes,
    bytesPerKey: Math.round(heapBytes / n),
    lookupNs: Math.round(lookupNs * 10) / 10,
    hashAndLookupNs: Math.round(hashAndLookupNs),
    missNs: Math.round(missNs * 10) / 10,
    objectJsonBytes,
  };
  // Keep the index alive until measured.
  if (index.size < 0) console.log(index);
  return point;
}

export function runIndexBench(sizes: number[], log: (s: string) => void): IndexPoint[] {
  const out: IndexPoint[] = [];
  for (const n of sizes) {
    const p = measureIndex(n);
    log(`${n} keys: build ${p.buildMs} ms, ${p.bytesPerKey} B/key, lookup ${p.lookupNs} ns, sha256+lookup ${p.hashAndLookupNs} ns, miss ${p.missNs} ns`);
    out.push(p);
  }
  return out;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { sizes: { type: "string", default: "1000,10000,100000,1000000" } } });
  const res = runIndexBench(values.sizes.split(",").map(Number), (s) => {
    console.error(`[index] ${s}`);
  });
  console.log(JSON.stringify(res, null, 2));
}
