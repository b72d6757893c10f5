// Typed errors: every error keyward raises carries a stable code and, where it
// wraps another failure, a `cause`. Callers branch on `code`, never on messages.

export type ErrorCode =
  | "ConfigInvalid"
  | "ManifestInvalid"
  | "KubernetesRequestFailed"
  | "Timeout"
  /** A reconcile failed in a way retrying cannot fix (src/k8s/workqueue.ts TerminalError). */
  | "ReconcileTerminal"
  /** This replica stopped being the leader (the reason of the leader's AbortSignal). */
  | "LeadershipLost"
  /** A server could not bind its listen address. */
  | "ListenFailed"
  /** The process is stopping: a part was not started or registered (src/lifecycle). */
  | "Stopping"
  /** The limits store (Redis) could not be reached or refused keyward at start-up. */
  | "LimitsStoreFailed"
  /** The analytics store (SQLite file or PostgreSQL) could not be opened, reached or migrated at start-up. */
  | "AnalyticsStoreFailed"
  /** A batch of analytics rows did not fit the writer thread's string table (src/analytics/row-batch.ts); sent again from a new table. */
  | "AnalyticsBatchOutOfStep"
  /** A push to Alertmanager failed (src/alerts/alertmanager.ts); retried at the next evaluation. */
  | "AlertmanagerFailed"
  /** A reader joined a shared watch after it started listing (src/k8s/informer.ts CollectionWatch). */
  | "WatchStarted";

export class KeywardError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KeywardError";
    this.code = code;
  }
}

/** True when `err` is a KeywardError with one of the given codes. */
export function isKeywardError(err: unknown, ...codes: ErrorCode[]): err is KeywardError {
  return err instanceof KeywardError && (codes.length === 0 || codes.includes(err.code));
}
