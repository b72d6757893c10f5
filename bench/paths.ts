// The path check of the check path (src/check/paths.ts) against the one regular
// expression it replaced, on paths of the bench mix's shape: ns per path.
//
//   node bench/paths.ts
import { pathProblem } from "../src/check/paths.ts";

const PREVIOUS = /(?:^|\/)(?:\.|%2e){1,2}(?:\/|$)|\\/i;
const PATHS = [
  "/v1/orders/42",
  "/v1/orders",
  "/api/v2/customers/1234567/orders/98765/items?limit=10&page=2",
  "/files/reports/2026/q3/summary%20final%C3%A9.pdf",
  "/v1/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p",
];

const ROUNDS = 2_000_000;

function report(name: string, t0: bigint, sink: number): void {
  const ns = Number(process.hrtime.bigint() - t0) / ROUNDS;
  console.log(`${name.padEnd(28)} ${ns.toFixed(1)} ns/path${sink < 0 ? "" : ""}`);
}

// One loop per candidate, so that neither call site sees the other function.
function regexpLoop(): void {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ROUNDS; i++) if (PREVIOUS.test(PATHS[i % PATHS.length] ?? "")) sink++;
  report("regexp (before)", t0, sink);
}

function scanLoop(): void {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ROUNDS; i++) if (pathProblem(PATHS[i % PATHS.length] ?? "") !== undefined) sink++;
  report("pathProblem (char scan)", t0, sink);
}

for (const p of PATHS) if (pathProblem(p) !== undefined) throw new Error(`bench path refused: ${p}`);
for (let run = 0; run < 5; run++) {
  regexpLoop();
  scanLoop();
}
