import { performance } from 'node:perf_hooks';
import { RhostError } from '../errors.js';
import { encodeControl, FrameType, wireCodeOf, type WireError } from '../protocol/index.js';
import type { Keepalive } from './keepalive.js';
import type { SendScheduler } from './scheduler.js';
import type { Endpoint, StreamHost, StreamState } from './stream.js';
import type { StreamTable } from './stream-table.js';
import type { SharedBudget, WindowTuner } from './window.js';
import type { FrameWriter } from './writer.js';

/** What the streams' side of a session needs from the session. */
export interface StreamHostContext {
  table: StreamTable;
  writer: FrameWriter;
  scheduler: SendScheduler;
  windows: WindowTuner;
  keepalive: Keepalive;
  shared: SharedBudget | undefined;
  /** True once the session ended. */
  terminated(): boolean;
  /** A stream was released: the session may be done (after GOAWAY, with none left). */
  released(state: StreamState): void;
}

/**
 * What a session does for its streams, on the wire and in its accounts:
 * their writes (through the scheduler, under credit), FIN, RST and ACK,
 * credit granted back as bytes are consumed, the memory held for slow
 * readers, and release. The session's receiving side calls into it too; it
 * is what endpoints see of the session (StreamHost).
 */
export class SessionStreamHost implements StreamHost {
  readonly #c: StreamHostContext;
  /** Received bytes held in stream queues and for slow readers. */
  bufferedBytes = 0;
  /** Counts decode passes (one per transport read): an endpoint that gets a second piece in one pass batches its writes. */
  #pass = 0;
  #batched: Endpoint[] = [];

  constructor(context: StreamHostContext) {
    this.#c = context;
  }

  write(state: StreamState, chunk: Buffer, callback: (err?: Error | null) => void): void {
    if (state.reset || this.#c.terminated() || state.localFin) {
      callback(new RhostError('ERR_RHOST_SESSION_CLOSED', `stream ${state.id} can no longer be written`));
      return;
    }
    this.accept(state);
    if (chunk.length === 0) return void callback(); // nothing to send, and no credit to wait for
    state.pending = chunk;
    state.pendingCallback = callback;
    this.#c.scheduler.flush(state);
  }

  final(state: StreamState, callback: (err?: Error | null) => void): void {
    if (state.reset || this.#c.terminated()) {
      callback(new RhostError('ERR_RHOST_SESSION_CLOSED', `stream ${state.id} can no longer be ended`));
      return;
    }
    this.accept(state);
    state.localFin = true;
    this.#c.writer.control(encodeControl({ type: FrameType.Fin, streamId: state.id }));
    this.maybeRelease(state);
    callback();
  }

  destroy(state: StreamState, err: Error | null, code?: WireError): void {
    const callback = state.pendingCallback;
    state.pending = null;
    state.pendingCallback = null;
    if (!state.reset && !state.released && !this.#c.terminated()) {
      state.reset = true;
      this.#c.writer.control(encodeControl({ type: FrameType.Rst, streamId: state.id, code: code ?? wireCodeOf(err), reason: err ? err.message : '' }));
    }
    state.reset = true;
    this.release(state);
    // A stream released by FIN both ways may still hold data its reader never took.
    this.#dropQueue(state);
    callback?.(err ?? new RhostError('ERR_RHOST_CLOSED', `stream ${state.id} was destroyed`));
  }

  /** Sends ACK for a stream the peer opened, once. */
  accept(state: StreamState): void {
    if (state.reset || this.#c.terminated() || !this.#c.table.acceptLocal(state)) return;
    this.#c.writer.control(encodeControl({ type: FrameType.Ack, streamId: state.id }));
  }

  /** Grants credit for consumed bytes, in batches. */
  consumed(state: StreamState, bytes: number): void {
    if (!state.recv.consume(bytes) || state.remoteFin || state.released) return;
    const now = performance.now();
    const { keepalive, windows, writer } = this.#c;
    keepalive.refresh(now); // auto-tuning needs a fresh minimum RTT while data flows
    const increment = windows.grant(state.recv, now, keepalive.minRtt);
    if (increment > 0) writer.control(encodeControl({ type: FrameType.Window, streamId: state.id, increment }));
  }

  buffered(delta: number): void {
    this.bufferedBytes += delta;
    if (this.#c.shared) this.#c.shared.buffered += delta;
  }

  pass(): number {
    return this.#pass;
  }

  batch(endpoint: Endpoint): void {
    this.#batched.push(endpoint);
  }

  /** A decode pass starts (a transport read). */
  nextPass(): void {
    this.#pass++;
  }

  /** Endpoints that batched their writes during the pass that just ended write them out now, in one call each. */
  flushBatched(): void {
    const batched = this.#batched;
    if (batched.length === 0) return;
    this.#batched = [];
    for (const endpoint of batched) endpoint.flush?.();
  }

  /** Hands received bytes to the endpoint, or keeps them until the application takes the stream. */
  deliver(state: StreamState, piece: Buffer): void {
    state.bytesIn += piece.length;
    if (state.endpoint) {
      state.endpoint.deliver(piece);
    } else {
      state.queue.push(piece);
      this.buffered(piece.length);
    }
  }

  /** The peer took a stream this side opened: ACK, or its first DATA or FIN. */
  acceptedByPeer(state: StreamState): void {
    if (this.#c.table.acceptedByPeer(state)) state.endpoint?.accepted();
  }

  /** Tells the endpoint its stream is gone; a stream nobody took is just released. */
  abort(state: StreamState, err: Error | undefined): void {
    if (state.endpoint) state.endpoint.abort(err);
    else this.release(state);
  }

  /** Resets a stream for a violation of the peer's (RST with `code`), and aborts it here. */
  resetStream(state: StreamState, code: WireError, err: Error): void {
    if (!state.reset) {
      state.reset = true;
      this.#c.writer.control(encodeControl({ type: FrameType.Rst, streamId: state.id, code, reason: err.message }));
    }
    this.abort(state, err);
  }

  /** A stream is done with the wire once FIN went both ways. */
  maybeRelease(state: StreamState): void {
    if (state.localFin && state.remoteFin) this.release(state);
  }

  release(state: StreamState): void {
    if (!this.#c.table.release(state)) return;
    this.#c.windows.release(state.recv);
    if (state.reset) this.#dropQueue(state);
    this.#c.released(state);
  }

  /** Forgets data received for a stream that nobody will read, and its share of the buffered total. */
  #dropQueue(state: StreamState): void {
    if (state.queue.bytes === 0) return;
    this.buffered(-state.queue.bytes);
    state.queue.clear();
  }
}
