// One HTTP request of the console's tests, with the answer as text.
import { request } from "node:http";

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** Sends `method path` to 127.0.0.1:port; `host`, when given, is sent as the Host header as is. */
export function send(port: number, path: string, headers: Record<string, string> = {}, method = "GET", host?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers: host === undefined ? headers : { host, ...headers }, setHost: host === undefined }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") });
      });
    });
    req.on("error", reject);
    req.end();
  });
}
