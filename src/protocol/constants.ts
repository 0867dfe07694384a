/**
 * Wire constants of rhost protocol version 1. docs/protocol.md is normative;
 * every value here appears there with the same name.
 */

/** The protocol version this code speaks. Sent in the handshake's `Rhost-Version`. */
export const PROTOCOL_VERSION = 1;

/** Versions this code can speak, newest first. */
export const SUPPORTED_VERSIONS: readonly number[] = [1];

/**
 * Frame header: payload length (u32), type (u8), stream id (u32), big-endian.
 * The seed's order (size, event, connection id, data) is kept.
 */
export const FRAME_HEADER_BYTES = 9;

/** Frame types ("events"). Values are fixed on the wire. */
export enum FrameType {
  /** Bytes of a stream, in order. */
  Data = 0x0,
  /** Opens a stream; payload is the open metadata (channel, remote address, port). */
  Open = 0x1,
  /** The receiver of an OPEN accepted the stream. Empty payload. */
  Ack = 0x2,
  /** The sender will send no more DATA on this stream (half-close, like TCP shutdown). */
  Fin = 0x3,
  /** Aborts the stream in both directions; payload is u32 code plus optional UTF-8 reason. */
  Rst = 0x4,
  /** Grants the peer more credit on a stream; payload is a u32 increment. */
  Window = 0x5,
  /** Session keepalive; payload is 8 opaque bytes to be echoed. Stream id 0. */
  Ping = 0x6,
  /** Answer to PING with the same 8 bytes. Stream id 0. */
  Pong = 0x7,
  /** The sender opens no more streams and accepts no new ones; u32 code plus reason. Stream id 0. */
  GoAway = 0x8,
}

/** Largest DATA payload any receiver must accept: 256 KiB. */
export const MAX_DATA_PAYLOAD_BYTES = 256 * 1024;

/**
 * Largest payload of any other frame type: 1 KiB holds an OPEN (two short
 * strings and a port) or a reason text, and keeps the bytes a decoder must
 * buffer per session tiny.
 */
export const MAX_CONTROL_PAYLOAD_BYTES = 1024;

/**
 * Credit each side has on a new stream before any WINDOW frame: 64 KiB, as in
 * HTTP/2. Small so that thousands of idle streams cost little; receivers grow
 * it with WINDOW frames when a stream proves it needs more.
 */
export const INITIAL_WINDOW_BYTES = 64 * 1024;

/** No window may exceed 2^31 - 1 bytes; a WINDOW that would is a flow-control error. */
export const MAX_WINDOW_BYTES = 2 ** 31 - 1;

/** Largest stream id; an endpoint that runs out of ids must GOAWAY. */
export const MAX_STREAM_ID = 2 ** 32 - 1;

/** PING and PONG carry exactly this many opaque bytes. */
export const PING_PAYLOAD_BYTES = 8;

/**
 * Error codes carried by RST and GOAWAY. One space for both, as in HTTP/2.
 * Receivers treat an unknown code as INTERNAL_ERROR.
 */
export enum WireError {
  /** Graceful: a drain (GOAWAY), or nothing went wrong. */
  NoError = 0x0,
  /** The peer broke the protocol. */
  ProtocolError = 0x1,
  /** The sender hit a bug or a local failure it cannot name better. */
  InternalError = 0x2,
  /** The peer sent more DATA than its window allowed, or overflowed a window. */
  FlowControlError = 0x3,
  /** A frame arrived for a stream direction that was already closed. */
  StreamClosed = 0x4,
  /** A frame's length is not allowed for its type. */
  FrameSizeError = 0x5,
  /** The stream was not processed (limits, shutdown); opening it again later is safe. */
  RefusedStream = 0x6,
  /** The endpoint no longer needs the stream (its user went away). */
  Cancel = 0x7,
  /** Nothing arrived from the peer within the keepalive timeout. */
  KeepaliveTimeout = 0x8,
  /** The peer stopped reading; writes stayed blocked past the write timeout. */
  WriteTimeout = 0x9,
  /** The local service refused the connection (ECONNREFUSED). */
  ConnectRefused = 0xa,
  /** The local service could not be reached (timeout, unreachable, DNS failure). */
  ConnectFailed = 0xb,
  /** The connection at the far end was reset (ECONNRESET, EPIPE). */
  ConnectionReset = 0xc,
  /** No server agent is registered on the stream's channel. */
  NoServer = 0xd,
  /** The peer exceeded a limit (streams, pending opens, buffered bytes). */
  LimitExceeded = 0xe,
}

/** Stream ids are odd for the side that dialed the transport (the agent), even for the tunnel. */
export enum Role {
  /** Dialed the transport: opens odd stream ids. */
  Initiator = 'initiator',
  /** Accepted the transport: opens even stream ids. */
  Acceptor = 'acceptor',
}
