// Pushes alerts to Alertmanager's v2 API (POST /api/v2/alerts). A firing alert
// is sent with an endsAt a few evaluations ahead and re-sent every evaluation,
// so Alertmanager keeps it active while the evaluator lives and resolves it by
// itself if the evaluator stops; a resolved alert is sent once with endsAt now.
import { KeywardError } from "../errors.ts";

export interface PushedAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt: string;
}

export interface AlertmanagerClient {
  push(alerts: readonly PushedAlert[]): Promise<void>;
}

export function alertmanagerClient(baseUrl: string, timeoutMs: number): AlertmanagerClient {
  const url = `${baseUrl.replace(/\/+$/, "")}/api/v2/alerts`;
  return {
    async push(alerts) {
      if (alerts.length === 0) return;
      let res: Response;
      try {
        res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(alerts), signal: AbortSignal.timeout(timeoutMs) });
      } catch (err) {
        throw new KeywardError("AlertmanagerFailed", `alertmanager ${url}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
      }
      if (!res.ok) {
        const body = (await res.text().catch(() => "")).slice(0, 200);
        throw new KeywardError("AlertmanagerFailed", `alertmanager ${url}: HTTP ${res.status} ${body}`);
      }
      await res.body?.cancel();
    },
  };
}
