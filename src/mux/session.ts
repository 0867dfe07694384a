import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { RhostError } from '../errors.js';
import {
  Decoder,
  encodeControl,
  FrameType,
  MAX_WINDOW_BYTES,
  PeerError,
  ProtocolError,
  Role,
  WireError,
  wireCodeOf,
  type ControlFrame,
  type FrameHandler,
  type OpenMeta,
} from '../protocol/index.js';
import { resolveSessionConfig, type ResolvedSessionConfig, type SessionConfig } from './config.js';
import { Stream, type StreamHost, type StreamState } from './stream.js';
import { IncomingStream } from './incoming-stream.js';
import { SocketEndpoint, type SocketLike } from './socket-endpoint.js';
import { SessionStreamHost } from './stream-host.js';
import { StreamTable } from './stream-table.js';
import type { SpliceEnd, SpliceOptions } from './splice.js';
import { WindowTuner, type SharedBudget } from './window.js';
import { Keepalive } from './keepalive.js';
import { SendScheduler } from './scheduler.js';
import { FrameWriter } from './writer.js';

/** Options of a Session: its role, its limits, and bytes already read. */
export interface SessionOptions extends Partial<SessionConfig> {
  /** Initiator (dialed the transport, the agent) or acceptor (the tunnel). Decides stream-id parity. */
  role: Role;
  /** Identity of the session, e.g. the one the tunnel assigned in the handshake. Random by default. */
  id?: string;
  /** Bytes read from the transport after the handshake, before the session took it over. */
  head?: Buffer;
  /** A memory account shared with other sessions (a tunnel's): window growth and buffered bytes. */
  shared?: SharedBudget;
}

/** Counters of a session, for logs and tests. */
export interface SessionStats {
  streams: number;
  pendingOpens: number;
  /** Received bytes waiting in stream queues for their readers: bounded by the windows. */
  bufferedBytes: number;
  /** Bytes of frames received and sent. */
  bytesIn: number;
  bytesOut: number;
  /** Last measured round trip, in ms; 0 before the first PONG. */
  rttMs: number;
}

/** Events of a Session. */
export interface SessionEvents {
  /** The peer opened a stream. With no listener, streams are refused. */
  stream: [stream: Stream];
  /** The peer announced GOAWAY: no new streams; `code` 0 is a graceful drain. */
  goaway: [code: WireError, reason: string];
  /** The session ended and its transport is closed. `err` is absent after a clean drain. */
  close: [err?: Error];
}

/** After a graceful end, how long the peer has to close its side before the transport is destroyed. */
const END_GRACE_MS = 2000;

/**
 * A multiplexed session over any Duplex (a socket, a TLS socket, a WebSocket
 * stream, an in-memory pair). It carries any number of streams, each with
 * credit-based flow control, and keeps the peer alive with PINGs.
 *
 * The session's identity (`id`, streams, windows) is held apart from the
 * transport: everything that touches the connection goes through the frame
 * writer and the decoder attached in the constructor.
 */
export class Session extends EventEmitter<SessionEvents> {
  /** Identity of the session. */
  readonly id: string;
  readonly role: Role;
  readonly config: ResolvedSessionConfig;
  readonly #transport: Duplex;
  readonly #writer: FrameWriter;
  readonly #decoder: Decoder;
  readonly #streams: StreamTable;
  readonly #windows: WindowTuner;
  readonly #host: SessionStreamHost;
  #bytesIn = 0;
  /** Stream receiving the current DATA frame; null while a frame is drained and ignored. */
  #dataTarget: StreamState | null = null;
  readonly #scheduler: SendScheduler;
  #incoming: ((stream: IncomingStream) => void) | null = null;
  #sentGoAway = false;
  #receivedGoAway = false;
  #terminated = false;
  #closeError: Error | undefined;
  #closed = false;
  readonly #keepalive: Keepalive;
  #drainTimer: NodeJS.Timeout | null = null;
  readonly #closedPromise: Promise<Error | undefined>;

