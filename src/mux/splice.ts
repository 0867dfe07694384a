import type { Duplex } from 'node:stream';
import type { PeerError } from '../protocol/index.js';

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
  answerReset?: (err: PeerError, socket: Duplex) => boolean;
  /** A socket that was still connecting connected (the stream is then accepted). */
  onConnect?: () => void;
  /** A socket that was still connecting failed to (the stream is then reset with the matching code). */
  onConnectError?: (err: NodeJS.ErrnoException) => void;
}

/**
 * Destroys a socket with a TCP RST when it can, so the far end sees a reset
 * and not a clean end; anything else is destroyed. Works on any Duplex: a
 * TCP socket has `resetAndDestroy`; a TLS socket has it too, but it throws
 * (its handle is TLS, not TCP), so an encrypted one is destroyed instead.
 */
export function resetSocket(socket: Duplex): void {
  if (socket.destroyed) return;
  const s = socket as Duplex & { resetAndDestroy?: () => void; encrypted?: boolean; connecting?: boolean };
  if (typeof s.resetAndDestroy === 'function' && !s.encrypted && !s.connecting) s.resetAndDestroy();
  else socket.destroy();
}
