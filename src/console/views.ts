// The usage API's view names: what the usage API answers under /api/v1/, and
// all the console's local server forwards (docs/usage.md, docs/console.md).
export const VIEWS = ["keys", "timeline", "status-codes", "endpoints", "countries", "networks", "inventory", "key", "latency", "denials", "alerts", "review"] as const;

export type View = (typeof VIEWS)[number];

/** The path prefix of the views, on the usage API and on the console's servers. */
export const API_PREFIX = "/api/v1/";

export function isView(name: string): name is View {
  return (VIEWS as readonly string[]).includes(name);
}
