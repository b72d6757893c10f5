// Proof that keyward itself checked a request (ADR 0053). With a shared proof
// key, the check of an allowed request with a request id adds `proof` to its
// dynamic metadata: the check time and an HMAC-SHA256, under that key, of the
// request id, key id, ApiKey uid and check time. Envoy files the metadata with
// the request's access log entry; the access log service recomputes the HMAC
// from the entry and drops an entry whose proof is missing, wrong or older
// than its window. A sender that can write entries (even an authenticated
// one) cannot make a valid proof for a request keyward never checked, on any
// replica: the key is the same on all of them. Several keys may be loaded: the
// first signs, all verify (rotation).
import { createHmac, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { KeywardError } from "../errors.ts";

/** The dynamic metadata field that holds the proof. */
export const PROOF_FIELD = "proof";

/** Shortest key accepted, in bytes. */
export const MIN_PROOF_KEY_BYTES = 32;

/** Bytes of the HMAC kept (128 bits). */
const MAC_BYTES = 16;

/** Reads the proof keys: one per non-empty line, each at least 32 bytes; the first signs. Errors name the file, never a key. */
export async function loadProofKeys(file: string): Promise<Buffer[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new KeywardError("ConfigInvalid", `--access-log-proof-key-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`, { cause: err });
  }
  const keys = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .map((l) => Buffer.from(l, "utf8"));
  if (keys.length === 0) throw new KeywardError("ConfigInvalid", `--access-log-proof-key-file: ${file} holds no key`);
  const short = keys.findIndex((k) => k.length < MIN_PROOF_KEY_BYTES);
  if (short !== -1) throw new KeywardError("ConfigInvalid", `--access-log-proof-key-file: key ${short + 1} in ${file} is shorter than ${MIN_PROOF_KEY_BYTES} bytes`);
  return keys;
}

export interface ProvenRequest {
  requestId: string;
  keyId: string;
  uid: string;
}

function mac(key: Buffer, r: ProvenRequest, atSeconds: number): Buffer {
  return createHmac("sha256", key).update(`${r.requestId}\n${r.keyId}\n${r.uid}\n${atSeconds}`).digest().subarray(0, MAC_BYTES);
}

/** The proof of a request checked at `nowMs`: `<seconds>.<base64url MAC>`. */
export function proofOf(key: Buffer, r: ProvenRequest, nowMs: number): string {
  const at = Math.floor(nowMs / 1000);
  return `${at}.${mac(key, r, at).toString("base64url")}`;
}

const PROOF_RE = /^(\d{1,12})\.([A-Za-z0-9_-]{22})$/;

/**
 * Whether `proof` was made by one of `keys` for this request, at most `maxAgeMs` before `nowMs`
 * (and not more than a minute after it).
 */
export function verifyProof(keys: readonly Buffer[], proof: string | undefined, r: ProvenRequest, nowMs: number, maxAgeMs: number): boolean {
  const m = proof === undefined ? null : PROOF_RE.exec(proof);
  if (!m) return false;
  const at = Number(m[1]);
  if (at * 1000 < nowMs - maxAgeMs || at * 1000 > nowMs + 60_000) return false;
  const got = Buffer.from(m[2] ?? "", "base64url");
  return got.length === MAC_BYTES && keys.some((k) => timingSafeEqual(mac(k, r, at), got));
}
