// A circuit breaker for the limits store: `failures` failed calls in a row open
// it; while open, no call is made. After `cooldownMs` one probe is let through
// (half-open): its success closes the breaker, its failure opens it again.
// Each change of state is reported once through onTransition.

export type BreakerState = "closed" | "open" | "half_open";

export interface BreakerOptions {
  failures: number;
  cooldownMs: number;
  now: () => number;
  onTransition: (to: BreakerState, from: BreakerState) => void;
}

export class Breaker {
  private st: BreakerState = "closed";
  private failed = 0;
  private openedAt = 0;
  private probing = false;
  private readonly options: BreakerOptions;

  constructor(options: BreakerOptions) {
    this.options = options;
  }

  get state(): BreakerState {
    return this.st;
  }

  /** True when a call may be made now; in half-open state, true for one probe at a time. */
  allow(): boolean {
    if (this.st === "closed") return true;
    if (this.st === "open") {
      if (this.options.now() - this.openedAt < this.options.cooldownMs) return false;
      this.move("half_open");
    }
    if (this.probing) return false;
    this.probing = true;
    return true;
  }

  success(): void {
    this.failed = 0;
    this.probing = false;
    if (this.st !== "closed") this.move("closed");
  }

  failure(): void {
    this.probing = false;
    this.failed += 1;
    if (this.st === "half_open" || (this.st === "closed" && this.failed >= this.options.failures)) {
      this.openedAt = this.options.now();
      this.move("open");
    }
  }

  private move(to: BreakerState): void {
    const from = this.st;
    this.st = to;
    this.options.onTransition(to, from);
  }
}
