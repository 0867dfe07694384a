import { WireError, type OpenMeta } from '../protocol/index.js';
import { SocketEndpoint, type SocketLike } from './socket-endpoint.js';
import type { SpliceEnd, SpliceOptions } from './splice.js';
import { Stream, type StreamHost, type StreamState } from './stream.js';

/**
 * A stream the peer opened, before the application chose what to do with
 * it: splice it onto a socket (the fast path), relay it to a stream of
 * another session, turn it into a Duplex, or reset it. Bytes that arrive
 * meanwhile are kept, within the window.
 */
export class IncomingStream {
  readonly id: number;
  readonly meta: OpenMeta;
  readonly #host: StreamHost;
  readonly #state: StreamState;

  /** @internal Made by the session for its stream handler. */
  constructor(host: StreamHost, state: StreamState, meta: OpenMeta) {
    this.id = state.id;
    this.meta = meta;
    this.#host = host;
    this.#state = state;
  }

  /**
   * Carries the stream over `socket`, which may still be connecting: the
   * stream is accepted when it connects, and a failed connect resets it
   * with the matching code (ECONNREFUSED → CONNECT_REFUSED).
   */
  splice(socket: SocketLike, onEnd: (end: SpliceEnd) => void, options?: SpliceOptions): void {
    new SocketEndpoint(this.#host, this.#state, socket, onEnd, options);
  }

  /** Hands the stream to the endpoint `make` builds (see relayStream). */
  attach(make: (host: StreamHost, state: StreamState) => void): void {
    make(this.#host, this.#state);
  }

  /** The stream as a Duplex. */
  duplex(): Stream {
    return new Stream(this.#host, this.#state, this.meta);
  }

  /** Refuses or aborts the stream, telling the peer `code`. */
  reset(code: WireError = WireError.Cancel): void {
    this.#host.destroy(this.#state, null, code);
  }
}
