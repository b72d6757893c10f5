// What keyward's HTTP/2 server allows a peer, and the token bucket behind the
// rate limits. docs/adr/0028-http2-flood-limits.md gives the defaults and why.

/** A rate limit: up to `burst` at once, refilled at `perSecond`. */
export interface Rate {
  burst: number;
  perSecond: number;
}

export interface H2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: open streams per connection; more are refused (REFUSED_STREAM). */
  maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE (RFC 9113 §6.5.2 octets); larger requests are answered 431. */
  maxHeaderListSize: number;
  /** Octets of request body kept per stream; past it the handler's onEnd sees bodyTooLarge. */
  maxBody: number;
  /** The connection's receive window: at most this many body octets are buffered per connection. */
  connectionWindow: number;
  /**
   * Milliseconds a new connection has to send the client preface and its first SETTINGS;
   * a connection that does not is closed, so idle sockets cannot pile up before speaking.
   */
  prefaceTimeoutMs: number;
  /** Connections one server (one process) keeps open; sockets past it are closed at once. */
  maxConnections: number;
  /**
   * A connection with no open stream and no new one for this long is closed (GOAWAY NO_ERROR),
   * and so is one whose peer has not read what keyward wrote for this long. 0 disables both.
   */
  idleTimeoutMs: number;
  /**
   * Milliseconds a connection closed for a protocol error or an overstepped limit has to flush
   * its GOAWAY; then its socket is destroyed, whether or not the peer read it.
   */
  failCloseMs: number;
  /** CONTINUATION frames one header block may take. */
  maxContinuationFrames: number;
  /** Empty DATA, HEADERS or CONTINUATION frames (without END_STREAM) in a row. */
  maxConsecutiveEmptyFrames: number;
  /** DATA frames under SMALL_DATA octets without END_STREAM, per stream. */
  maxSmallDataFramesPerStream: number;
  /** SETTINGS frames (not acknowledgements). */
  settingsRate: Rate;
  /** PING frames (not acknowledgements) while keyward has no response to send; a response refills it. */
  pingRate: Rate;
  /** Streams reset before keyward answered them, by the peer or refused by keyward (Rapid Reset). */
  resetRate: Rate;
  /** Frames for streams that are already closed: small DATA, RST_STREAM, trailers of reset streams. */
  strayFrameRate: Rate;
  /** PRIORITY frames per stream the peer opened (plus one stream's worth). */
  maxPriorityPerStream: number;
  /** WINDOW_UPDATE frames per DATA frame keyward sent (plus two per stream and a base of 100). */
  maxWindowUpdatesPerDataFrame: number;
  /** Control frames (SETTINGS and PING acknowledgements, RST_STREAM) waiting on a peer that does not read. */
  maxOutboundControlFrames: number;
  /** Frames of any type waiting on a peer that does not read. */
  maxOutboundFrames: number;
}

/** DATA frames shorter than this (octets) that do not end the stream count against maxSmallDataFramesPerStream. */
export const SMALL_DATA = 1024;

export const DEFAULT_LIMITS: H2Limits = {
  maxConcurrentStreams: 1024,
  maxHeaderListSize: 16 * 1024,
  maxBody: 4 * 1024 * 1024 + 5,
  connectionWindow: 8 * 1024 * 1024,
  prefaceTimeoutMs: 10_000,
  maxConnections: 10_000,
  idleTimeoutMs: 300_000,
  failCloseMs: 2000,
  maxContinuationFrames: 8,
  maxConsecutiveEmptyFrames: 1,
  maxSmallDataFramesPerStream: 32,
  settingsRate: { burst: 100, perSecond: 10 },
  pingRate: { burst: 100, perSecond: 10 },
  resetRate: { burst: 1000, perSecond: 100 },
  strayFrameRate: { burst: 1000, perSecond: 100 },
  maxPriorityPerStream: 100,
  maxWindowUpdatesPerDataFrame: 10,
  maxOutboundControlFrames: 1000,
  maxOutboundFrames: 10_000,
};

/** What a peer overstepped; the label of keyward_h2_violations_total. */
export type H2Violation =
  | "empty_frames"
  | "continuation"
  | "header_block"
  | "header_list"
  | "small_data"
  | "settings"
  | "ping"
  | "rst_stream"
  | "stray_frames"
  | "priority"
  | "window_update"
  | "outbound_control"
  | "outbound_frames"
  | "connections";

export const H2_VIOLATIONS: readonly H2Violation[] = [
  "empty_frames",
  "continuation",
  "header_block",
  "header_list",
  "small_data",
  "settings",
  "ping",
  "rst_stream",
  "stray_frames",
  "priority",
  "window_update",
  "outbound_control",
  "outbound_frames",
  "connections",
];

const monotonicMs = (): number => performance.now();

/**
 * A token bucket that reads the clock only when it ran dry: a frame that finds a token costs a
 * compare and a decrement.
 */
export class Bucket {
  private tokens: number;
  private last: number;
  private readonly rate: Rate;
  private readonly now: () => number;

  constructor(rate: Rate, now: () => number = monotonicMs) {
    this.rate = rate;
    this.now = now;
    this.tokens = rate.burst;
    this.last = now();
  }

  /** Takes a token; false when none is left. */
  take(): boolean {
    if (this.tokens >= 1) {
      // A full bucket accrues nothing: time counts from its first token taken.
      if (this.tokens === this.rate.burst) this.last = this.now();
      this.tokens--;
      return true;
    }
    const t = this.now();
    this.tokens = Math.min(this.rate.burst, this.tokens + ((t - this.last) * this.rate.perSecond) / 1000);
    this.last = t;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  /** Back to a full bucket. */
  refill(): void {
    this.tokens = this.rate.burst;
  }
}
