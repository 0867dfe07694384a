import { Duplex } from 'node:stream';
import { INITIAL_WINDOW_BYTES, WireError, type OpenMeta } from '../protocol/index.js';
import { ReceiveQueue } from './receive-queue.js';
import { ReceiveWindow } from './window.js';

/**
 * Where a stream's received bytes and its end go: the readable side of a
 * Duplex (Stream), or straight into a socket (SocketEndpoint, the proxy's
 * fast path).
 */
export interface Endpoint {
  /** A piece of DATA from the peer, in order. */
  deliver(piece: Buffer): void;
  /** FIN from the peer: no more DATA will come. */
  finish(): void;
  /** The stream is gone: reset by the peer (`err`), or its session ended. */
  abort(err: Error | undefined): void;
  /** The peer accepted a stream this side opened. */
  accepted(): void;
  /** Writes what this endpoint batched during the decode pass that just ended (see StreamHost.batch). */
  flush?(): void;
}

/**
 * Mux-side state of one stream. The session owns and mutates it; the
 * endpoint is what the application sees of it.
 */
export class StreamState {
  readonly id: number;
  /** Opened by the peer (true) or by this side. */
  readonly incoming: boolean;
  readonly openedAt: number;
  /** Null until the application takes the stream; received bytes wait in `queue` meanwhile. */
  endpoint: Endpoint | null = null;
  /** Credit this side has to send DATA. */
  sendWindow = INITIAL_WINDOW_BYTES;
  readonly recv: ReceiveWindow;
  /** Received bytes the endpoint has not taken yet. */
  readonly queue = new ReceiveQueue();
  /** A write waiting for credit or for the transport to drain. */
  pending: Buffer | null = null;
  pendingCallback: ((err?: Error | null) => void) | null = null;
  /** ACK sent (incoming) or received (outgoing). */
  accepted = false;
  /** FIN sent. */
  localFin = false;
  /** FIN received. */
  remoteFin = false;
  /** RST sent or received: nothing more goes on the wire for this stream. */
  reset = false;
  /** Removed from the session's table. */
  released = false;
  /** Queued in the session's list of writers waiting for the transport. */
  waiting = false;
  bytesIn = 0;
  bytesOut = 0;

  constructor(id: number, incoming: boolean, now: number) {
    this.id = id;
    this.incoming = incoming;
    this.openedAt = now;
    this.recv = new ReceiveWindow(now);
  }
}

/** What an endpoint asks of its session. Implemented privately by Session. */
export interface StreamHost {
  /** Sends `chunk` as DATA; `callback` runs once all of it went to the transport. */
  write(state: StreamState, chunk: Buffer, callback: (err?: Error | null) => void): void;
  /** Sends FIN after the data written so far. */
  final(state: StreamState, callback: (err?: Error | null) => void): void;
  /** Resets the stream (RST with `code`, or the error's wire code) unless it already ended. */
  destroy(state: StreamState, err: Error | null, code?: WireError): void;
  /** Sends ACK for a stream the peer opened. */
  accept(state: StreamState): void;
  /** The endpoint handed `bytes` onward without backpressure: credit may be due to the peer. */
  consumed(state: StreamState, bytes: number): void;
  /** Bytes held for a slow reader changed by `delta` (the session's memory account). */
  buffered(delta: number): void;
  /** The decode pass under way: one per transport read. */
  pass(): number;
  /** Calls the endpoint's `flush` once the current decode pass ends. */
  batch(endpoint: Endpoint): void;
}

/**
 * One user connection carried in a session: a Node Duplex, so
 * `pipeline(stream, socket, stream)` just works. Writing waits for credit
 * from the peer; reading grants credit as the data is consumed. `end()` sends
 * FIN (half-close); `destroy(err)` sends RST with the error's wire code.
 *
 * Events beyond Duplex: `accept` when the peer accepted a stream this side
 * opened.
 */
export class Stream extends Duplex {
  /** Stream id: odd when the agent opened it, even when the tunnel did. */
  readonly id: number;
  /** What the OPEN frame said: channel and the user's address. */
  readonly meta: OpenMeta;
  readonly #host: StreamHost;
  readonly #state: StreamState;
  #resetCode: WireError | undefined;
  /** The reader asked for data (`_read`) and got none yet. */
  #readPending = false;
  #endPushed = false;

  /** @internal Streams are made by Session.open() and the session's `stream` event. */
  constructor(host: StreamHost, state: StreamState, meta: OpenMeta) {
    super({ allowHalfOpen: true, decodeStrings: true, emitClose: true, autoDestroy: true });
    this.id = state.id;
    this.meta = meta;
    this.#host = host;
    this.#state = state;
    state.endpoint = {
      deliver: (piece) => this.#deliver(piece),
      finish: () => state.queue.empty && this.#pushEnd(),
      abort: (err) => this.destroy(err),
      accepted: () => this.emit('accept'),
    };
  }

  /** Bytes received on this stream. */
  get bytesIn(): number {
    return this.#state.bytesIn;
  }

  /** Bytes sent on this stream. */
  get bytesOut(): number {
    return this.#state.bytesOut;
  }

  /** This side's receive window: what the peer may have in flight. Starts at 64 KiB and grows by auto-tuning. */
  get receiveWindow(): number {
    return this.#state.recv.target;
  }

  /** True once the peer accepted a stream this side opened (or this side accepted an incoming one). */
  get accepted(): boolean {
    return this.#state.accepted;
  }

  /**
   * Accepts an incoming stream (sends ACK). Streams the application writes to
   * or ends are accepted implicitly; call this when the stream is ready but
   * has nothing to say yet, e.g. once the local service answered connect().
   */
  accept(): void {
    this.#host.accept(this.#state);
  }

  /** Aborts the stream in both directions, telling the peer `code`. */
  reset(code: WireError = WireError.Cancel): void {
    this.#resetCode = code;
    this.destroy();
  }

  /** Hands received bytes to the reader, or queues them until it asks. */
  #deliver(piece: Buffer): void {
    const state = this.#state;
    if (this.#readPending && state.queue.empty) {
      this.#readPending = false;
      this.#host.consumed(state, piece.length);
      if (this.push(piece)) this.#readPending = true;
      return;
    }
    state.queue.push(piece);
    this.#host.buffered(piece.length);
  }

  /** Ends the readable side once FIN arrived and the queue is empty. */
  #pushEnd(): void {
    if (this.#endPushed) return;
    this.#endPushed = true;
    this.#readPending = false;
    this.push(null);
  }

  override _read(): void {
    const state = this.#state;
    this.#readPending = true;
    for (;;) {
      const item = state.queue.shift();
      if (item === undefined) break;
      this.#host.buffered(-item.length);
      this.#host.consumed(state, item.length);
      if (!this.push(item)) {
        this.#readPending = false;
        return;
      }
    }
    if (state.remoteFin) this.#pushEnd();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#host.write(this.#state, chunk, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#host.final(this.#state, callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#host.destroy(this.#state, err, this.#resetCode);
    callback(err);
  }
}
