import { INITIAL_WINDOW_BYTES } from '../protocol/index.js';

/** Streams count as active for window sharing if they consumed data within this long. */
const ACTIVE_EPOCH_MS = 1000;

/**
 * A memory account shared by many sessions (a tunnel's): the window growth
 * they may hand out together, and the received bytes they hold for readers.
 */
export class SharedBudget {
  readonly total: number;
  #left: number;
  /** Bytes all sessions hold in receive queues right now. */
  buffered = 0;

  constructor(bytes: number) {
    this.total = bytes;
    this.#left = bytes;
  }

  take(want: number): number {
    const got = Math.max(0, Math.min(want, this.#left));
    this.#left -= got;
    return got;
  }

  give(bytes: number): void {
    this.#left += bytes;
  }
}

/**
 * The receive side of one stream's flow control.
 *
 * `available` is the credit the peer still has; it only shrinks when DATA
 * arrives and only grows when this side grants with a WINDOW frame. Credit is
 * granted for bytes *consumed* (handed to the stream's reader), in batches of
 * at least half the window, as hashicorp/yamux does. How big the window is
 * decided by the session's {@link WindowTuner}.
 */
export class ReceiveWindow {
  /** Credit the peer still has, in bytes. */
  available = INITIAL_WINDOW_BYTES;
  /** The window this side keeps granted: the most the peer may have in flight. */
  target = INITIAL_WINDOW_BYTES;
  unGranted = 0;
  lastGrantAt: number;
  /** Last activity epoch this stream was counted in. */
  epoch = -1;

  constructor(now: number) {
    this.lastGrantAt = now;
  }

  /** Accounts for a DATA frame's length; false when it overruns the window. */
  take(length: number): boolean {
    if (length > this.available) return false;
    this.available -= length;
    return true;
  }

  /** Accounts for consumed bytes; true when enough are due for a WINDOW frame. */
  consume(bytes: number): boolean {
    this.unGranted += bytes;
    return this.unGranted >= this.target >>> 1;
  }
}

/**
 * Sizes the receive windows of one session.
 *
 * One window size is tuned for the whole session and every stream moves
 * toward it at its next grant, as gRPC's BDP estimator sets one window for
 * all streams. A stream that consumed half its window in less than two
 * round trips was limited by its window, so the session window doubles, up to
 * `maxStreamWindowBytes`. The round trip used is the smallest recently seen:
 * the latest one includes the queueing that bulk streams cause, and growing
 * on it feeds the queue.
 *
 * Uniform windows keep streams fair: with per-stream tuning, 100 bulk streams
 * measured 20:1 between first and last, since streams that grew first kept
 * the larger share. Growth beyond the initial 64 KiB is also taken from a
 * fixed budget, and a stream holds at most its share of it among the
 * streams active in the last second, so what a peer can make this side
 * buffer stays bounded.
 */
export class WindowTuner {
  readonly #maxWindow: number;
  readonly #budgetTotal: number;
  readonly #shared: SharedBudget | undefined;
  #budgetLeft: number;
  #window = INITIAL_WINDOW_BYTES;
  #epoch = 0;
  #epochStart = 0;
  #activeNow = 0;
  #activeBefore = 0;

  constructor(maxStreamWindowBytes: number, budgetBytes: number, shared?: SharedBudget) {
    this.#maxWindow = maxStreamWindowBytes;
    this.#budgetTotal = budgetBytes;
    this.#budgetLeft = budgetBytes;
    this.#shared = shared;
  }

  /**
   * Returns the increment for the WINDOW frame to send now (0: send none),
   * moving the stream's window toward the session's. `minRttMs` of 0 means
   * unknown: no growth until a PONG measured it.
   */
  grant(w: ReceiveWindow, nowMs: number, minRttMs: number): number {
    this.#countActive(w, nowMs);
    let increment = w.unGranted;
    w.unGranted = 0;
    if (minRttMs > 0 && nowMs - w.lastGrantAt < 2 * minRttMs) {
      this.#window = Math.min(this.#maxWindow, Math.max(this.#window, 2 * w.target));
    }
    w.lastGrantAt = nowMs;
    const active = Math.max(1, this.#activeNow, this.#activeBefore);
    const share = INITIAL_WINDOW_BYTES + Math.floor(this.#budgetTotal / active);
    const want = Math.min(this.#window, share);
    if (w.target < want) {
      let grow = Math.min(want - w.target, this.#budgetLeft);
      if (this.#shared) grow = this.#shared.take(grow);
      this.#budgetLeft -= grow;
      w.target += grow;
      increment += grow;
    } else if (w.target > want) {
      const shrink = Math.min(w.target - want, increment);
      this.#budgetLeft += shrink;
      this.#shared?.give(shrink);
      w.target -= shrink;
      increment -= shrink;
    }
    w.available += increment;
    return increment;
  }

  /** Hands a finished stream's growth back to the budget. */
  release(w: ReceiveWindow): void {
    const grown = w.target - INITIAL_WINDOW_BYTES;
    this.#budgetLeft += grown;
    this.#shared?.give(grown);
    w.target = INITIAL_WINDOW_BYTES;
  }

  #countActive(w: ReceiveWindow, nowMs: number): void {
    if (nowMs - this.#epochStart >= ACTIVE_EPOCH_MS) {
      this.#activeBefore = this.#activeNow;
      this.#activeNow = 0;
      this.#epoch++;
      this.#epochStart = nowMs;
    }
    if (w.epoch !== this.#epoch) {
      w.epoch = this.#epoch;
      this.#activeNow++;
    }
  }
}
