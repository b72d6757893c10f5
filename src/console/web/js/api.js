// @ts-check
// Calls to the usage API at the base the page names (<meta name="keyward-api-base">), and its
// errors as sentences a person can act on.

export class ApiError extends Error {
  /** @param {number} status 0: no answer at all @param {string} message @param {string} view */
  constructor(status, message, view) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.view = view;
  }
}

/**
 * What to tell the viewer about a failed call.
 * @param {number} status
 * @param {string} detail the API's own `error` text
 */
export function describeError(status, detail) {
  const why = detail === "" ? "" : ` (${detail})`;
  switch (status) {
    case 0:
      return `The console cannot reach its server${why}. Is \`keyward console\` still running?`;
    case 401:
      return `Not signed in: the usage API did not accept your credentials${why}. Check your kubeconfig's user, or sign in again.`;
    case 403:
      return `Not allowed: you may not get ApiKeys where this page reads${why}. Pick a namespace you may read.`;
    case 400:
      return `The filters are not valid${why}.`;
    case 404:
      return `Not found${why}.`;
    case 503:
      return `The usage API is unavailable for now${why}. The page retries by itself.`;
    default:
      return `The usage API answered ${status}${why}.`;
  }
}

/** The base URL of the usage API, resolved against the page. */
export function apiBase() {
  const meta = document.querySelector('meta[name="keyward-api-base"]');
  const content = meta?.getAttribute("content") ?? "api/v1/";
  return new URL(content, document.baseURI);
}

/**
 * The usage API's answer: the range and scope it read, and its rows (`items`) or its one object
 * (`item`, for key and review); the inventory adds `total`.
 * (An inventory asked without since or until names no range.)
 * @typedef {{ view: string, since?: string, until?: string, namespaces: string[] | "all", items?: unknown[], item?: unknown, total?: number }} Envelope
 */

/**
 * The rows of a list view.
 * @template T
 * @param {string} view @param {URLSearchParams} params
 * @returns {Promise<T[]>}
 */
export async function getItems(view, params) {
  const body = await getView(view, params);
  if (!Array.isArray(body.items)) throw new ApiError(500, `the ${view} view answered no items`, view);
  return /** @type {T[]} */ (body.items);
}

/**
 * The one object of the key and review views.
 * @template T
 * @param {string} view @param {URLSearchParams} params
 * @returns {Promise<T>}
 */
export async function getItem(view, params) {
  const body = await getView(view, params);
  if (body.item === null || typeof body.item !== "object") throw new ApiError(500, `the ${view} view answered no item`, view);
  return /** @type {T} */ (body.item);
}

/**
 * The last answer of each URL the API tagged (ETag), to ask again with If-None-Match: a view that
 * has not changed comes back as 304 without a body, and its held answer is reused. The few newest
 * URLs only (a page polls a handful).
 */
export class HeldAnswers {
  /** @type {Map<string, { etag: string, body: Envelope }>} */
  #held = new Map();
  #max;

  /** @param {number} max URLs held at most */
  constructor(max) {
    this.#max = max;
  }

  /** @param {string} url @returns {{ etag: string, body: Envelope } | undefined} */
  get(url) {
    return this.#held.get(url);
  }

  /** @param {string} url @param {string} etag @param {Envelope} body */
  set(url, etag, body) {
    this.#held.delete(url);
    this.#held.set(url, { etag, body });
    for (const oldest of this.#held.keys()) {
      if (this.#held.size <= this.#max) break;
      this.#held.delete(oldest);
    }
  }

  get size() {
    return this.#held.size;
  }
}

const held = new HeldAnswers(16);

/**
 * GET one view; throws ApiError. An answer the API tagged is asked for again with If-None-Match,
 * and a 304 gives back the same Envelope object as before (callers may compare them to skip work).
 * @param {string} view
 * @param {URLSearchParams} params
 * @param {AbortSignal} [signal]
 * @param {{ fetch: typeof fetch, held: HeldAnswers }} [io] for tests
 * @returns {Promise<Envelope>}
 */
export async function getView(view, params, signal, io = { fetch: (...args) => fetch(...args), held }) {
  const url = new URL(view, apiBase());
  url.search = params.toString();
  const key = url.href;
  const mine = io.held.get(key);
  /** @type {Record<string, string>} */
  const headers = { accept: "application/json", ...(mine ? { "if-none-match": mine.etag } : {}) };
  /** @type {Response} */
  let res;
  try {
    res = await io.fetch(url, { headers, credentials: "same-origin", ...(signal ? { signal } : {}) });
  } catch (err) {
    throw new ApiError(0, err instanceof Error ? err.message : String(err), view);
  }
  if (res.status === 304) {
    if (mine) return mine.body;
    throw new ApiError(304, "the answer was not modified, but none is held", view);
  }
  const text = await res.text();
  /** @type {unknown} */
  let body;
  try {
    body = text === "" ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const detail = body !== null && typeof body === "object" && "error" in body && typeof body.error === "string" ? body.error : "";
    throw new ApiError(res.status, detail, view);
  }
  if (body === null || typeof body !== "object") throw new ApiError(res.status, "the answer is not a JSON object", view);
  const envelope = /** @type {Envelope} */ (body);
  const etag = res.headers.get("etag");
  if (etag) io.held.set(key, etag, envelope);
  return envelope;
}
