import { performance } from 'node:perf_hooks';
import { PeerError, WireError, type OpenMeta } from '../protocol/index.js';
import type { IncomingStream } from './incoming-stream.js';
import { ReceiveQueue } from './receive-queue.js';
import type { Session } from './session.js';
import type { SpliceEnd } from './splice.js';
import type { Endpoint, StreamHost, StreamState } from './stream.js';

/**
 * One side of a stream carried over another: what arrives on it is
 * written to the other side's stream, one piece at a time, and credit goes
 * back to this side's sender only once the other side's session sent the
 * piece, under the other side's own credit. A reader that stalls at the
 * far end thus holds the sender to the far end's window plus this side's
 * window, and nothing is buffered beyond them.
 */
class RelayHalf implements Endpoint {
  readonly host: StreamHost;
  readonly state: StreamState;
  peer!: RelayHalf;
  readonly #relay: Relay;
  /** Pieces received here, waiting to be written to the peer's stream; bounded by this side's window. */
  readonly #queue = new ReceiveQueue();
  #writing = false;
  /** Bytes of the piece being written to the peer, still counted as held here. */
  #inFlight = 0;
  /** FIN arrived here: the peer's stream ends once the queue is written. */
  #finDue = false;

  constructor(host: StreamHost, state: StreamState, relay: Relay) {
    this.host = host;
    this.state = state;
    this.#relay = relay;
  }

  /** Takes the stream over; what arrived before is sent on. */
  bind(): void {
    const state = this.state;
    state.endpoint = this;
    for (let item = state.queue.shift(); item !== undefined; item = state.queue.shift()) {
      this.host.buffered(-item.length);
      this.deliver(item);
    }
    if (state.reset) this.abort(undefined);
    else if (state.remoteFin) this.finish();
  }

  deliver(piece: Buffer): void {
    this.#queue.push(piece);
    this.host.buffered(piece.length);
    this.#pump();
  }

  finish(): void {
    this.#finDue = true;
    this.#pump();
  }

  abort(err: Error | undefined): void {
    this.#drop();
    this.host.destroy(this.state, null); // released; no RST, it is already reset or gone
    // The same code the other way; a reason text is not relayed.
    this.peer.#drop();
    this.peer.host.destroy(this.peer.state, null, err instanceof PeerError ? err.wireCode : WireError.Cancel);
    this.#relay.settle(err?.message ?? 'reset');
  }

  accepted(): void {
    this.peer.host.accept(this.peer.state); // the far end took the stream: say so to the near end
  }

  /** Writes the next queued piece to the peer's stream; grants credit here once it went. */
  #pump(): void {
    if (this.#writing || this.state.reset) return;
    const piece = this.#queue.shift();
    if (piece === undefined) {
      if (this.#finDue) {
        this.#finDue = false;
        this.peer.host.final(this.peer.state, () => this.#relay.settle('closed'));
      }
      return;
    }
    // Counted as held until it went out under the peer's credit: a piece waiting for that is still here.
    this.#writing = true;
    this.#inFlight = piece.length;
    this.peer.host.write(this.peer.state, piece, (err) => {
      this.#writing = false;
      this.host.buffered(-this.#inFlight);
      this.#inFlight = 0;
      if (err) return;
      this.#relay.counted(this, piece.length);
      this.host.consumed(this.state, piece.length);
      this.#pump();
    });
  }

  /** Forgets what is queued here (the stream is gone). */
  #drop(): void {
    if (this.#queue.bytes > 0) this.host.buffered(-this.#queue.bytes);
    this.#queue.clear();
    this.#finDue = false;
  }
}

/** Both halves of one relayed stream, and its end, reported once. */
class Relay {
  readonly near: RelayHalf;
  readonly far: RelayHalf;
  readonly #onEnd: (end: SpliceEnd) => void;
  readonly #started = performance.now();
  #nearToFar = 0;
  #farToNear = 0;
  #ended = false;

  constructor(near: [StreamHost, StreamState], far: [StreamHost, StreamState], onEnd: (end: SpliceEnd) => void) {
    this.near = new RelayHalf(near[0], near[1], this);
    this.far = new RelayHalf(far[0], far[1], this);
    this.near.peer = this.far;
    this.far.peer = this.near;
    this.#onEnd = onEnd;
  }

  counted(from: RelayHalf, bytes: number): void {
    if (from === this.near) this.#nearToFar += bytes;
    else this.#farToNear += bytes;
  }

  /**
   * Reports the end once both streams are done, FIN both ways on both or a
   * reset. Checked after the current event: a FIN is delivered before the
   * session releases its stream.
   */
  settle(reason: string): void {
    queueMicrotask(() => {
      if (this.#ended) return;
      const done = (s: StreamState): boolean => s.released || s.reset;
      if (!done(this.near.state) || !done(this.far.state)) return;
      this.#ended = true;
      this.#onEnd({ bytesIn: this.#nearToFar, bytesOut: this.#farToNear, durationMs: performance.now() - this.#started, reason });
    });
  }
}

/**
 * Carries a stream the peer of one session opened (`incoming`: a client
 * agent's) as a new stream on `far` (the channel's server agent): data and
 * FIN both ways, with credit granted only for bytes the next hop took, the
 * far side's acceptance back to the near side, and a reset on either side
 * as the same code on the other. `onEnd` is called once, when both are
 * done; its `bytesIn` counts what went from the near side to the far one.
 * Throws like `Session.open` when `far` cannot open a stream.
 */
export function relayStream(incoming: IncomingStream, far: Session, meta: Partial<OpenMeta>, onEnd: (end: SpliceEnd) => void): void {
  let farEnd: [StreamHost, StreamState] | null = null;
  far.openEndpoint(meta, (host, state) => void (farEnd = [host, state]));
  incoming.attach((host, state) => {
    const relay = new Relay([host, state], farEnd!, onEnd);
    relay.far.bind();
    relay.near.bind();
  });
}
