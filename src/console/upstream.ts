// Where the local console forwards the views, with the user's kubeconfig
// credentials: the kube-apiserver's aggregated usage API (the default), or the
// usage API itself (--usage-url) with the kubeconfig's bearer token.
import { readFile } from "node:fs/promises";
import { request as httpRequest, type RequestOptions } from "node:http";
import { request as httpsRequest } from "node:https";
import type { KubeConfig } from "@kubernetes/client-node";
import { KeywardError } from "../errors.ts";
import type { Upstream, UpstreamAnswer } from "./local.ts";
import type { View } from "./views.ts";

/** The usage API's path on the kube-apiserver (an aggregated API). */
export const AGGREGATED_PREFIX = "/apis/usage.keyward.dev/v1alpha1/views/";
/** Largest answer relayed. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;
const TIMEOUT_MS = 30_000;

function send(url: URL, options: RequestOptions): Promise<UpstreamAnswer> {
  const req = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = req(url, { ...options, method: "GET", timeout: TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER_BYTES) {
          res.destroy(new Error(`the answer is larger than ${MAX_ANSWER_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on("error", reject);
      res.on("end", () => {
        const etag = res.headers.etag;
        resolve({ status: res.statusCode ?? 502, body: Buffer.concat(chunks).toString("utf8"), ...(etag !== undefined ? { etag } : {}) });
      });
    });
    r.on("timeout", () => r.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    r.on("error", reject);
    r.end();
  });
}

/** The request options the kubeconfig's current user and cluster give (certificates, CA, bearer token, exec plugins). */
async function kubeOptions(kc: KubeConfig): Promise<RequestOptions & { ca?: unknown; cert?: unknown; key?: unknown; rejectUnauthorized?: boolean }> {
  const opts: RequestOptions = { headers: { accept: "application/json" } };
  await kc.applyToHTTPSOptions(opts);
  return opts;
}

/** The kube-apiserver's aggregated path, with every credential the kubeconfig holds, as kubectl would send them. */
export function apiserverUpstream(kc: KubeConfig): Upstream {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KeywardError("ConfigInvalid", "the kubeconfig has no current cluster");
  const server = new URL(cluster.server);
  const base = server.pathname.replace(/\/+$/, "");
  return {
    where: `${server.origin}${base}${AGGREGATED_PREFIX}`,
    get: async (view: View, search: string, ifNoneMatch?: string) => {
      const o = await kubeOptions(kc);
      if (ifNoneMatch !== undefined) o.headers = { ...(o.headers as Record<string, string>), "if-none-match": ifNoneMatch };
      return send(new URL(`${base}${AGGREGATED_PREFIX}${view}${search}`, server), o);
    },
  };
}

/** The Authorization header of a bearer token in `o`, or undefined. */
function bearerOf(o: RequestOptions): string | undefined {
  const headers = o.headers as Record<string, string | undefined> | undefined;
  const auth = headers?.Authorization ?? headers?.authorization;
  return auth?.startsWith("Bearer ") ? auth : undefined;
}

/** The Authorization header the kubeconfig's current user sends with a bearer token (a token, a token file or an exec plugin's), or undefined. */
export async function kubeconfigBearer(kc: KubeConfig): Promise<string | undefined> {
  return bearerOf(await kubeOptions(kc));
}

/**
 * The usage API at `usageUrl` (…/api/v1/ is appended), with the kubeconfig's bearer token only;
 * TLS is verified with `caFile` when given, else the kubeconfig cluster's CA, else the system's.
 */
export async function usageUrlUpstream(kc: KubeConfig, usageUrl: string, caFile?: string): Promise<Upstream> {
  let url: URL;
  try {
    url = new URL(usageUrl);
  } catch (err) {
    throw new KeywardError("ConfigInvalid", `--usage-url ${usageUrl}: not a URL`, { cause: err });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new KeywardError("ConfigInvalid", `--usage-url ${usageUrl}: http or https only`);
  if (url.search || url.hash || url.username || url.password) throw new KeywardError("ConfigInvalid", `--usage-url ${usageUrl}: give scheme, host, port and an optional path only`);
  if (!(await kubeconfigBearer(kc))) throw new KeywardError("ConfigInvalid", "--usage-url sends the kubeconfig user's bearer token, and the current user has none (a client certificate is not accepted by the usage API)");
  const ca = caFile ? await readFile(caFile) : undefined;
  const base = url.pathname.replace(/\/+$/, "");
  return {
    where: `${url.origin}${base}/api/v1/`,
    get: async (view: View, search: string, ifNoneMatch?: string) => {
      const o = await kubeOptions(kc);
      const auth = bearerOf(o);
      if (!auth) throw new KeywardError("ConfigInvalid", "the kubeconfig user has no bearer token");
      return send(new URL(`${base}/api/v1/${view}${search}`, url), {
        headers: { accept: "application/json", authorization: auth, ...(ifNoneMatch !== undefined ? { "if-none-match": ifNoneMatch } : {}) },
        ...(ca ? { ca } : o.ca ? { ca: o.ca as Buffer } : {}),
        ...(o.rejectUnauthorized === false ? { rejectUnauthorized: false } : {}),
      });
    },
  };
}
