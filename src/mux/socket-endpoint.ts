import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { PeerError } from '../protocol/index.js';
import { resetSocket, type SpliceEnd, type SpliceOptions } from './splice.js';
import type { Endpoint, StreamHost, StreamState } from './stream.js';

/**
 * What a SocketEndpoint carries: any Duplex that allows half-open (a TCP
 * or TLS socket, in practice); `connecting` is a socket's, when it has one.
 */
export type SocketLike = Duplex & { connecting?: boolean };

/** Where a socket carried by an endpoint keeps it, for the shared listeners. */
const ENDPOINT = Symbol('rhost.endpoint');
type Carrier = SocketLike & { [ENDPOINT]?: SocketEndpoint };

/**
 * After `pause()`, a socket still reads once more into its own buffer
 * before it stops (Node stops the handle only when its 16 KiB buffer
 * fills, and a read brings up to 64 KiB): what a paused socket may hold.
 */
const READ_AHEAD_BYTES = 64 * 1024;

/** A waiting chunk smaller than this share of the read buffer under it is copied, so it cannot pin that buffer. */
const PIN_RATIO = 4;

/**
 * A stream spliced straight onto a socket, with no Duplex in between: the
 * proxy's fast path (the tunnel's users, the agents' local connections).
 *
 * Received DATA is written to the socket as it arrives, and credit is
 * granted back for what the socket took without backpressure, or once it
 * drained; a socket that reads slowly holds at most the stream's window.
 * What the socket sends goes out as DATA; the socket is paused while the
 * stream waits for credit, and what it holds meanwhile (the chunk waiting,
 * and the one read a paused socket still makes) counts in the session's
 * memory account, so a crowd uploading into a service that never reads
 * meets the tunnel's buffered-data limit. An end becomes FIN and FIN an
 * end (the socket must allow half-open); a reset either way resets the
 * other side. `onEnd` is called once, when the socket is closed and the
 * stream finished or reset.
 *
 * Compared with a Duplex and two pipes, this costs one object and five
 * listeners per connection (shared functions, not closures), and one call
 * per chunk each way.
 */
