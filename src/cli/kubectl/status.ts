// `kubectl keyward status NAME`: the ApiKey's state, then one row per key version
// with its last use (status.usage.keys, written by the data plane).
import type { ApiKey } from "../../api/types.ts";
import { formatTable } from "../table.ts";
import { readyOf } from "./enforce.ts";

export function renderStatus(ak: ApiKey): string {
  const st = ak.status ?? {};
  const ready = readyOf(ak);
  const source = ak.spec.keyHash ? "declared hash (spec.keyHash)" : ak.spec.existingSecret ? `your Secret ${ak.spec.existingSecret.name}` : `Secret ${st.secretName ?? "-"}`;
  const lines: [string, string][] = [
    ["ApiKey", `${ak.metadata.namespace}/${ak.metadata.name}`],
    ["Owner", ak.spec.owner],
    ["Scopes", (ak.spec.scopes ?? []).join(", ") || "-"],
    ["State", st.state ?? "not reported yet"],
    ["Ready", ready ? `${ready.status} (${ready.reason})${ready.message ? `: ${ready.message}` : ""}` : "-"],
    ["Key from", source],
    ["Expires", ak.spec.expiresAt ?? "never"],
    ["Next rotation", st.nextRotationAt ?? "-"],
    ["Last rotation", st.lastRotationAt ?? "-"],
    ["Last used", st.usage?.lastUsedAt ?? "never (or not reported)"],
    ["Requests 24h", st.usage?.requests24h === undefined ? "-" : String(st.usage.requests24h)],
  ];
  const width = Math.max(...lines.map(([k]) => k.length)) + 2;
  const head = lines.map(([k, v]) => `${`${k}:`.padEnd(width)}${v}`).join("\n");
  const used = new Map((st.usage?.keys ?? []).map((k) => [k.id, k.lastUsedAt]));
  const rows = (st.keys ?? []).map((k) => [k.id, k.state, k.createdAt ?? "-", k.state === "grace" ? (k.expiresAt ?? "-") : "-", used.get(k.id) ?? "never"]);
  const table = rows.length > 0 ? formatTable(["KEY ID", "STATE", "ISSUED", "GRACE ENDS", "LAST USED"], rows) : "no key versions yet";
  return `${head}\n\n${table}\n`;
}
