// Units of the analytics store's time columns (ms since the epoch), in a module of their own:
// the data plane's main thread uses them without loading the query layer (ADR 61).
export const DAY_MS = 86_400_000;
export const HOUR_MS = 3_600_000;
