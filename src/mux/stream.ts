import { Duplex } from 'node:stream';
import { INITIAL_WINDOW_BYTES, WireError, type OpenMeta } from '../protocol/index.js';
import { ReceiveQueue } from './receive-queue.js';
import { ReceiveWindow } from './window.js';

/**
 * Mux-side state of one stream. The session owns and mutates it; the Stream
 * below is only the Duplex face handed to applications.
 */
export class StreamState {
  readonly id: number;
  /** Opened by the peer (true) or by this side. */
  readonly incoming: boolean;
  readonly openedAt: number;
  stream!: Stream;
  /** Credit this side has to send DATA. */
  sendWindow = INITIAL_WINDOW_BYTES;
  readonly recv: ReceiveWindow;
  readonly queue = new ReceiveQueue();
  /** A write waiting for credit or for the transport to drain. */
  pending: Buffer | null = null;
  pendingCallback: ((err?: Error | null) => void) | null = null;
  /** The reader asked for data (`_read`) and got none yet. */
  readPending = false;
  /** ACK sent (incoming) or received (outgoing). */
  accepted = false;
  /** FIN sent. */
  localFin = false;
  /** FIN received. */
  remoteFin = false;
  /** End of data handed to the reader (push(null)). */
  endPushed = false;
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

/** What a Stream asks of its session. Implemented privately by Session. */
export interface StreamHost {
  write(state: StreamState, chunk: Buffer, callback: (err?: Error | null) => void): void;
  final(state: StreamState, callback: (err?: Error | null) => void): void;
  read(state: StreamState): void;
  destroy(state: StreamState, err: Error | null, code?: WireError): void;
  accept(state: StreamState): void;
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

  /** @internal Streams are made by Session.open() and the session's `stream` event. */
  constructor(host: StreamHost, state: StreamState, meta: OpenMeta) {
    super({ allowHalfOpen: true, decodeStrings: true, emitClose: true, autoDestroy: true });
    this.id = state.id;
    this.meta = meta;
    this.#host = host;
    this.#state = state;
    state.stream = this;
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

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#host.write(this.#state, chunk, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#host.final(this.#state, callback);
  }

  override _read(): void {
    this.#host.read(this.#state);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.#host.destroy(this.#state, err, this.#resetCode);
    callback(err);
  }
}
