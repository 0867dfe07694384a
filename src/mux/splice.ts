import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { PeerError, WireError } from '../protocol/index.js';
import type { Stream } from './stream.js';

/** How one carried connection ended, for the log line written once at its end. */
export interface SpliceEnd {
  /** Bytes from the socket into the stream, and from the stream out to the socket. */
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  /** `closed` when both directions finished; otherwise what cut it. */
  reason: string;
}

export interface SpliceOptions {
  /** Bytes already read from the socket (say, to classify it): they go first. */
  head?: Buffer;
  /**
   * The peer reset the stream before the socket received a byte. Return true
   * after answering the socket yourself (say, with an HTTP 502 page);
   * otherwise the socket is reset.
   */
  answerReset?: (err: PeerError, socket: net.Socket) => boolean;
}

/** Returns a function that reports the end once, with the stream's counters at that moment. */
function reportOnce(stream: Stream, onEnd: (end: SpliceEnd) => void): (reason: string) => void {
  const started = performance.now();
  let ended = false;
  return (reason) => {
    if (ended) return;
    ended = true;
    onEnd({ bytesIn: stream.bytesOut, bytesOut: stream.bytesIn, durationMs: performance.now() - started, reason });
  };
}

/**
 * A plain TCP socket, which can be reset. A TLS socket has resetAndDestroy
 * too, but it throws: its handle is TLS, not TCP.
 */
function isTcpSocket(d: Duplex): d is net.Socket {
  return d instanceof net.Socket && !(d instanceof tls.TLSSocket) && !d.connecting;
}

/** Destroys a socket with a TCP RST when it can, so the far end sees a reset and not a clean end. */
export function resetSocket(socket: Duplex): void {
  if (socket.destroyed) return;
  if (isTcpSocket(socket)) socket.resetAndDestroy();
  else socket.destroy();
}

/**
 * Carries a socket over a stream, both ways: `pipe` holds the faster side
 * back (backpressure), an end on one side becomes FIN on the other
 * (half-close; the socket must allow half-open), and a reset on either side
 * resets the other with the matching code: a socket error ECONNRESET becomes
 * RST CONNECTION_RESET, and a stream RST becomes a TCP RST to the socket.
 * `onEnd` is called once, when both are done.
 */
export function spliceSocket(socket: net.Socket, stream: Stream, onEnd: (end: SpliceEnd) => void, options: SpliceOptions = {}): void {
  const finish = reportOnce(stream, onEnd);
  socket.pipe(stream);
  stream.pipe(socket);
  socket.on('error', (err: NodeJS.ErrnoException) => {
    stream.destroy(err);
    finish(`socket error ${err.code ?? err.message}`);
  });
  socket.on('close', () => {
    if (!stream.destroyed && !(stream.writableEnded && stream.readableEnded)) {
      stream.destroy();
      finish('socket closed early');
    } else {
      finish('closed');
    }
  });
  stream.on('error', (err: Error) => {
    const answered = err instanceof PeerError && stream.bytesIn === 0 && !socket.destroyed && options.answerReset?.(err, socket);
    if (!answered) resetSocket(socket);
    finish(err.message);
  });
  stream.on('close', () => {
    if (!stream.readableEnded && !socket.destroyed && !socket.writableEnded) resetSocket(socket);
  });
}

/**
 * Carries one stream over another (a client agent's stream to the channel's
 * server agent): data and FIN both ways with backpressure, the far side's
 * acceptance back to the near side, and a reset on one side as the same
 * reset code on the other.
 */
export function spliceStreams(near: Stream, far: Stream, onEnd: (end: SpliceEnd) => void): void {
  const finish = reportOnce(far, onEnd);
  far.once('accept', () => near.accept());
  near.pipe(far);
  far.pipe(near);
  const relayReset = (to: Stream) => (err: Error) => {
    to.reset(err instanceof PeerError ? err.wireCode : WireError.Cancel);
    finish(err.message);
  };
  near.on('error', relayReset(far));
  far.on('error', relayReset(near));
  const onClose = (): void => {
    if (near.destroyed && far.destroyed) finish('closed');
  };
  near.on('close', onClose);
  far.on('close', onClose);
}
