// @kubernetes/client-node's KubeConfig (dist/config.js) imports the package's whole
// generated API client (dist/gen/index.js: every API group and model) for two
// small exports, createConfiguration and ServerConfiguration, which only its
// makeApiClient uses. keyward never calls makeApiClient (its own REST client does
// every request, ADR 0003), yet loading those modules costs each process about
// 40 MiB and a large share of its start-up (ADR 0034). This resolve hook hands
// config.js a module that exports the two from their own files instead.
//
// The same hook hands config.js, and the generated client's fetch library that
// createConfiguration's file imports, a stand-in for undici: they import it for the
// generated client's fetch calls and their dispatchers (createDispatcher, reached only
// through applySecurityAuthentication). Loading undici pulls in node:http2 and costs
// about 25 MiB, and keyward's requests (applyToHTTPSOptions, node:https) never use it.
// The stand-in's classes and fetch throw if anything uses them.
//
// It changes nothing else: other specifiers, and config.js as imported from
// anywhere, resolve as before. When this version of the package lays its files
// out differently, the hook is not installed and the package loads whole.
import { existsSync } from "node:fs";
import { registerHooks } from "node:module";
import { fileURLToPath } from "node:url";

const PACKAGE = "@kubernetes/client-node";

/** The specifier config.js imports the generated client by, and the files the two exports live in. */
const GEN_INDEX = "./gen/index.js";
const PARTS = { createConfiguration: "./gen/configuration.js", ServerConfiguration: "./gen/servers.js" } as const;

/** The modules that import undici, as config.js loads them with the stand-in above. */
const UNDICI_IMPORTERS = ["./config.js", "./gen/http/isomorphic-fetch.js"];

/** Source of the module they get in place of undici: the names they import, each failing if used. */
export const UNDICI_STAND_IN = [
  "const unused = (name) => new Error(`undici's ${name} is not loaded in keyward: keyward's requests go through node:https (src/k8s/rest.ts)`);",
  'export class Agent { constructor() { throw unused("Agent"); } }',
  'export class ProxyAgent { constructor() { throw unused("ProxyAgent"); } }',
  'export function fetch() { return Promise.reject(unused("fetch")); }',
].join("\n");

let installed: boolean | undefined;

/** Source of the module config.js gets in place of gen/index.js. */
export function slimGenModule(configUrl: string): string {
  return Object.entries(PARTS)
    .map(([name, file]) => `export { ${name} } from ${JSON.stringify(new URL(file, configUrl).href)};`)
    .join("\n");
}

/**
 * Installs the hook once per process, before the first import of src/k8s/client.ts;
 * returns whether it is installed.
 */
export function loadKubeConfigWithoutGeneratedClient(): boolean {
  if (installed !== undefined) return installed;
  const configUrl = import.meta.resolve(`${PACKAGE}/dist/config.js`);
  const importers = new Set(UNDICI_IMPORTERS.map((f) => new URL(f, configUrl).href));
  const files = [configUrl, ...importers, ...Object.values(PARTS).map((f) => new URL(f, configUrl).href)];
  installed = files.every((u) => existsSync(fileURLToPath(u)));
  if (!installed) return false;
  const shim = `data:text/javascript,${encodeURIComponent(slimGenModule(configUrl))}`;
  const undici = `data:text/javascript,${encodeURIComponent(UNDICI_STAND_IN)}`;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      if (specifier === GEN_INDEX && context.parentURL === configUrl) return { url: shim, format: "module", shortCircuit: true };
      if (specifier === "undici" && context.parentURL !== undefined && importers.has(context.parentURL)) return { url: undici, format: "module", shortCircuit: true };
      return nextResolve(specifier, context);
    },
  });
  return true;
}