export class SocketEndpoint implements Endpoint {
  static readonly #data = function (this: Carrier, chunk: Buffer): void {
    this[ENDPOINT]!.#onData(chunk);
  };
  static readonly #end = function (this: Carrier): void {
    this[ENDPOINT]!.#onSocketEnd();
  };
  static readonly #error = function (this: Carrier, err: NodeJS.ErrnoException): void {
    this[ENDPOINT]!.#onError(err);
  };
  static readonly #close = function (this: Carrier): void {
    this[ENDPOINT]!.#onClose();
  };
  static readonly #drain = function (this: Carrier): void {
    this[ENDPOINT]!.#onDrain();
  };
  readonly #host: StreamHost;
  readonly #state: StreamState;
  readonly #socket: SocketLike;
  readonly #onEnd: (end: SpliceEnd) => void;
  /** Kept from the options; not `head`, which would pin the first read's buffer for the connection's life. */
  readonly #answerReset: SpliceOptions['answerReset'];
  readonly #onConnectError: SpliceOptions['onConnectError'];
  readonly #started = performance.now();
  /** Bytes written to the socket that it has not taken yet (it said wait). */
  #unconsumed = 0;
  #paused = false;
  /** Bytes counted in the memory account for this socket's reading while it is paused. */
  #held = 0;
  /** The decode pass of the last piece delivered, and whether the socket is corked until that pass ends. */
  #lastPass = -1;
  #corked = false;
  /** The socket ended while a chunk still waited for credit: FIN goes after it. */
  #finAfterWrite = false;
  #ended = false;
  #socketClosed = false;
  #reason = 'closed';

  constructor(host: StreamHost, state: StreamState, socket: SocketLike, onEnd: (end: SpliceEnd) => void, options: SpliceOptions = {}) {
    this.#host = host;
    this.#state = state;
    this.#socket = socket;
    this.#onEnd = onEnd;
    this.#answerReset = options.answerReset;
    this.#onConnectError = options.onConnectError;
    state.endpoint = this;
    if (options.head && options.head.length > 0) this.#onData(options.head);
    // One listener function per event for every endpoint, reaching this one through the socket: no closures per connection.
    (socket as Carrier)[ENDPOINT] = this;
    socket.on('data', SocketEndpoint.#data);
    socket.on('end', SocketEndpoint.#end);
    socket.on('error', SocketEndpoint.#error);
    socket.on('close', SocketEndpoint.#close);
    socket.on('drain', SocketEndpoint.#drain);
    if (socket.readableEnded) this.#onSocketEnd(); // it ended while its first bytes were being classified
    if (state.incoming) {
      const { onConnect } = options;
      if (socket.connecting) {
        socket.once('connect', () => {
          host.accept(state);
          onConnect?.();
        });
      } else {
        host.accept(state);
      }
    }
    // What arrived before the socket was attached.
    for (let item = state.queue.shift(); item !== undefined; item = state.queue.shift()) {
      host.buffered(-item.length);
      this.deliver(item);
    }
    if (state.reset) this.abort(undefined);
    else if (state.remoteFin) this.finish();
  }

  deliver(piece: Buffer): void {
    // A second piece in one decode pass (tiny frames) corks the socket: the pass's pieces then leave in one writev.
    const pass = this.#host.pass();
    if (pass !== this.#lastPass) this.#lastPass = pass;
    else if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      this.#host.batch(this);
    }
    if (this.#socket.write(piece)) {
      this.#host.consumed(this.#state, piece.length);
    } else {
      this.#unconsumed += piece.length;
      this.#host.buffered(piece.length);
    }
  }

  finish(): void {
    this.#socket.end();
  }

  abort(err: Error | undefined): void {
    if (err) this.#reason = err.message;
    this.#host.destroy(this.#state, null); // releases the stream (no RST: it is already reset)
    const socket = this.#socket;
    const answered =
      err instanceof PeerError && this.#state.bytesIn === 0 && !socket.destroyed && !socket.connecting && this.#answerReset?.(err, socket);
    if (!answered) resetSocket(socket);
    this.#settle();
  }

  accepted(): void {}

  flush(): void {
    if (!this.#corked) return;
    this.#corked = false;
    this.#socket.uncork();
  }

  #onData(chunk: Buffer): void {
    const state = this.#state;
    this.#host.write(state, chunk, this.#written);
    // Still pending: no credit, or the transport is full. Wait before reading more.
    const pending = state.pending;
    if (pending !== null && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
      if (pending.length * PIN_RATIO < pending.buffer.byteLength) state.pending = Buffer.from(pending);
      this.#hold(state.pending!.length + READ_AHEAD_BYTES);
    }
  }

  /** Sets what this socket's paused reading counts for in the memory account. */
  #hold(bytes: number): void {
    if (bytes === this.#held) return;
    this.#host.buffered(bytes - this.#held);
    this.#held = bytes;
  }

  readonly #written = (err?: Error | null): void => {
    if (err) return;
    if (this.#finAfterWrite) {
      this.#finAfterWrite = false;
      this.#host.final(this.#state, () => this.#settle());
    }
    if (!this.#paused) return;
    this.#paused = false;
    this.#hold(0);
    this.#socket.resume();
  };

  #onSocketEnd(): void {
    // A paused socket still emits 'end' once its buffer is empty, maybe while its last chunk waits for credit.
    if (this.#state.pending !== null) this.#finAfterWrite = true;
    else this.#host.final(this.#state, () => {});
  }

  #onError(err: NodeJS.ErrnoException): void {
    if (this.#socket.connecting) this.#onConnectError?.(err);
    this.#reason = `socket error ${err.code ?? err.message}`;
    this.#host.destroy(this.#state, err);
  }

  #onDrain(): void {
    const bytes = this.#unconsumed;
    if (bytes === 0) return;
    this.#unconsumed = 0;
    this.#host.buffered(-bytes);
    this.#host.consumed(this.#state, bytes);
  }

  #onClose(): void {
    this.#socketClosed = true;
    const state = this.#state;
    // Closed cleanly once both ends were done: what it sent last may still wait for credit, then FIN.
    const clean = state.remoteFin && this.#socket.readableEnded;
    if (!state.released && !state.reset && !clean) {
      // The socket went away before the stream finished both ways: the user left.
      if (this.#reason === 'closed') this.#reason = 'socket closed early';
      this.#host.destroy(state, null);
    }
    this.#settle();
  }

  /** Reports the end once the socket is closed and the stream is done. */
  #settle(): void {
    this.#hold(0);
    if (this.#unconsumed > 0) {
      this.#host.buffered(-this.#unconsumed);
      this.#unconsumed = 0;
    }
    if (this.#ended || !this.#socketClosed || !(this.#state.released || this.#state.reset)) return;
    this.#ended = true;
    this.#onEnd({
      bytesIn: this.#state.bytesOut,
      bytesOut: this.#state.bytesIn,
      durationMs: performance.now() - this.#started,
      reason: this.#reason,
    });
  }
}
