// Who an access log sender is, and when its entry's request ended: the checks
// src/accesslog/server.ts applies before an entry is read (ADR 0053).
import type { X509Certificate } from "node:crypto";
import type { Duration, HttpLogEntry } from "./proto.ts";

/**
 * The URI and DNS subjectAltNames of a certificate (a SPIFFE ID is a URI). Node lists them as
 * `DNS:a, URI:b`, quoting (JSON) a value that holds a comma or a quote.
 */
export function peerIdentities(cert: X509Certificate | undefined): string[] {
  const san = cert?.subjectAltName;
  if (!san) return [];
  const out: string[] = [];
  const re = /(DNS|URI|[A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/gy;
  for (let m = re.exec(san); m !== null && m[0] !== ""; m = re.exec(san)) {
    const [, kind, raw = ""] = m;
    if (kind !== "DNS" && kind !== "URI") continue;
    let value = raw;
    if (raw.startsWith('"')) {
      try {
        value = JSON.parse(raw) as string;
      } catch {
        continue;
      }
    }
    out.push(value);
  }
  return out;
}

/** Whether one of `identities` is allowed: equal to an entry, or starting with an entry's text before its final `*`. */
export function peerAllowed(identities: readonly string[], allowed: readonly string[]): boolean {
  return identities.some((id) => allowed.some((a) => (a.endsWith("*") ? id.startsWith(a.slice(0, -1)) : id === a)));
}

const ms = (d: Duration | undefined): number => (d ? Number(d.seconds ?? 0) * 1000 + (d.nanos ?? 0) / 1e6 : 0);

/** When the entry's request ended (its start plus the longest of its timings), in ms since the epoch; undefined without a start time. */
export function entryEndMs(e: HttpLogEntry): number | undefined {
  const cp = e.common_properties;
  const st = cp?.start_time;
  if (st?.seconds === undefined) return undefined;
  const start = Number(st.seconds) * 1000 + (st.nanos ?? 0) / 1e6;
  const end = start + Math.max(ms(cp?.duration), ms(cp?.time_to_last_downstream_tx_byte), ms(cp?.time_to_last_upstream_rx_byte));
  return Number.isFinite(end) ? end : undefined;
}
