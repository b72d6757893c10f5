// One process's life. Its parts start one after another and register with the
// lifecycle; the process is ready when every part is; on SIGTERM or SIGINT (or
// a fatal error) the parts stop in the reverse order of their start, each
// finishing before the next, and the process exits. The signal handlers are
// installed before any start-up work, so a signal during a slow start (a cache
// sync against a stalled apiserver) still stops what has started and exits
// cleanly instead of dying in the middle.
import { KeywardError } from "../errors.ts";
import type { Logger } from "../log.ts";

/** A started part of the process. */
export interface Part {
  /** Stops it, finishing what it serves; the next part stops only once this resolves. */
  stop(): Promise<void>;
  /** Can it serve? A part without ready() is ready once started. */
  ready?(): boolean;
}

/** Where the signals come from (the process; a fake in tests). */
export interface SignalSource {
  on(signal: NodeJS.Signals, listener: () => void): unknown;
}

export interface LifecycleOptions {
  log: Pick<Logger, "info" | "warn">;
  /** The signals that begin the stop sequence; default SIGTERM and SIGINT. */
  signals?: readonly NodeJS.Signals[];
  /** Default the process. */
  source?: SignalSource;
  /** Ends the process once the parts have stopped; default process.exit. */
  exit?: (code: number) => void;
}

/** Exit code when a second signal ends the process before its parts have stopped. */
export const FORCED_EXIT_CODE = 130;

export class Lifecycle {
  private readonly log: Pick<Logger, "info" | "warn">;
  private readonly exit: (code: number) => void;
  private readonly parts: { name: string; part: Part }[] = [];
  private readonly inStart = new Set<string>();
  private stopping: Promise<void> | undefined;

  constructor(opts: LifecycleOptions) {
    this.log = opts.log;
    this.exit = opts.exit ?? ((code) => process.exit(code));
    const source = opts.source ?? process;
    for (const signal of opts.signals ?? ["SIGTERM", "SIGINT"]) {
      source.on(signal, () => {
        this.onSignal(signal);
      });
    }
  }

  /** The stop sequence has begun. */
  get isStopping(): boolean {
    return this.stopping !== undefined;
  }

  /** Every registered part is ready, and the process is not stopping. */
  ready(): boolean {
    return !this.stopping && this.parts.every(({ part }) => part.ready?.() ?? true);
  }

  /** Registers a part that is already running: it stops before every part registered earlier. */
  add(name: string, part: Part): void {
    if (this.stopping) throw new KeywardError("Stopping", `${name} not registered: the process is stopping`);
    this.parts.push({ name, part });
  }

  /**
   * Starts the part `name` and registers it. Should the stop sequence begin while it starts, the
   * sequence does not wait for it (a start can hang on a stalled apiserver); if the start finishes
   * before the process exits, the part is stopped at once and this rejects with code Stopping.
   */
  async start<T extends Part>(name: string, start: () => Promise<T>): Promise<T> {
    if (this.stopping) throw new KeywardError("Stopping", `${name} not started: the process is stopping`);
    this.log.info("starting", { part: name });
    this.inStart.add(name);
    let part: T;
    try {
      part = await start();
    } finally {
      this.inStart.delete(name);
    }
    if (this.isStopping) {
      await this.stopPart(name, part);
      throw new KeywardError("Stopping", `${name} stopped as soon as it started: the process is stopping`);
    }
    this.parts.push({ name, part });
    this.log.info("started", { part: name });
    return part;
  }

  /** Stops every part, last started first, then exits with `code`. Later calls return the same sequence. */
  shutdown(reason: string, code = 0): Promise<void> {
    if (this.stopping) return this.stopping;
    const starting = [...this.inStart];
    this.log.info("shutting down", { signal: reason, ...(starting.length ? { starting } : {}) });
    this.stopping = (async () => {
      for (const { name, part } of this.parts.reverse()) await this.stopPart(name, part);
      this.log.info("stopped", { code });
      this.exit(code);
    })();
    return this.stopping;
  }

  private onSignal(signal: NodeJS.Signals): void {
    if (!this.stopping) {
      void this.shutdown(signal);
      return;
    }
    this.log.warn("second signal: exiting before every part has stopped", { signal });
    this.exit(FORCED_EXIT_CODE);
  }

  private async stopPart(name: string, part: Part): Promise<void> {
    this.log.info("stopping", { part: name });
    try {
      await part.stop();
    } catch (err) {
      this.log.warn("error while stopping", { part: name, err });
    }
  }
}
