/**
 * The facts of every error rhost raises, in one table: each code's meaning,
 * the HTTP status a tunnel refuses a handshake with, the wire code a stream
 * or session failure carries to the peer, whether an agent stops for good on
 * it, and whether the tunnel counts it as a guess. Everything else (the
 * refusal statuses, the RST/GOAWAY mapping, the agents' fatal set, the
 * lockouts) derives from this table. Branch on `err.code`, never on the
 * message text. docs/protocol.md §9 lists the same codes.
 */

/**
 * Error codes carried by RST and GOAWAY frames: one space for both, as in
 * HTTP/2. Values are fixed on the wire. Receivers treat an unknown code as
 * INTERNAL_ERROR.
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
  /**
   * The credentials the session was admitted with are no longer valid: the
   * channel's server agent changed the token, or the operator removed the
   * key. Unlike NO_ERROR it is not a drain the agent may wait out: it must
   * authenticate again.
   */
  CredentialsChanged = 0xf,
  /** The channel's allow or deny list does not admit the user's address (protocol 3). */
  Forbidden = 0x10,
}

/** The one spelling of a wire code, in code, logs and docs: `CONNECT_REFUSED`. */
export function wireName(code: number): string {
  const name = WireError[code];
  return name === undefined ? `UNKNOWN_0x${code.toString(16)}` : name.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
}

/** The facts of one error code. */
interface ErrorFacts {
  /** When it happens. */
  readonly text: string;
  /** A tunnel that refuses a handshake for this reason answers with this HTTP status. */
  readonly status?: number;
  /** What a stream reset or session end for this reason tells the peer. */
  readonly wire?: WireError;
  /** An agent refused with this code stops: its configuration is wrong and retrying cannot help. */
  readonly fatal?: boolean;
  /** The tunnel counts this refusal as a guess: it locks the address out for a while. */
  readonly guess?: boolean;
}

