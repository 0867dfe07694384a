import type { Duplex } from 'node:stream';
import { allocFrame, encodeHeader, FRAME_HEADER_BYTES, FrameType } from '../protocol/index.js';

/** DATA payloads up to this size are copied next to their header: one buffer beats two for tiny frames. */
const INLINE_PAYLOAD_BYTES = 512;

/**
 * Control frames may queue this far past the send buffer while DATA waits.
 * Beyond it the peer is not reading even its own keepalive answers.
 */
export const CONTROL_BACKLOG_BYTES = 1024 * 1024;

/**
 * Writes frames to the transport under a session. All frames written in one
 * turn of the event loop leave in a single writev: the transport is corked on
 * the first write and uncorked by setImmediate, which runs after every I/O
 * callback of the turn. So the frames of all the sockets that were readable
 * together share one syscall (uncorking on the next tick instead flushed
 * after each socket's read: one writev per request under keep-alive load),
 * and a DATA payload is never copied to join its header.
 *
 * `blocked` goes true when the transport holds `sendBufferBytes` and said to
 * wait; DATA writers then wait for `onDrain`. Control frames are still
 * written, up to CONTROL_BACKLOG_BYTES more. A block lasting longer than
 * `writeTimeoutMs`, or a control backlog past its bound, calls `onStuck`.
 */
export class FrameWriter {
  readonly #transport: Duplex;
  readonly #sendBufferBytes: number;
  readonly #writeTimeoutMs: number;
  readonly #onDrain: () => void;
  readonly #onStuck: (why: 'timeout' | 'backlog') => void;
  #blocked = false;
  #corked = false;
  #timer: NodeJS.Timeout | null = null;
  #bytesOut = 0;

  constructor(
    transport: Duplex,
    opts: { sendBufferBytes: number; writeTimeoutMs: number },
    onDrain: () => void,
    onStuck: (why: 'timeout' | 'backlog') => void,
  ) {
    this.#transport = transport;
    this.#sendBufferBytes = opts.sendBufferBytes;
    this.#writeTimeoutMs = opts.writeTimeoutMs;
    this.#onDrain = onDrain;
    this.#onStuck = onStuck;
    transport.on('drain', this.#drained);
  }

  /** True while DATA must wait for the transport to drain. */
  get blocked(): boolean {
    return this.#blocked;
  }

  /** Frame bytes handed to the transport. */
  get bytesOut(): number {
    return this.#bytesOut;
  }

  /** Writes one encoded control frame. */
  control(frame: Buffer): void {
    this.#write(frame);
    if (this.#transport.writableLength > this.#sendBufferBytes + CONTROL_BACKLOG_BYTES) this.#onStuck('backlog');
  }

  /** Writes a DATA frame: header, then the payload as-is. */
  data(streamId: number, payload: Buffer): void {
    const length = payload.length;
    if (length <= INLINE_PAYLOAD_BYTES) {
      const frame = allocFrame(FrameType.Data, streamId, length);
      payload.copy(frame, FRAME_HEADER_BYTES);
      this.#write(frame);
      return;
    }
    this.#write(encodeHeader(FrameType.Data, streamId, length));
    this.#write(payload);
  }

  /** Stops the write timer; the transport itself is the session's to close. */
  dispose(): void {
    this.#transport.off('drain', this.#drained);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  #write(buffer: Buffer): void {
    const transport = this.#transport;
    if (transport.destroyed || transport.writableEnded) return;
    if (!this.#corked) {
      this.#corked = true;
      transport.cork();
      setImmediate(this.#uncork);
    }
    this.#bytesOut += buffer.length;
    if (!transport.write(buffer) && !this.#blocked && transport.writableLength >= this.#sendBufferBytes) {
      this.#blocked = true;
      this.#timer = setTimeout(this.#timedOut, this.#writeTimeoutMs);
    }
  }

  readonly #uncork = (): void => {
    this.#corked = false;
    this.#transport.uncork();
  };

  readonly #drained = (): void => {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (!this.#blocked) return;
    this.#blocked = false;
    this.#onDrain();
  };

  readonly #timedOut = (): void => {
    this.#timer = null;
    if (this.#blocked) this.#onStuck('timeout');
  };
}
