/**
 * Wire constants of rhost protocol version 2. docs/protocol.md is normative;
 * every value here appears there with the same name.
 */

/**
 * The newest protocol version this code speaks. Version 2 proves keys and
 * tokens with a challenge and an HMAC (docs/protocol.md §3.2) instead of
 * sending them; its frames are version 1's, plus AUTH and REFUSE before a
 * session. Version 3 adds a server agent's policy (public by name, allow
 * and deny lists) to the request, signed by the proofs (§3.9).
 */
export const PROTOCOL_VERSION = 3;

/** Versions agents offer, newest first. Agents never offer 1: it sends the key in the request. */
export const SUPPORTED_VERSIONS: readonly number[] = [3, 2];

/** The first version whose request carries a policy. */
export const POLICY_VERSION = 3;

/**
 * Version 1 put the key and token in the request's Authorization header,
 * which reaches whatever answers the request. A tunnel accepts it only with
 * `allowLegacyAuth`, and warns.
 */
export const LEGACY_VERSION = 1;

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
  /**
   * Version 2, before the session: the agent's proofs, and the tunnel's
   * answering proofs. Stream id 0; a TLV payload (docs/protocol.md §3.3).
   */
  Auth = 0x9,
  /** Version 2, before the session: the tunnel refuses the agent's AUTH. Stream id 0. */
  Refuse = 0xa,
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

/** Error codes carried by RST and GOAWAY: defined with the facts of every error, in src/errors.ts. */
export { WireError, wireName } from '../errors.js';

/** Stream ids are odd for the side that dialed the transport (the agent), even for the tunnel. */
export enum Role {
  /** Dialed the transport: opens odd stream ids. */
  Initiator = 'initiator',
  /** Accepted the transport: opens even stream ids. */
  Acceptor = 'acceptor',
}
