import { INITIAL_WINDOW_BYTES } from '../protocol/index.js';

/** Growth budget shared by all streams of a session (see SessionConfig.maxSessionWindowBytes). */
export class WindowBudget {
  #remaining: number;

  constructor(bytes: number) {
    this.#remaining = bytes;
  }

  get remaining(): number {
    return this.#remaining;
  }

  /** Takes up to `want` bytes; returns what was granted. */
  take(want: number): number {
    const got = Math.max(0, Math.min(want, this.#remaining));
    this.#remaining -= got;
    return got;
  }

  give(bytes: number): void {
    this.#remaining += bytes;
  }
}

/**
 * The receive side of one stream's flow control.
 *
 * `available` is the credit the peer still has; it only shrinks when DATA
 * arrives and only grows when this side grants with a WINDOW frame. Credit is
 * granted for bytes *consumed* (handed to the stream's reader), in batches of
 * at least half the window, as hashicorp/yamux does.
 *
 * Auto-tuning: when half a window was consumed in less than two round trips,
 * the window was what limited the stream, so the next grant also doubles the
 * window, up to the stream maximum and within the session's budget. This is
 * the rule of quic-go and libp2p's yamux; a stream on a 50 ms link reaches a
 * 16 MiB window within a few hundred milliseconds, and a stream whose reader
 * is slow never grows.
 */
export class ReceiveWindow {
  /** Credit the peer still has, in bytes. */
  available = INITIAL_WINDOW_BYTES;
  /** The window this side keeps granted: the most the peer may have in flight. */
  target = INITIAL_WINDOW_BYTES;
  #unGranted = 0;
  #lastGrantAt: number;

  constructor(now: number) {
    this.#lastGrantAt = now;
  }

  /** Accounts for a DATA frame's length; false when it overruns the window. */
  take(length: number): boolean {
    if (length > this.available) return false;
    this.available -= length;
    return true;
  }

  /** Accounts for consumed bytes; true when enough are due for a WINDOW frame. */
  consume(bytes: number): boolean {
    this.#unGranted += bytes;
    return this.#unGranted >= this.target >>> 1;
  }

  /** Bytes consumed but not yet granted. */
  get unGranted(): number {
    return this.#unGranted;
  }

  /**
   * Returns the increment for the WINDOW frame to send now, growing the
   * window when the stream is window-limited. `rttMs` of 0 means unknown: no
   * growth until the first PONG measured it.
   */
  grant(nowMs: number, rttMs: number, maxWindow: number, budget: WindowBudget): number {
    let increment = this.#unGranted;
    this.#unGranted = 0;
    if (rttMs > 0 && this.target < maxWindow && nowMs - this.#lastGrantAt < 2 * rttMs) {
      const grow = budget.take(Math.min(this.target, maxWindow - this.target));
      this.target += grow;
      increment += grow;
    }
    this.#lastGrantAt = nowMs;
    this.available += increment;
    return increment;
  }

  /** Window growth to hand back to the budget when the stream ends. */
  get grown(): number {
    return this.target - INITIAL_WINDOW_BYTES;
  }
}
