/**
 * Every error rhost raises carries one of these stable codes. Branch on
 * `err.code`, never on the message text. The list is the documentation: each
 * code says when it happens. docs/protocol.md maps the wire-level ones.
 */
export const ERROR_CODES = {
  ERR_RHOST_BAD_OPTION: 'an option is missing, of the wrong type or out of range',
  ERR_RHOST_PROTOCOL: 'the peer broke the wire protocol; the session ends',
  ERR_RHOST_FRAME_SIZE: 'a frame declared a length its type does not allow; the session ends',
  ERR_RHOST_FLOW_CONTROL: 'the peer sent more than its window allowed; the session ends',
  ERR_RHOST_STREAM_RESET: 'the peer reset the stream (see `wireCode`)',
  ERR_RHOST_STREAM_CLOSED: 'a frame arrived for a direction the peer had already closed',
  ERR_RHOST_SESSION_CLOSED: 'the session under the stream closed before the stream ended',
  ERR_RHOST_GOING_AWAY: 'no new streams: one side announced GOAWAY',
  ERR_RHOST_TOO_MANY_STREAMS: 'the session already carries its maximum number of streams',
  ERR_RHOST_TOO_MANY_PENDING: 'too many opened streams are still waiting for the peer to accept them',
  ERR_RHOST_KEEPALIVE_TIMEOUT: 'nothing arrived from the peer within the keepalive timeout',
  ERR_RHOST_WRITE_TIMEOUT: 'the peer stopped reading: writes stayed blocked past the write timeout',
  ERR_RHOST_PEER_GOAWAY: 'the peer ended the session with an error code (see `wireCode`)',
  ERR_RHOST_BAD_HANDSHAKE: 'the agent handshake was malformed',
  ERR_RHOST_HEADERS_TOO_LARGE: 'the handshake head exceeded its byte limit',
  ERR_RHOST_HANDSHAKE_TIMEOUT: 'the handshake did not complete in time',
  ERR_RHOST_VERSION: 'agent and tunnel share no protocol version',
  ERR_RHOST_UNAUTHORIZED: 'the handshake carried no credentials where they are required',
  ERR_RHOST_BAD_KEY: 'the key does not match the one configured for the channel',
  ERR_RHOST_BAD_TOKEN: 'the token does not match the one the channel’s server agent set',
  ERR_RHOST_UNKNOWN_CHANNEL: 'the tunnel has no such channel configured',
  ERR_RHOST_CHANNEL_TAKEN: 'another server agent already holds the channel',
  ERR_RHOST_NO_SERVER: 'no server agent is registered on the channel',
  ERR_RHOST_NO_CLIENTS: 'the channel’s server agent set no token, so client agents cannot subscribe',
  ERR_RHOST_BUSY: 'the tunnel is at a configured limit (users, client agents, buffered data); try again later',
  ERR_RHOST_RATE_LIMITED: 'too many failed handshakes from this address; try again later',
  ERR_RHOST_SHUTTING_DOWN: 'the tunnel is shutting down and accepts no new sessions',
  ERR_RHOST_UNEXPECTED_RESPONSE: 'the tunnel answered the handshake with something other than rhost',
  ERR_RHOST_CONNECT: 'the agent could not reach the tunnel',
  ERR_RHOST_TLS: 'the tunnel’s TLS certificate could not be verified (see --ca, --insecure)',
  ERR_RHOST_PROXY: 'the HTTP proxy refused or failed the CONNECT to the tunnel',
  ERR_RHOST_CLOSED: 'the object was closed',
} as const;

/** One of the stable codes in {@link ERROR_CODES}. */
export type RhostErrorCode = keyof typeof ERROR_CODES;

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
