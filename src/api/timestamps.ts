// A resource's timestamp (metadata.creationTimestamp and the like) in ms since the epoch. The
// types say Date; keyward's own client leaves the apiserver's JSON as it is, a string.

/** `t` in ms since the epoch; undefined when absent or unreadable. */
export function timestampMs(t: Date | string | undefined): number | undefined {
  if (t === undefined) return undefined;
  const ms = t instanceof Date ? t.getTime() : Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}
