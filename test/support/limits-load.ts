// Checks under load while a fault runs, for the limits store's fault suites:
// 8 concurrent loops of checks over 4 connections to one keyward, and what each
// answered, and when, relative to the fault's start and end.
import { expect } from "vitest";
import { authzClient } from "../conformance/harness.ts";
import { decisionLatencies, percentileOf, type KeywardProcess } from "./keyward.ts";
import { eventually } from "./k8s.ts";

export type AuthzClient = ReturnType<typeof authzClient>;

export interface UnderLoad {
  /** What each check took at the client, in ms. */
  ms: number[];
  /** Each check's HTTP status. */
  statuses: number[];
  /** Checks answered while the fault ran, and of them admitted. */
  during: number;
  admittedDuring: number;
  /** Calls that failed at the client (no answer). */
  errors: number;
}

/** Checks (`ask` answers a status) before, during and after `fault`: 200 before and 200 after it at least. */
export async function underLoad(grpcPort: number, ask: (c: AuthzClient) => Promise<number>, fault: () => Promise<void>): Promise<UnderLoad> {
  const clients = Array.from({ length: 4 }, () => authzClient(grpcPort, { ownConnection: true }));
  const ms: number[] = [];
  const statuses: number[] = [];
  let errors = 0;
  let phase: "before" | "during" | "after" = "before";
  let during = 0;
  let admittedDuring = 0;
  let stop = false;
  const loop = async (i: number): Promise<void> => {
    const c = clients[i % clients.length] as AuthzClient;
    while (!stop) {
      const t0 = performance.now();
      try {
        const status = await ask(c);
        ms.push(performance.now() - t0);
        statuses.push(status);
        if (phase === "during") {
          during++;
          if (status === 200) admittedDuring++;
        }
      } catch {
        errors++;
      }
    }
  };
  const loops = Array.from({ length: 8 }, (_, i) => loop(i));
  try {
    await eventually(() => (statuses.length >= 200 ? true : undefined), 20_000, "checks before the fault");
    phase = "during";
    await fault();
    phase = "after";
    const after = statuses.length;
    await eventually(() => (statuses.length >= after + 200 ? true : undefined), 20_000, "checks after the fault");
  } finally {
    stop = true;
    await Promise.all(loops);
    for (const c of clients) c.close();
  }
  return { ms, statuses, during, admittedDuring, errors };
}

export interface Waits {
  /** Inside keyward (its decision log), from `logged` on: p99 and max, in ms. */
  insideP99: number;
  insideMax: number;
  /** At the client: p99 and max, in ms. */
  clientP99: number;
  clientMax: number;
}

/** How long the checks of `result` waited inside keyward (--decision-log=stdout) and at the client. */
export async function waitsOf(kw: KeywardProcess, logged: number, result: UnderLoad): Promise<Waits> {
  // The decision log is written off the check path: wait for every line.
  const inside = await eventually(
    () => {
      const lines = decisionLatencies(kw.output()).slice(logged);
      return lines.length >= result.statuses.length ? lines : undefined;
    },
    10_000,
    "the decision log of every check",
  );
  const sorted = [...result.ms].sort((x, y) => x - y);
  return {
    insideP99: percentileOf(inside, 99),
    insideMax: Math.max(...inside),
    clientP99: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
    clientMax: sorted[sorted.length - 1] ?? 0,
  };
}

/** What a check may wait during an outage, with a 50 ms deadline on a shared two-core machine. */
export const OUTAGE_BOUNDS = {
  deadlineMs: 50,
  /** Inside keyward: 99% of checks wait at most the deadline and this. */
  marginMs: 100,
  /** Inside keyward, every check: the deadline's timer answers each one, but a process can wait this long for the CPU. */
  schedulingMs: 500,
  /** Seen by the client: nothing hangs. */
  clientMaxMs: 2000,
};

/**
 * Prints an outage's figures (`what`, e.g. "Redis killed") and holds them to OUTAGE_BOUNDS: every
 * check answered and admitted (the local fallback), none waiting much past the deadline.
 */
export function expectOutageBounded(what: string, result: UnderLoad, w: Waits): void {
  console.log(
    `${what}: ${result.statuses.length} checks, ${result.during} during the outage of which ${result.admittedDuring} admitted (local fallback); ` +
      `inside keyward p99 ${w.insideP99} ms, max ${w.insideMax} ms; at the client max ${w.clientMax.toFixed(1)} ms, p99 ${w.clientP99.toFixed(1)} ms; client errors ${result.errors}`,
  );
  expect(w.insideP99).toBeLessThan(OUTAGE_BOUNDS.deadlineMs + OUTAGE_BOUNDS.marginMs);
  expect(w.insideMax).toBeLessThan(OUTAGE_BOUNDS.deadlineMs + OUTAGE_BOUNDS.schedulingMs);
  expect(result.errors).toBe(0);
  expect(result.statuses.every((s) => s === 200)).toBe(true);
  expect(w.clientMax).toBeLessThan(OUTAGE_BOUNDS.clientMaxMs);
  expect(result.during).toBeGreaterThan(0);
}
