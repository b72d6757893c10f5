// API key material: generation, checksum, key ids and hashes.
//
// Format: <prefix>_<43 base62 characters: 256 bits from the CSPRNG><6 base62 characters: CRC-32>
//   e.g. shop_4ZbW...(43)...Q1x9aB
// The checksum covers "<prefix>_<random part>", so a scanner can tell a real
// keyward key from a random string offline, without calling anything
// (`keyward scan`, and the gitleaks rule in config/gitleaks.toml).
import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
export const RANDOM_CHARS = 43; // 62^43 > 2^256
export const CHECKSUM_CHARS = 6; // 62^6 > 2^32
export const DEFAULT_PREFIX = "kw";
/** Finds candidate keyward keys in text; `verifyKey` then checks the checksum. */
export const KEY_PATTERN = /\b([a-z][a-z0-9]{1,15})_([0-9A-Za-z]{49})\b/g;

/** Big-endian bytes to a fixed number of base62 digits. */
function base62(bytes: Uint8Array, width: number): string {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = "";
  for (let i = 0; i < width; i++) {
    out = ALPHABET.charAt(Number(n % 62n)) + out;
    n /= 62n;
  }
  return out;
}

function checksum(body: string): string {
  const c = crc32(Buffer.from(body, "utf8")) >>> 0;
  const b = Buffer.alloc(4);
  b.writeUInt32BE(c);
  return base62(b, CHECKSUM_CHARS);
}

/** A new key: 256 bits from the CSPRNG, the prefix and a checksum. */
export function generateKey(prefix: string = DEFAULT_PREFIX): string {
  // 32 random bytes = 256 bits, rendered in 43 base62 digits (62^43 > 2^256, so nothing is lost).
  const random = base62(randomBytes(32), RANDOM_CHARS);
  const body = `${prefix}_${random}`;
  return body + checksum(body);
}

/** True when `key` has keyward's format and a valid checksum. */
export function verifyKey(key: string): boolean {
  const m = /^([a-z][a-z0-9]{1,15})_([0-9A-Za-z]{49})$/.exec(key);
  if (!m) return false;
  const rest = m[2] ?? "";
  const body = `${m[1] ?? ""}_${rest.slice(0, RANDOM_CHARS)}`;
  return checksum(body) === rest.slice(RANDOM_CHARS);
}

/** `sha256:<hex>` of a key: all keyward stores. */
export function hashKey(key: string): string {
  return `sha256:${createHash("sha256").update(key, "utf8").digest("hex")}`;
}

/**
 * The short public id of a key version: `<prefix>_<8 base62 characters of its hash>`.
 * Derived from the hash, so it reveals nothing about the key; safe to log.
 */
export function keyIdFromHash(hash: string, prefix: string = DEFAULT_PREFIX): string {
  const hex = hash.startsWith("sha256:") ? hash.slice(7) : hash;
  return `${prefix}_${base62(Buffer.from(hex.slice(0, 12), "hex"), 8)}`;
}

/** The prefix of a key in keyward's format, or undefined. */
export function prefixOf(key: string): string | undefined {
  return verifyKey(key) ? key.slice(0, key.indexOf("_")) : undefined;
}

export interface WeakKeyReason {
  weak: true;
  reason: string;
}

/**
 * Rejects keys brought through existingSecret that are too weak to protect an API:
 * shorter than 32 characters, or under 128 bits of estimated entropy
 * (length times the Shannon entropy of its characters).
 */
export function checkKeyStrength(key: string): { weak: false } | WeakKeyReason {
  if (key.length < 32) return { weak: true, reason: `the key has ${key.length} characters; at least 32 are required` };
  if (key.length > 4096) return { weak: true, reason: "the key is longer than 4096 characters" };
  if (/\s/.test(key)) return { weak: true, reason: "the key contains white space" };
  const counts = new Map<string, number>();
  for (const ch of key) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let h = 0;
  for (const c of counts.values()) {
    const p = c / key.length;
    h -= p * Math.log2(p);
  }
  const bits = h * key.length;
  if (bits < 128) {
    return { weak: true, reason: `the key has about ${Math.floor(bits)} bits of entropy; at least 128 are required` };
  }
  return { weak: false };
}