/** Every code, with its facts. */
export const ERRORS = {
  ERR_RHOST_BAD_OPTION: { text: 'an option is missing, of the wrong type or out of range', fatal: true },
  ERR_RHOST_BUG: { text: 'an unexpected exception: a bug in rhost (the log has its stack)', fatal: true, wire: WireError.InternalError },
  ERR_RHOST_PROTOCOL: { text: 'the peer broke the wire protocol; the session ends', wire: WireError.ProtocolError },
  ERR_RHOST_FRAME_SIZE: { text: 'a frame declared a length its type does not allow; the session ends', wire: WireError.FrameSizeError },
  ERR_RHOST_FLOW_CONTROL: { text: 'the peer sent more than its window allowed; the session ends', wire: WireError.FlowControlError },
  ERR_RHOST_STREAM_RESET: { text: 'the peer reset the stream (see `wireCode`)' },
  ERR_RHOST_STREAM_CLOSED: { text: 'a frame arrived for a direction the peer had already closed', wire: WireError.StreamClosed },
  ERR_RHOST_SESSION_CLOSED: { text: 'the session under the stream closed before the stream ended', wire: WireError.Cancel },
  ERR_RHOST_GOING_AWAY: { text: 'no new streams: one side announced GOAWAY', wire: WireError.RefusedStream },
  ERR_RHOST_TOO_MANY_STREAMS: { text: 'the session already carries its maximum number of streams', wire: WireError.RefusedStream },
  ERR_RHOST_TOO_MANY_PENDING: { text: 'too many opened streams are still waiting for the peer to accept them', wire: WireError.RefusedStream },
  ERR_RHOST_KEEPALIVE_TIMEOUT: { text: 'nothing arrived from the peer within the keepalive timeout', wire: WireError.KeepaliveTimeout },
  ERR_RHOST_WRITE_TIMEOUT: { text: 'the peer stopped reading: writes stayed blocked past the write timeout', wire: WireError.WriteTimeout },
  ERR_RHOST_PEER_GOAWAY: { text: 'the peer ended the session with an error code (see `wireCode`)' },
  ERR_RHOST_BAD_HANDSHAKE: { text: 'the agent handshake was malformed', status: 400, fatal: true },
  ERR_RHOST_HEADERS_TOO_LARGE: { text: 'the handshake head exceeded its byte limit', status: 431 },
  ERR_RHOST_HANDSHAKE_TIMEOUT: { text: 'the handshake did not complete in time', status: 408 },
  ERR_RHOST_VERSION: { text: 'agent and tunnel share no protocol version', status: 426, fatal: true },
  ERR_RHOST_UNAUTHORIZED: { text: 'the agent gave no credential where the channel requires one', status: 401, fatal: true, guess: true },
  ERR_RHOST_BAD_KEY: { text: 'the key does not match the one configured for the channel, or there is no such channel', status: 403, fatal: true, guess: true },
  ERR_RHOST_BAD_TOKEN: { text: 'the token does not match the one the channel’s server agent set', status: 403, fatal: true, guess: true },
  ERR_RHOST_TUNNEL_PROOF: { text: 'the peer accepted the agent but could not prove it knows the key or token: it is not the real tunnel', fatal: true },
  ERR_RHOST_OPEN_VIA_PROXY: { text: 'the implicit open channel / takes no agent that came through a proxy: set a key', status: 403, fatal: true },
  ERR_RHOST_FORBIDDEN: { text: 'the channel’s allow or deny list does not admit this address', status: 403, wire: WireError.Forbidden, fatal: true },
  ERR_RHOST_CHANNEL_TAKEN: { text: 'another server agent already holds the channel', status: 409 },
  ERR_RHOST_NO_SERVER: { text: 'no server agent that admits client agents is registered on the channel', status: 503, wire: WireError.NoServer },
  ERR_RHOST_BUSY: { text: 'the tunnel is at a configured limit (users, client agents, buffered data); try again later', status: 503, wire: WireError.LimitExceeded },
  ERR_RHOST_RATE_LIMITED: { text: 'too many failed or too many new connections from this address; try again later', status: 429 },
  ERR_RHOST_SHUTTING_DOWN: { text: 'the tunnel is shutting down and accepts no new sessions', status: 503, wire: WireError.RefusedStream },
  ERR_RHOST_CREDENTIALS_CHANGED: { text: 'the credentials the session was admitted with are no longer valid', wire: WireError.CredentialsChanged },
  ERR_RHOST_UNEXPECTED_RESPONSE: { text: 'the tunnel answered the handshake with something other than rhost' },
  ERR_RHOST_CONNECT: { text: 'the agent could not reach the tunnel' },
  ERR_RHOST_TLS: { text: 'the tunnel’s TLS certificate could not be verified (see --ca, --insecure)' },
  ERR_RHOST_PROXY: { text: 'the HTTP proxy refused or failed the CONNECT to the tunnel' },
  ERR_RHOST_CLOSED: { text: 'the object was closed', wire: WireError.Cancel },
} as const satisfies Record<string, ErrorFacts>;

/** One of the stable codes in {@link ERRORS}. */
export type RhostErrorCode = keyof typeof ERRORS;

/** What each code means: the table's texts, for docs and tools. */
export const ERROR_CODES: Readonly<Record<RhostErrorCode, string>> = Object.freeze(
  Object.fromEntries(Object.entries(ERRORS).map(([code, facts]) => [code, facts.text])) as Record<RhostErrorCode, string>,
);

/** The facts of `code`, or undefined for a string that is no code of ours. */
export function errorFacts(code: string): ErrorFacts | undefined {
  return Object.hasOwn(ERRORS, code) ? (ERRORS as Record<string, ErrorFacts>)[code] : undefined;
}

/** True for a string that is one of our codes. */
export function isErrorCode(code: string): code is RhostErrorCode {
  return Object.hasOwn(ERRORS, code);
}

/** The one error class of rhost. `code` is stable; `cause` is passed through. */
export class RhostError extends Error {
  readonly code: RhostErrorCode;

  constructor(code: RhostErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RhostError';
    this.code = code;
  }
}

/** True when `err` is a RhostError with the given code. */
export function isRhostError(err: unknown, code?: RhostErrorCode): err is RhostError {
  return err instanceof RhostError && (code === undefined || err.code === code);
}
