import type { StreamState } from './stream.js';
import type { FrameWriter } from './writer.js';

/**
 * Decides which stream's data goes out next. A write goes straight to the
 * transport while it takes data and the stream has credit. Once the
 * transport is full, writers queue here and, when it drains, each gets one
 * frame per turn, round-robin: 100 bulk streams share a session within 1 %
 * of each other (bench:mux).
 */
export class SendScheduler {
  readonly #writer: FrameWriter;
  readonly #maxFrame: number;
  #waiting: StreamState[] = [];

  constructor(writer: FrameWriter, maxFramePayloadBytes: number) {
    this.#writer = writer;
    this.#maxFrame = maxFramePayloadBytes;
  }

  /**
   * Writes as much of the stream's pending chunk as its credit and the
   * transport allow, at most `quantum` bytes, and completes the write once
   * all of it went. Without credit it returns: the WINDOW frame that grants
   * some calls it again.
   */
  flush(state: StreamState, quantum = Infinity): void {
    let budget = quantum;
    for (;;) {
      const chunk = state.pending;
      if (chunk === null) return;
      if (this.#writer.blocked || budget <= 0) {
        if (!state.waiting) {
          state.waiting = true;
          this.#waiting.push(state);
        }
        return;
      }
      const n = Math.min(chunk.length, state.sendWindow, this.#maxFrame);
      if (n <= 0) return;
      state.sendWindow -= n;
      state.bytesOut += n;
      budget -= n;
      if (n === chunk.length) {
        state.pending = null;
        this.#writer.data(state.id, chunk);
        const callback = state.pendingCallback!;
        state.pendingCallback = null;
        callback();
        return;
      }
      this.#writer.data(state.id, chunk.subarray(0, n));
      state.pending = chunk.subarray(n);
    }
  }

  /** The transport drained: serve the waiting writers one frame each, in turn, while it takes more. */
  serve(): void {
    while (this.#waiting.length > 0 && !this.#writer.blocked) {
      const batch = this.#waiting;
      this.#waiting = [];
      for (const state of batch) {
        state.waiting = false;
        if (this.#writer.blocked) {
          state.waiting = true;
          this.#waiting.push(state);
        } else if (!state.reset) {
          this.flush(state, this.#maxFrame);
        }
      }
    }
  }

  /** Forgets every waiting writer (the session ended). */
  clear(): void {
    this.#waiting = [];
  }
}