  constructor(transport: Duplex, options: SessionOptions) {
    super();
    const { role, id, head, shared, ...limits } = options;
    this.config = resolveSessionConfig(limits);
    this.role = role;
    this.id = id ?? randomBytes(16).toString('hex');
    this.#transport = transport;
    this.#streams = new StreamTable(role, this.config);
    this.#windows = new WindowTuner(this.config.maxStreamWindowBytes, this.config.maxSessionWindowBytes, shared);
    this.#closedPromise = new Promise((resolve) => this.once('close', resolve));
    this.#decoder = new Decoder(this.#makeFrameHandler());
    this.#writer = new FrameWriter(
      transport,
      this.config,
      () => this.#scheduler.serve(),
      (why) =>
        this.#fail(
          new RhostError(
            'ERR_RHOST_WRITE_TIMEOUT',
            why === 'timeout'
              ? `the peer read nothing for ${this.config.writeTimeoutMs} ms`
              : 'the peer stopped reading: control frames piled up',
          ),
        ),
    );
    this.#scheduler = new SendScheduler(this.#writer, this.config.maxFramePayloadBytes);
    this.#keepalive = new Keepalive(this.config.pingIntervalMs, this.config.keepaliveTimeoutMs, {
      sendPing: (opaque) => this.#writer.control(encodeControl({ type: FrameType.Ping, streamId: 0, opaque })),
      dead: (silentFor) => this.#fail(new RhostError('ERR_RHOST_KEEPALIVE_TIMEOUT', `nothing received from the peer for ${Math.round(silentFor)} ms`)),
    });
    this.#host = new SessionStreamHost({
      table: this.#streams,
      writer: this.#writer,
      scheduler: this.#scheduler,
      windows: this.#windows,
      keepalive: this.#keepalive,
      shared,
      terminated: () => this.#terminated,
      released: (state) => {
        if (this.#dataTarget === state) this.#dataTarget = null;
        this.#maybeFinish();
      },
    });
    transport.on('error', this.#onTransportError);
    transport.on('end', this.#onTransportEnd);
    transport.on('close', this.#onTransportClose);
    // Frames start flowing on the next tick, so that the owner can add its 'stream' listener first:
    // an OPEN that came in the same read as the handshake is then accepted, not refused.
    transport.pause();
    process.nextTick(() => {
      if (this.#terminated) return;
      if (head && head.length) this.#onTransportData(head);
      transport.on('data', this.#onTransportData);
      transport.resume(); // a handshake may have paused it to hand it over without losing bytes
    });
  }

  /** Last measured round trip in ms (0 until the first PONG). */
  get rtt(): number {
    return this.#keepalive.rtt;
  }

  /** True once the session ended (its transport may still be closing). */
  get closed(): boolean {
    return this.#terminated;
  }

  /** Resolves once the transport is closed, with the error that ended the session (undefined after a clean end). */
  get ended(): Promise<Error | undefined> {
    return this.#closedPromise;
  }

  /** True when no new stream can be opened: GOAWAY sent or received, or closed. */
  get goingAway(): boolean {
    return this.#sentGoAway || this.#receivedGoAway || this.#terminated;
  }

  stats(): SessionStats {
    return {
      streams: this.#streams.size,
      pendingOpens: this.#streams.pendingOut,
      bufferedBytes: this.#host.bufferedBytes,
      bytesIn: this.#bytesIn,
      bytesOut: this.#writer.bytesOut,
      rttMs: this.#keepalive.rtt,
    };
  }

  /**
   * Opens a stream to the peer. Data may be written at once: the peer's
   * initial window covers it before any ACK. Throws ERR_RHOST_GOING_AWAY,
   * ERR_RHOST_TOO_MANY_STREAMS or ERR_RHOST_TOO_MANY_PENDING.
   */
  open(meta: Partial<OpenMeta> = {}): Stream {
    const [state, full] = this.#openState(meta);
    return new Stream(this.#host, state, full);
  }

  /**
   * Opens a stream carried straight from and to `socket`, with no Duplex in
   * between: what a proxy wants (see SocketEndpoint). Throws like `open`.
   */
  openSocket(meta: Partial<OpenMeta>, socket: SocketLike, onEnd: (end: SpliceEnd) => void, options?: SpliceOptions): number {
    return this.openEndpoint(meta, (host, state) => void new SocketEndpoint(host, state, socket, onEnd, options));
  }

  /**
   * Opens a stream whose received bytes and end go to the endpoint `make`
   * builds (a socket, another stream: see relayStream). Throws like `open`;
   * returns the stream id.
   */
  openEndpoint(meta: Partial<OpenMeta>, make: (host: StreamHost, state: StreamState) => void): number {
    const [state] = this.#openState(meta);
    make(this.#host, state);
    return state.id;
  }

  /**
   * Takes the streams the peer opens as light handles instead of `stream`
   * events with a Duplex each: the handler splices them onto sockets, makes
   * Duplexes of them, or resets them.
   */
  handleStreams(handler: (stream: IncomingStream) => void): void {
    this.#incoming = handler;
  }

  #openState(meta: Partial<OpenMeta>): [StreamState, OpenMeta] {
    if (this.goingAway) throw new RhostError('ERR_RHOST_GOING_AWAY', 'the session is going away: no new streams');
    const state = this.#streams.openLocal(() => this.goAway());
    const full: OpenMeta = { channel: meta.channel ?? '/', remoteAddress: meta.remoteAddress ?? '', remotePort: meta.remotePort ?? 0 };
    this.#writer.control(encodeControl({ type: FrameType.Open, streamId: state.id, meta: full }));
    return [state, full];
  }

  /** Sends a PING now (or joins the one in flight) and resolves with the round trip in ms. */
  ping(): Promise<number> {
    if (this.#terminated) return Promise.reject(new RhostError('ERR_RHOST_SESSION_CLOSED', 'the session is closed'));
    return this.#keepalive.ping();
  }

  /** Announces GOAWAY: this side opens no more streams and refuses the peer's new ones. */
  goAway(code: WireError = WireError.NoError, reason = ''): void {
    if (this.#sentGoAway || this.#terminated) return;
    this.#sentGoAway = true;
    this.#writer.control(encodeControl({ type: FrameType.GoAway, streamId: 0, code, reason }));
    this.#maybeFinish();
  }

  /**
   * Graceful close: GOAWAY, then wait for the streams to finish, up to
   * `drainTimeoutMs` (the config's by default), after which the rest are
   * reset. Resolves when the transport is closed.
   */
  async close(drainTimeoutMs = this.config.drainTimeoutMs): Promise<void> {
    if (!this.#terminated) {
      this.goAway();
      if (!this.#terminated && !this.#drainTimer && this.#streams.size > 0) {
        this.#drainTimer = setTimeout(() => {
          this.#fail(new RhostError('ERR_RHOST_CLOSED', `streams still open after ${drainTimeoutMs} ms drain`), WireError.Cancel);
        }, drainTimeoutMs);
      }
    }
    await this.#closedPromise;
  }

  /**
   * Ends the session at once: the peer gets a GOAWAY, streams are destroyed
   * (with an ERR_RHOST_SESSION_CLOSED error only when `err` is given, as
   * http2 does), and the transport is closed.
   */
  async destroy(err?: Error): Promise<void> {
    this.#fail(err, err ? wireCodeOf(err) : WireError.Cancel);
    await this.#closedPromise;
  }

  // ---- receiving -------------------------------------------------------

  readonly #onTransportData = (chunk: Buffer): void => {
    if (this.#terminated) return;
    this.#keepalive.received();
    this.#bytesIn += chunk.length;
    this.#host.nextPass();
    try {
      this.#decoder.write(chunk);
    } catch (err) {
      this.#fail(err as Error);
    } finally {
      this.#host.flushBatched();
    }
  };

  #makeFrameHandler(): FrameHandler {
    return {
      dataHeader: (streamId, length) => {
        const state = this.#streams.get(streamId);
        if (state === undefined || state.reset) {
          this.#dataTarget = null; // unknown or reset stream: drained and ignored
          return;
        }
        if (!state.recv.take(length)) {
          throw new ProtocolError(
            'ERR_RHOST_FLOW_CONTROL',
            WireError.FlowControlError,
            `stream ${streamId} sent ${length} bytes with ${state.recv.available} of window left`,
          );
        }
        if (!state.incoming && !state.accepted) this.#host.acceptedByPeer(state); // DATA before ACK counts as acceptance, as FIN does
        if (state.remoteFin) {
          this.#dataTarget = null;
          this.#host.resetStream(state, WireError.StreamClosed, new RhostError('ERR_RHOST_STREAM_CLOSED', `DATA after FIN on stream ${streamId}`));
          return;
        }
        this.#dataTarget = state;
      },
      data: (_streamId, piece) => {
        const state = this.#dataTarget;
        if (state !== null && !state.reset) this.#host.deliver(state, piece);
      },
      control: (frame) => this.#onControl(frame),
    };
  }

  #onControl(frame: ControlFrame): void {
    switch (frame.type) {
      case FrameType.Open:
        return this.#onOpen(frame.streamId, frame.meta);
      case FrameType.Ping:
        this.#writer.control(encodeControl({ type: FrameType.Pong, streamId: 0, opaque: frame.opaque }));
        return;
      case FrameType.Pong:
        return this.#keepalive.pong(frame.opaque);
      case FrameType.GoAway:
        return this.#onGoAway(frame.code, frame.reason);
      case FrameType.Auth:
      case FrameType.Refuse:
        throw new ProtocolError('ERR_RHOST_PROTOCOL', WireError.ProtocolError, `${FrameType[frame.type]} belongs before the session, not in it`);
    }
    const state = this.#streams.get(frame.streamId);
    if (state === undefined || state.reset) return; // a frame for an unknown stream is ignored
    switch (frame.type) {
      case FrameType.Ack:
        if (!state.incoming && !state.accepted) this.#host.acceptedByPeer(state);
        return;
      case FrameType.Fin:
        if (state.remoteFin) return;
        state.remoteFin = true;
        if (!state.incoming && !state.accepted) this.#host.acceptedByPeer(state);
        state.endpoint?.finish();
        this.#host.maybeRelease(state);
        return;
      case FrameType.Rst:
        state.reset = true;
        this.#host.abort(state, new PeerError('ERR_RHOST_STREAM_RESET', frame.code, frame.reason));
        return;
      case FrameType.Window: {
        const window = state.sendWindow + frame.increment;
        if (window > MAX_WINDOW_BYTES) {
          throw new ProtocolError('ERR_RHOST_FLOW_CONTROL', WireError.FlowControlError, `WINDOW overflows stream ${state.id}`);
        }
        state.sendWindow = window;
        if (state.pending) this.#scheduler.flush(state);
        return;
      }
    }
  }

  #onOpen(id: number, meta: OpenMeta): void {
    let refusal = this.#streams.checkRemote(id);
    if (this.goingAway) refusal = 'going away';
    else if (refusal === null && this.#incoming === null && this.listenerCount('stream') === 0) refusal = 'not accepting streams';
    if (refusal !== null) {
      this.#writer.control(encodeControl({ type: FrameType.Rst, streamId: id, code: WireError.RefusedStream, reason: refusal }));
      return;
    }
    const state = this.#streams.openRemote(id);
    if (this.#incoming) this.#incoming(new IncomingStream(this.#host, state, meta));
    else this.emit('stream', new Stream(this.#host, state, meta));
  }

  #onGoAway(code: number, reason: string): void {
    this.#receivedGoAway = true;
    if (code !== WireError.NoError) {
      this.#fail(new PeerError('ERR_RHOST_PEER_GOAWAY', code, reason), null);
      return;
    }
    this.emit('goaway', code, reason);
    this.#maybeFinish();
  }

  /** After a GOAWAY either way, the session ends once no stream is left. */
  #maybeFinish(): void {
    if (this.#terminated || this.#streams.size > 0 || !(this.#sentGoAway || this.#receivedGoAway)) return;
    this.#terminate(undefined, true);
  }

  // ---- ending ----------------------------------------------------------

  /** Ends the session because of `err`, telling the peer with a GOAWAY when there is a code to send. */
  #fail(err: Error | undefined, code: WireError | null = wireCodeOf(err)): void {
    if (this.#terminated) return;
    // A dead or stuck peer cannot take a GOAWAY: then the transport is dropped at once.
    const reachable = !this.#transport.destroyed && !this.#writer.blocked && code !== WireError.KeepaliveTimeout;
    const flush = code !== null && reachable;
    if (flush) {
      this.#sentGoAway = true;
      this.#writer.control(encodeControl({ type: FrameType.GoAway, streamId: 0, code, reason: err?.message ?? '' }));
    }
    this.#terminate(err, flush);
  }

  /**
   * Tears the session down. With `flush`, frames already written still go out
   * (the transport is ended, not destroyed).
   */
  #terminate(err: Error | undefined, flush: boolean): void {
    if (this.#terminated) return;
    this.#terminated = true;
    this.#closeError = err;
    this.#keepalive.stop();
    if (this.#drainTimer) clearTimeout(this.#drainTimer);
    this.#writer.dispose();
    const streamError = err && new RhostError('ERR_RHOST_SESSION_CLOSED', `session closed: ${err.message}`, { cause: err });
    for (const state of this.#streams.all()) {
      state.reset = true;
      this.#host.release(state);
      state.endpoint?.abort(streamError);
    }
    this.#scheduler.clear();
    const transport = this.#transport;
    if (flush && !transport.destroyed) {
      transport.end();
      const guard = setTimeout(() => transport.destroy(), END_GRACE_MS);
      transport.once('close', () => clearTimeout(guard));
    } else {
      transport.destroy();
    }
    if (transport.destroyed && (transport as { closed?: boolean }).closed) this.#emitClose();
  }

  #emitClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.emit('close', this.#closeError);
  }

  readonly #onTransportError = (err: Error): void => {
    this.#terminate(new RhostError('ERR_RHOST_SESSION_CLOSED', `transport error: ${err.message}`, { cause: err }), false);
  };

  readonly #onTransportEnd = (): void => {
    const clean = this.#streams.size === 0 && (this.#sentGoAway || this.#receivedGoAway);
    this.#terminate(clean ? undefined : new RhostError('ERR_RHOST_SESSION_CLOSED', 'the peer closed the connection'), false);
  };

  readonly #onTransportClose = (): void => {
    this.#terminate(new RhostError('ERR_RHOST_SESSION_CLOSED', 'the connection closed'), false);
    this.#emitClose();
  };
}
