// The decision log: one JSON line per check, for the user's log pipeline.
// It names the key by its public id and owner, never the key; the path is
// logged without its query string (a key may travel there). Allowed and denied
// decisions are sampled separately (deny lines are the interesting ones).
import type { CheckEvent } from "../check/event.ts";
import { streamSink } from "../log.ts";

export interface DecisionLogOptions {
  /** Where each line goes (without a newline). */
  sink: (line: string) => void;
  /** Fraction of allowed decisions written, 0 to 1. */
  sampleAllowed: number;
  /** Fraction of denied (and cancelled) decisions written, 0 to 1. */
  sampleDenied: number;
  random?: () => number;
}

/** Request fields are the caller's to choose: written at most 256 characters long. */
function clip(v: string | undefined): string | undefined {
  return v !== undefined && v.length > 256 ? `${v.slice(0, 256)}...` : v;
}

/** The fields of one decision line, in a fixed order. */
export function decisionRecord(e: CheckEvent): Record<string, unknown> {
  return {
    ts: new Date(e.at).toISOString(),
    msg: "decision",
    key_id: e.key?.keyId,
    owner: e.key?.owner,
    apikey: e.key ? `${e.key.namespace}/${e.key.name}` : undefined,
    policy: e.policy,
    rule: e.rule,
    route: e.route,
    method: clip(e.method),
    host: clip(e.host),
    path: clip(e.path),
    decision: e.outcome,
    reason: e.reason,
    status: e.status,
    latency_ms: Math.round(e.latencySeconds * 1e6) / 1e3,
    source: e.source,
    front: e.front,
  };
}

export class DecisionLog {
  private readonly options: Required<DecisionLogOptions>;

  constructor(opts: DecisionLogOptions) {
    const clamp = (x: number): number => (Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 1);
    this.options = { random: Math.random, ...opts, sampleAllowed: clamp(opts.sampleAllowed), sampleDenied: clamp(opts.sampleDenied) };
  }

  /** Writes the decision's line if the sample says so; returns whether it did. */
  write(e: CheckEvent): boolean {
    const rate = e.outcome === "allowed" ? this.options.sampleAllowed : this.options.sampleDenied;
    if (rate <= 0 || (rate < 1 && this.options.random() >= rate)) return false;
    const rec = decisionRecord(e);
    if (rate < 1) rec.sample_rate = rate;
    this.options.sink(JSON.stringify(rec));
    return true;
  }
}

/** The sink for a `--decision-log` destination; undefined for off. */
export function decisionLogSink(dest: string): ((line: string) => void) | undefined {
  // Shared with keyward's own log on stderr, so the two keep their lines whole and in order.
  if (dest === "stdout" || dest === "stderr") return streamSink(dest);
  return undefined;
}
