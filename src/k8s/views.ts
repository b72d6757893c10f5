// Views of watched objects (ADR 0034): each reader cuts what arrives to what it reads.
// When readers share one watch, its cache keeps their union.

/** A view of an object: a copy holding what one reader reads. */
export type View<T> = (obj: T) => T;

const isRecord = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

/** `a` and `b` merged field by field: nested objects merged, anything else (arrays, values) taken from `a` when it has it. */
function merge(a: unknown, b: unknown): unknown {
  if (a === undefined) return b;
  if (!isRecord(a) || !isRecord(b)) return a;
  const out: Record<string, unknown> = { ...b };
  for (const [k, v] of Object.entries(a)) out[k] = merge(v, b[k]);
  return out;
}

/**
 * The view that keeps what any of `views` keeps: their results merged object by object
 * (metadata, spec and status each the union of what the views keep of it). Arrays and values
 * are not merged but taken whole from the first view that keeps them, so each view must keep
 * an array whole or not at all.
 */
export function unionOfViews<T>(...views: View<T>[]): View<T> {
  return (obj) => views.map((v) => v(obj)).reduce((acc, next) => merge(acc, next) as T);
}
