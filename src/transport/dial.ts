import net from 'node:net';
import type { Duplex } from 'node:stream';
import { RhostError, type RhostErrorCode, ERROR_CODES } from '../errors.js';
import {
  buildAgentRequest,
  HandshakeError,
  HeadReader,
  parseTunnelResponse,
  SUPPORTED_VERSIONS,
  type AgentHello,
} from '../protocol/index.js';
import { formatAddress, type TunnelAddress } from './address.js';

/** What an agent needs to open a session on the tunnel. */
export interface DialOptions {
  address: TunnelAddress;
  hello: Omit<AgentHello, 'versions'>;
  userAgent: string;
  /** Bound on TCP connect plus handshake. */
  timeoutMs: number;
  /** Aborts the dial (the agent is closing). */
  signal?: AbortSignal;
}

/** An upgraded connection: frames follow, starting with `head`. */
export interface Dialed {
  transport: Duplex;
  /** Bytes that arrived after the 101 head: the start of the frame stream. */
  head: Buffer;
  version: number;
  sessionId: string;
}

/** Refusal codes after which trying again cannot help: the agent's configuration is wrong. */
export const FATAL_REFUSALS: ReadonlySet<RhostErrorCode> = new Set<RhostErrorCode>([
  'ERR_RHOST_BAD_KEY',
  'ERR_RHOST_BAD_TOKEN',
  'ERR_RHOST_UNAUTHORIZED',
  'ERR_RHOST_UNKNOWN_CHANNEL',
  'ERR_RHOST_NO_CLIENTS',
  'ERR_RHOST_VERSION',
  'ERR_RHOST_BAD_HANDSHAKE',
]);

function connectTcp(address: TunnelAddress): net.Socket {
  return net.connect({ host: address.host, port: address.port, allowHalfOpen: false, noDelay: true });
}

/**
 * Dials the tunnel and performs the agent handshake (docs/protocol.md §3).
 * Resolves with the upgraded transport; rejects with a RhostError whose code
 * says why: ERR_RHOST_CONNECT, ERR_RHOST_HANDSHAKE_TIMEOUT, a refusal code
 * sent by the tunnel, or ERR_RHOST_UNEXPECTED_RESPONSE.
 */
export function dialTunnel(options: DialOptions): Promise<Dialed> {
  const { address } = options;
  const where = formatAddress(address.host, address.port);
  const socket = connectTcp(address);
  return new Promise<Dialed>((resolve, reject) => {
    const reader = new HeadReader();
    let settled = false;
    const finish = (err: Error | null, result?: Dialed): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      if (err) {
        socket.destroy();
        reject(err);
      } else {
        resolve(result!);
      }
    };
    const timer = setTimeout(() => {
      finish(new RhostError('ERR_RHOST_HANDSHAKE_TIMEOUT', `the tunnel at ${where} did not answer within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    const onError = (err: Error): void => {
      finish(new RhostError('ERR_RHOST_CONNECT', `cannot reach the tunnel at ${where}: ${err.message}`, { cause: err }));
    };
    const onClose = (): void => {
      finish(new RhostError('ERR_RHOST_CONNECT', `the tunnel at ${where} closed the connection during the handshake`));
    };
    let answerHead: string | null = null;
    let body: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      try {
        if (answerHead === null) {
          const done = reader.push(chunk);
          if (!done) return;
          answerHead = done.head;
          body = done.rest;
        } else {
          body = Buffer.concat([body, chunk]);
        }
        const answer = parseTunnelResponse(answerHead, body.toString('utf8'));
        if (answer.ok) {
          socket.pause();
          finish(null, { transport: socket, head: body, version: answer.version, sessionId: answer.sessionId });
          return;
        }
        // A refusal: wait for its one-line body (the tunnel closes right after it).
        if (!body.includes(0x0a) && body.length < 1024) return;
        finish(refusalError(answer.code, answer.reason, answer.status, answer.versions, answer.retryAfterMs));
      } catch (err) {
        const e = err instanceof HandshakeError ? err : new RhostError('ERR_RHOST_UNEXPECTED_RESPONSE', String(err));
        finish(new RhostError('ERR_RHOST_UNEXPECTED_RESPONSE', `the tunnel at ${where} answered something that is not rhost: ${e.message}`));
      }
    };
    const onAbort = (): void => finish(new RhostError('ERR_RHOST_CLOSED', 'the dial was aborted'));
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.on('data', onData);
    socket.once('connect', () => {
      socket.write(
        buildAgentRequest({ ...options.hello, versions: SUPPORTED_VERSIONS }, { host: address.hostHeader, userAgent: options.userAgent }),
      );
    });
  });
}

/** Turns a tunnel's refusal into the error the agent reports. */
function refusalError(code: string, reason: string, status: number, versions: number[], retryAfterMs: number): RhostError {
  if (code === 'ERR_RHOST_VERSION') {
    const theirs = versions.join(', ') || 'an unknown version';
    return new RhostError(
      'ERR_RHOST_VERSION',
      `the tunnel speaks rhost protocol ${theirs} and this agent speaks ${SUPPORTED_VERSIONS.join(', ')}: ` +
        `upgrade the tunnel, or run an agent release that speaks protocol ${theirs}`,
    );
  }
  if (code in ERROR_CODES) return new HandshakeError(code as RhostErrorCode, reason, status, retryAfterMs);
  return new RhostError('ERR_RHOST_UNEXPECTED_RESPONSE', `the tunnel answered ${status}: ${reason}`);
}
