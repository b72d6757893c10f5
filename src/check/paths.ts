// Paths are judged as the upstream will read them. Rules match the path as sent
// (not percent-decoded), so a path is accepted only if every common way of
// reading it gives the same segments: it is its own RFC 3986 normal form (no dot
// segments, escapes only where a character must be escaped, uppercase hex) and it
// has nothing that some servers read as structure and others as data (`;`, `\`,
// `//`, escaped `/` `\` `;` `%` `?` `#`, control characters). Anything else is refused
// with one of the problems below rather than guessed at. One pass over the path,
// stopping at the query; no allocation.

/** Why a path was refused; reported as `path_problem` in the decision log and metadata. */
export type PathProblem =
  | "dot_segment"
  | "empty_segment"
  | "semicolon"
  | "backslash"
  | "fragment"
  | "control_char"
  | "non_ascii"
  | "bad_escape"
  | "lowercase_escape"
  | "encoded_slash"
  | "encoded_backslash"
  | "encoded_dot"
  | "encoded_semicolon"
  | "encoded_percent"
  | "encoded_question_mark"
  | "encoded_hash"
  | "encoded_control"
  | "encoded_unreserved"
  | "invalid_utf8";

// Character classes for the scan (ASCII only; everything from 0x80 is non_ascii).
const OK = 0, SLASH = 1, DOT = 2, PERCENT = 3, QUERY = 4, REFUSE = 5;

const CLASS = new Uint8Array(128);
const REFUSED: (PathProblem | undefined)[] = new Array<PathProblem | undefined>(128).fill(undefined);
for (let c = 0; c < 128; c++) {
  if (c <= 0x20 || c === 0x7f) {
    CLASS[c] = REFUSE;
    REFUSED[c] = "control_char";
  }
}
CLASS[0x2f] = SLASH;
CLASS[0x2e] = DOT;
CLASS[0x25] = PERCENT;
CLASS[0x3f] = QUERY;
for (const [ch, problem] of [
  [";", "semicolon"],
  ["\\", "backslash"],
  ["#", "fragment"],
] as const) {
  CLASS[ch.charCodeAt(0)] = REFUSE;
  REFUSED[ch.charCodeAt(0)] = problem;
}

/** 0-15 for a hex digit, -1 otherwise. */
function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

function isLowerHex(c: number): boolean {
  return c >= 0x61 && c <= 0x66;
}

/** RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
function isUnreserved(b: number): boolean {
  return (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39) || b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e;
}

/** What an escaped byte below 0x80 means to an upstream that decodes it; undefined if harmless. */
function escapedAsciiProblem(b: number): PathProblem | undefined {
  switch (b) {
    case 0x2f:
      return "encoded_slash";
    case 0x5c:
      return "encoded_backslash";
    case 0x2e:
      return "encoded_dot";
    case 0x3b:
      return "encoded_semicolon";
    case 0x25:
      return "encoded_percent";
    case 0x3f:
      return "encoded_question_mark";
    case 0x23:
      return "encoded_hash";
  }
  if (b < 0x20 || b === 0x7f) return "encoded_control";
  if (isUnreserved(b)) return "encoded_unreserved";
  return undefined;
}

/** The byte escaped at `path[i]` ("%XY"), or -1 if there is no well-formed escape there. */
function escapedByte(path: string, i: number): number {
  if (path.charCodeAt(i) !== 0x25) return -1;
  const hi = hexValue(path.charCodeAt(i + 1));
  const lo = hexValue(path.charCodeAt(i + 2));
  return hi < 0 || lo < 0 ? -1 : (hi << 4) | lo;
}

/**
 * How many escaped continuation bytes follow the escaped lead byte `b` at
 * `path[i]`, or -1 if they do not make well-formed UTF-8 (RFC 3629: overlong
 * forms, surrogates and code points above U+10FFFF are refused, so `%C0%AF` is
 * never a `/` to a lenient decoder).
 */
function utf8Continuations(path: string, i: number, b: number): number {
  let n: number;
  let lo = 0x80;
  let hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf) n = 1;
  else if (b >= 0xe0 && b <= 0xef) {
    n = 2;
    if (b === 0xe0) lo = 0xa0;
    else if (b === 0xed) hi = 0x9f;
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 3;
    if (b === 0xf0) lo = 0x90;
    else if (b === 0xf4) hi = 0x8f;
  } else return -1;
  for (let k = 1; k <= n; k++) {
    const c = escapedByte(path, i + 3 * k);
    if (c < lo || c > hi) return -1;
    lo = 0x80;
    hi = 0xbf;
  }
  return n;
}

/**
 * The first reason `path` (with or without its query string, starting with `/`)
 * may be read differently by the upstream than keyward reads it, or undefined
 * when it has a single reading.
 */
export function pathProblem(path: string): PathProblem | undefined {
  const len = path.length;
  let segStart = 0;
  let dots = 0;
  // Escaped UTF-8 continuation bytes still expected (already checked to be there).
  let continuations = 0;
  let i = 0;
  for (; i < len; ) {
    const c = path.charCodeAt(i);
    const cls = c < 128 ? CLASS[c] : REFUSE;
    if (cls === OK) {
      i++;
    } else if (cls === SLASH || cls === QUERY) {
      const segLen = i - segStart;
      if (segLen > 0 && segLen === dots && dots <= 2) return "dot_segment";
      if (cls === QUERY) return undefined;
      if (segLen === 0 && i > 0) return "empty_segment";
      segStart = ++i;
      dots = 0;
    } else if (cls === DOT) {
      dots++;
      i++;
    } else if (cls === PERCENT) {
      const b = escapedByte(path, i);
      if (b < 0) return "bad_escape";
      if (b < 0x80) {
        const problem = escapedAsciiProblem(b);
        if (problem !== undefined) return problem;
      } else if (continuations > 0) {
        continuations--;
      } else {
        continuations = utf8Continuations(path, i, b);
        if (continuations < 0) return "invalid_utf8";
      }
      if (isLowerHex(path.charCodeAt(i + 1)) || isLowerHex(path.charCodeAt(i + 2))) return "lowercase_escape";
      i += 3;
    } else {
      return c < 128 ? REFUSED[c] : "non_ascii";
    }
  }
  const segLen = i - segStart;
  if (segLen > 0 && segLen === dots && dots <= 2) return "dot_segment";
  return undefined;
}
