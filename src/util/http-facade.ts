// node:http imported as an ES module builds its module namespace from every export of the
// builtin, and three of them are getters that load Node's bundled undici for the WebSocket
// classes (WebSocket, CloseEvent, MessageEvent), and undici loads node:http2: about 8 MiB of
// RSS in every process that imports node:http the ES-module way, which keyward's modules and
// client-node's do, though nothing in keyward opens a WebSocket. This resolve hook hands every
// ES-module import of node:http a module with the builtin's other exports (the builtin itself
// as the default); require("http") is left as it is.
import { registerHooks } from "node:module";

/** The builtin's exports that load undici when read. */
export const WEBSOCKET_EXPORTS: readonly string[] = ["WebSocket", "CloseEvent", "MessageEvent"];

/** Source of the module ES-module imports of node:http get in its place. */
export function httpFacadeSource(): string {
  const http = process.getBuiltinModule("node:http");
  const names = Object.getOwnPropertyNames(http).filter((n) => n !== "default" && !WEBSOCKET_EXPORTS.includes(n) && /^[A-Za-z_$][\w$]*$/.test(n));
  return ['const http = process.getBuiltinModule("node:http");', "export default http;", `export const { ${names.join(", ")} } = http;`].join("\n");
}

let installed = false;

/** Installs the hook once per process, before the first ES-module import of node:http. */
export function loadHttpWithoutWebSocket(): void {
  if (installed) return;
  installed = true;
  const url = `data:text/javascript,${encodeURIComponent(httpFacadeSource())}`;
  registerHooks({
    resolve(specifier, context, nextResolve) {
      if ((specifier === "node:http" || specifier === "http") && !context.conditions.includes("require")) return { url, format: "module", shortCircuit: true };
      return nextResolve(specifier, context);
    },
  });
}
