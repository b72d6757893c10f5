// Listen addresses as keyward's settings write them.

/** Splits "host:port" or "[v6]:port". */
export function splitHostPort(address: string): [string, string] {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(address);
  if (!m) throw new Error(`"${address}" is not host:port`);
  return [m[1] ?? "", m[2] ?? "0"];
}
