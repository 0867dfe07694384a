import { errorFacts, RhostError, WireError, wireName, type RhostErrorCode } from '../errors.js';
import { quote } from '../log.js';

/**
 * A violation of the wire protocol. It ends the session it happened on, and
 * `wireCode` is what the GOAWAY to the peer carries.
 */
export class ProtocolError extends RhostError {
  readonly wireCode: WireError;

  constructor(code: RhostErrorCode, wireCode: WireError, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ProtocolError';
    this.wireCode = wireCode;
  }
}

/** The peer reset a stream, or ended the session with an error code. */
export class PeerError extends RhostError {
  readonly wireCode: WireError;
  /** The peer's own words: for logs, quoted, never trusted. */
  readonly reason: string;

  constructor(code: 'ERR_RHOST_STREAM_RESET' | 'ERR_RHOST_PEER_GOAWAY', wireCode: number, reason: string) {
    const what = code === 'ERR_RHOST_STREAM_RESET' ? 'stream reset by peer' : 'session ended by peer';
    super(code, `${what}: ${wireName(wireCode)}${reason ? ` ${quote(reason)}` : ''}`);
    this.name = 'PeerError';
    this.wireCode = wireCode in WireError ? wireCode : WireError.InternalError;
    this.reason = reason;
  }
}

/** Node socket errors, by `err.code`, that say what happened at the far end. */
const NODE_CODE_TO_WIRE: Record<string, WireError> = {
  ECONNREFUSED: WireError.ConnectRefused,
  ECONNRESET: WireError.ConnectionReset,
  EPIPE: WireError.ConnectionReset,
  ECONNABORTED: WireError.ConnectionReset,
  ETIMEDOUT: WireError.ConnectFailed,
  EHOSTUNREACH: WireError.ConnectFailed,
  ENETUNREACH: WireError.ConnectFailed,
  ENOTFOUND: WireError.ConnectFailed,
  EAI_AGAIN: WireError.ConnectFailed,
  EADDRNOTAVAIL: WireError.ConnectFailed,
};

/**
 * The wire code to send for a local error: in a RST when a stream fails, in a
 * GOAWAY when a session does. `undefined` and `null` mean the stream was
 * dropped on purpose (CANCEL). An error nobody classified is INTERNAL_ERROR,
 * never NO_ERROR: a plain Error must not look like a clean end to the peer.
 */
export function wireCodeOf(err: unknown): WireError {
  if (err === undefined || err === null) return WireError.Cancel;
  if (err instanceof ProtocolError || err instanceof PeerError) return err.wireCode;
  if (err instanceof RhostError) return errorFacts(err.code)?.wire ?? WireError.InternalError;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code in NODE_CODE_TO_WIRE) return NODE_CODE_TO_WIRE[code]!;
  return WireError.InternalError;
}
