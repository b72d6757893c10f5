// @ts-check
// Polling a page's views while it is shown: every `intervalMs`, one round at a time (a slow
// answer delays the next round rather than stacking them), paused while the tab is hidden and
// run at once when it is shown again.

/**
 * @typedef {object} PollerOptions
 * @property {number} intervalMs 0 or less: run once, never poll
 * @property {() => Promise<void>} run
 * @property {Pick<Document, "addEventListener" | "removeEventListener" | "visibilityState">} doc
 * @property {(fn: () => void, ms: number) => unknown} [setTimer]
 * @property {(handle: unknown) => void} [clearTimer]
 */

export class Poller {
  /** @type {PollerOptions} */
  #o;
  /** @type {unknown} */
  #timer = undefined;
  #running = false;
  #stopped = false;
  #onVisibility = () => {
    if (this.#o.doc.visibilityState === "hidden") this.#cancel();
    else if (this.#timer === undefined && !this.#running) void this.#tick();
  };

  /** @param {PollerOptions} options */
  constructor(options) {
    this.#o = options;
  }

  /** Runs a first round now, then polls. */
  start() {
    this.#o.doc.addEventListener("visibilitychange", this.#onVisibility);
    void this.#tick();
  }

  stop() {
    this.#stopped = true;
    this.#cancel();
    this.#o.doc.removeEventListener("visibilitychange", this.#onVisibility);
  }

  /** True while a timer for the next round is set. */
  get scheduled() {
    return this.#timer !== undefined;
  }

  #cancel() {
    if (this.#timer === undefined) return;
    (this.#o.clearTimer ?? ((h) => { clearTimeout(/** @type {number} */ (h)); }))(this.#timer);
    this.#timer = undefined;
  }

  async #tick() {
    this.#timer = undefined;
    this.#running = true;
    try {
      await this.#o.run();
    } catch {
      // run shows its own errors on the page; polling goes on, so the page recovers by itself
    } finally {
      this.#running = false;
    }
    if (this.#stopped || this.#o.intervalMs <= 0 || this.#o.doc.visibilityState === "hidden") return;
    this.#timer = (this.#o.setTimer ?? setTimeout)(() => void this.#tick(), this.#o.intervalMs);
  }
}
