// The console's routing, shared by its hosted and local servers: /api/v1/...
// to the API (the usage API's handler, or the local server's forwarder),
// everything else to the pages. Every answer carries the console's security
// headers; none carries CORS headers, so no other origin may read an answer.
import type { IncomingMessage, ServerResponse } from "node:http";
import { SECURITY_HEADERS, type ConsoleFiles } from "./static.ts";
import { API_PREFIX } from "./views.ts";

/** Longest request target (path and query) the console accepts. */
export const MAX_TARGET_BYTES = 4096;

export type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** Sends a JSON error as the usage API does: `{"error": "..."}`, with the console's headers. */
export function sendError(res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}): void {
  const text = JSON.stringify({ error: message });
  res.writeHead(status, { ...SECURITY_HEADERS, "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), "cache-control": "no-store", ...headers });
  res.end(text);
}

/** The request's path, or undefined when its target is not a valid origin-form URL. */
export function pathOf(req: IncomingMessage): string | undefined {
  const target = req.url ?? "";
  if (!target.startsWith("/")) return undefined;
  try {
    return new URL(target, "http://console").pathname;
  } catch {
    return undefined;
  }
}

/** Routes a request to `api` (under /api/v1/) or to the pages, with the security headers set first. */
export function consoleRoutes(files: ConsoleFiles, api: Listener): Listener {
  return (req, res) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    if (Buffer.byteLength(req.url ?? "") > MAX_TARGET_BYTES) {
      sendError(res, 414, `the request target is longer than ${MAX_TARGET_BYTES} bytes`);
      return;
    }
    const path = pathOf(req);
    if (path === undefined) {
      sendError(res, 400, "the request target is not a path");
      return;
    }
    if (path.startsWith(API_PREFIX)) {
      api(req, res);
      return;
    }
    files.serve(req, res, path).catch(() => {
      if (!res.headersSent) sendError(res, 500, "the console could not read its files");
    });
  };
}
