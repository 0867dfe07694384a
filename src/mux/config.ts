import { INITIAL_WINDOW_BYTES, MAX_DATA_PAYLOAD_BYTES, MAX_WINDOW_BYTES } from '../protocol/index.js';
import { badOption, checkInteger, mergeOptions } from '../options.js';

/** Limits and timers of one session. Every queue the session keeps is bounded by one of these. */
export interface SessionConfig {
  /** Most streams open at once on the session, opened by either side. */
  maxStreams: number;
  /**
   * Most streams this side opened that the peer has not yet accepted (ACK or
   * RST); also the most the peer opened that this side has not yet accepted.
   */
  maxPendingOpens: number;
  /** Largest a stream's receive window may grow to by auto-tuning. */
  maxStreamWindowBytes: number;
  /**
   * Budget for window growth beyond the initial 64 KiB, shared by all streams
   * of the session. With `maxStreams`, it bounds what a peer can make this
   * side buffer: `maxStreams × 64 KiB + maxSessionWindowBytes`.
   */
  maxSessionWindowBytes: number;
  /** Largest DATA payload this side sends (the protocol allows up to 256 KiB). */
  maxFramePayloadBytes: number;
  /** Bytes queued in the transport before stream writers wait for it to drain. */
  sendBufferBytes: number;
  /** Interval between keepalive PINGs, which also measure RTT. 0 disables them. */
  pingIntervalMs: number;
  /** Silence from the peer after which it is declared dead. 0 disables; default 3 × pingIntervalMs. */
  keepaliveTimeoutMs: number | undefined;
  /** A transport whose writes stay blocked this long is dropped: the peer stopped reading. */
  writeTimeoutMs: number;
  /** How long close() lets streams finish after GOAWAY before it resets them. */
  drainTimeoutMs: number;
}

/** The documented defaults. */
export const DEFAULT_SESSION_CONFIG: Readonly<SessionConfig> = Object.freeze({
  maxStreams: 4096,
  maxPendingOpens: 512,
  maxStreamWindowBytes: 32 * 1024 * 1024,
  maxSessionWindowBytes: 64 * 1024 * 1024,
  maxFramePayloadBytes: 64 * 1024,
  sendBufferBytes: 256 * 1024,
  pingIntervalMs: 8000,
  keepaliveTimeoutMs: undefined,
  writeTimeoutMs: 30_000,
  drainTimeoutMs: 30_000,
});

/** A verified config: keepaliveTimeoutMs is resolved. */
export type ResolvedSessionConfig = SessionConfig & { keepaliveTimeoutMs: number };

const HOUR_MS = 3_600_000;

/** Merges `partial` over the defaults and verifies every value. */
export function resolveSessionConfig(partial?: Partial<SessionConfig>): ResolvedSessionConfig {
  const c = mergeOptions<SessionConfig>(DEFAULT_SESSION_CONFIG, partial);
  checkInteger('maxStreams', c.maxStreams, 1, 1_000_000);
  checkInteger('maxPendingOpens', c.maxPendingOpens, 1, 1_000_000);
  checkInteger('maxStreamWindowBytes', c.maxStreamWindowBytes, INITIAL_WINDOW_BYTES, MAX_WINDOW_BYTES);
  checkInteger('maxSessionWindowBytes', c.maxSessionWindowBytes, 0, MAX_WINDOW_BYTES);
  checkInteger('maxFramePayloadBytes', c.maxFramePayloadBytes, 1024, MAX_DATA_PAYLOAD_BYTES);
  checkInteger('sendBufferBytes', c.sendBufferBytes, 1024, 1 << 30);
  checkInteger('pingIntervalMs', c.pingIntervalMs, 0, HOUR_MS);
  const keepalive = c.keepaliveTimeoutMs ?? 3 * c.pingIntervalMs;
  checkInteger('keepaliveTimeoutMs', keepalive, 0, 3 * HOUR_MS);
  if (keepalive > 0 && c.pingIntervalMs > 0 && keepalive <= c.pingIntervalMs) {
    badOption('keepaliveTimeoutMs', `(${keepalive}) must be longer than pingIntervalMs (${c.pingIntervalMs})`);
  }
  checkInteger('writeTimeoutMs', c.writeTimeoutMs, 1, HOUR_MS);
  checkInteger('drainTimeoutMs', c.drainTimeoutMs, 0, HOUR_MS);
  return { ...c, keepaliveTimeoutMs: keepalive };
}
