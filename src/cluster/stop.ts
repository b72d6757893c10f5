// Stopping the worker pool: every live worker is asked to stop (it finishes
// what it serves); those still running after the timeout are killed.
import type { Logger } from "../log.ts";
import type { Slot, ToWorker } from "./protocol.ts";

export interface StopOptions {
  log: Pick<Logger, "warn">;
  timeoutMs: number;
  /** Registers a callback the pool calls after each worker exit it has handled; returns its removal. */
  onExit(f: () => void): () => void;
}

/** Resolves once no slot has a worker. Pending restarts are cancelled. */
export async function stopWorkers(slots: readonly Slot[], opts: StopOptions): Promise<void> {
  for (const s of slots) clearTimeout(s.timer);
  const live = slots.filter((s) => s.worker !== undefined);
  if (live.length === 0) return;
  await new Promise<void>((resolve) => {
    const kill = setTimeout(() => {
      for (const s of slots) {
        if (!s.worker) continue;
        opts.log.warn("authz worker did not stop in time; killing it", { worker: s.slot, pid: s.worker.process.pid });
        s.worker.process.kill("SIGKILL");
      }
    }, opts.timeoutMs);
    const off = opts.onExit(() => {
      if (slots.some((s) => s.worker !== undefined)) return;
      clearTimeout(kill);
      off();
      resolve();
    });
    const msg: ToWorker = { kind: "keyward:stop" };
    for (const s of live) {
      try {
        s.worker?.send(msg);
      } catch {
        s.worker?.process.kill("SIGTERM");
      }
    }
  });
}
