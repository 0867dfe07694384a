import net from 'node:net';
import tls from 'node:tls';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { RhostError, type RhostErrorCode, ERROR_CODES } from '../errors.js';
import {
  AGENT_PATH,
  buildAgentRequest,
  buildAuthorization,
  HandshakeError,
  HeadReader,
  parseTunnelResponse,
  parseVersions,
  SUPPORTED_VERSIONS,
  type AgentHello,
} from '../protocol/index.js';
import { formatAddress, type TunnelAddress } from './address.js';
import { chooseProxy, connectViaProxy } from './proxy.js';
import { tlsClientOptions, tlsError, type TlsClientSettings } from './tls.js';
import { MAX_WEBSOCKET_MESSAGE_BYTES, WEBSOCKET_PROTOCOL, WebSocketDuplex } from './websocket.js';

/** How the agent's bytes travel: the raw rhost upgrade, or inside a WebSocket. */
export type TransportKind = 'raw' | 'websocket';

/** What an agent needs to open a session on the tunnel. */
export interface DialOptions {
  address: TunnelAddress;
  hello: Omit<AgentHello, 'versions'>;
  userAgent: string;
  /** Bound on reaching the tunnel (through a proxy, TLS) plus the handshake. */
  timeoutMs: number;
  /** Aborts the dial (the agent is closing). */
  signal?: AbortSignal;
  /** Certificate checks for https:// and wss://. */
  tls?: TlsClientSettings;
  /** An HTTP proxy to CONNECT through; without it, HTTPS_PROXY / HTTP_PROXY / NO_PROXY decide. */
  proxy?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Forces a transport; by default ws:// and wss:// use WebSocket, the rest the raw upgrade. */
  transport?: TransportKind;
}

/** An upgraded connection: frames follow, starting with `head`. */
export interface Dialed {
  transport: Duplex;
  /** Bytes that arrived after the 101 head: the start of the frame stream. */
  head: Buffer;
  version: number;
  sessionId: string;
  kind: TransportKind;
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

const isSecure = (a: TunnelAddress): boolean => a.scheme === 'tls' || a.scheme === 'wss';

/** Waits for `event` on `socket`, or its error, by the deadline; on failure the socket is destroyed. */
async function settleOn(
  socket: net.Socket,
  event: string,
  toError: (err: NodeJS.ErrnoException) => Error,
  deadline: number,
  what: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  await settle<void>(
    (resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => reject(toError(err));
      socket.once(event, resolve);
      socket.once('error', onError);
      return () => {
        socket.off(event, resolve);
        socket.off('error', onError);
      };
    },
    deadline,
    what,
    signal,
  ).catch((err) => {
    socket.destroy();
    throw err;
  });
}

/**
 * Runs `work`, which returns its own cleanup, until it settles, the
 * deadline passes or the signal aborts; the cleanup runs in every case.
 */
function settle<T>(
  work: (resolve: (value: T) => void, reject: (err: Error) => void) => () => void,
  deadline: number,
  what: string,
  signal?: AbortSignal,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    let cleanup = (): void => {};
    const finish = (err: Error | null, value?: T): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      cleanup();
      if (err) reject(err);
      else resolve(value as T);
    };
    const timer = setTimeout(() => finish(new RhostError('ERR_RHOST_HANDSHAKE_TIMEOUT', `${what} did not complete in time`)), Math.max(1, deadline - Date.now()));
    const onAbort = (): void => finish(new RhostError('ERR_RHOST_CLOSED', 'the dial was aborted'));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort);
    try {
      cleanup = work((v) => finish(null, v), (e) => finish(e));
    } catch (err) {
      finish(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/** A TCP connection to the tunnel, direct or through an HTTP proxy, wrapped in TLS for https:// and wss://. */
async function connect(options: DialOptions, deadline: number): Promise<net.Socket> {
  const { address } = options;
  const where = `the tunnel at ${formatAddress(address.host, address.port)}`;
  const proxy = chooseProxy(address.host, address.port, isSecure(address), options.proxy, options.env ?? process.env);
  let socket: net.Socket;
  if (proxy) {
    socket = await connectViaProxy(proxy.url, address.host, address.port, Math.max(1, deadline - Date.now()), options.signal);
  } else {
    socket = net.connect({ host: address.host, port: address.port, noDelay: true });
    const onError = (err: Error): RhostError => new RhostError('ERR_RHOST_CONNECT', `cannot reach ${where}: ${err.message}`, { cause: err });
    await settleOn(socket, 'connect', onError, deadline, `connecting to ${where}`, options.signal);
  }
  if (!isSecure(address)) return socket;
  const secure = tls.connect({ socket, ...tlsClientOptions(address.host, options.tls ?? {}) });
  await settleOn(secure, 'secureConnect', (err) => tlsError(where, err), deadline, `TLS with ${where}`, options.signal);
  secure.setNoDelay(true);
  return secure;
}

/**
 * Dials the tunnel and performs the agent handshake (docs/protocol.md §3).
 * Resolves with the upgraded transport; rejects with a RhostError whose code
 * says why: ERR_RHOST_CONNECT, ERR_RHOST_TLS, ERR_RHOST_PROXY,
 * ERR_RHOST_HANDSHAKE_TIMEOUT, a refusal code sent by the tunnel, or
 * ERR_RHOST_UNEXPECTED_RESPONSE (something on the way answered instead).
 */
export async function dialTunnel(options: DialOptions): Promise<Dialed> {
  const deadline = Date.now() + options.timeoutMs;
  const kind = options.transport ?? (options.address.scheme === 'ws' || options.address.scheme === 'wss' ? 'websocket' : 'raw');
  const socket = await connect(options, deadline);
  try {
    return kind === 'raw' ? await upgradeRaw(socket, options, deadline) : await upgradeWebSocket(socket, options, deadline);
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

function upgradeRaw(socket: net.Socket, options: DialOptions, deadline: number): Promise<Dialed> {
  const { address } = options;
  const where = `the tunnel at ${formatAddress(address.host, address.port)}`;
  return settle<Dialed>(
    (resolve, reject) => {
      const reader = new HeadReader();
      let answerHead: string | null = null;
      let body: Buffer = Buffer.alloc(0);
      let pendingRefusal: Extract<ReturnType<typeof parseTunnelResponse>, { ok: false }> | null = null;
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
            return resolve({ transport: socket, head: body, version: answer.version, sessionId: answer.sessionId, kind: 'raw' });
          }
          // The tunnel's refusals have a one-line body and then it closes; anything else answered on its behalf.
          if (answer.code && !body.includes(0x0a) && body.length < 1024) return void (pendingRefusal = answer);
          reject(refusalError(answer.code, answer.reason, answer.status, answer.versions, answer.retryAfterMs));
        } catch (err) {
          const why = err instanceof HandshakeError ? err.message : String(err);
          reject(new RhostError('ERR_RHOST_UNEXPECTED_RESPONSE', `${where} answered something that is not rhost: ${why}`));
        }
      };
      const onError = (err: Error): void => reject(new RhostError('ERR_RHOST_CONNECT', `lost ${where} during the handshake: ${err.message}`, { cause: err }));
      const onClose = (): void => {
        const r = pendingRefusal;
        if (r) return reject(refusalError(r.code, body.toString('utf8').split('\n', 1)[0]!.trim() || r.reason, r.status, r.versions, r.retryAfterMs));
        // No answer at all: a tunnel shedding load does this, so it is a failed connection, not a foreign answer.
        reject(new RhostError('ERR_RHOST_CONNECT', `${where} closed the connection before answering the handshake`));
      };
      socket.on('data', onData);
      socket.on('error', onError);
      socket.on('close', onClose);
      socket.write(buildAgentRequest({ ...options.hello, versions: SUPPORTED_VERSIONS }, { host: address.hostHeader, userAgent: options.userAgent }));
      return () => {
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
      };
    },
    deadline,
    `the handshake with ${where}`,
    options.signal,
  );
}

function upgradeWebSocket(socket: net.Socket, options: DialOptions, deadline: number): Promise<Dialed> {
  const { address, hello } = options;
  const where = `the tunnel at ${formatAddress(address.host, address.port)}`;
  const scheme = isSecure(address) ? 'wss' : 'ws';
  const headers: Record<string, string> = {
    'User-Agent': options.userAgent,
    'Rhost-Version': SUPPORTED_VERSIONS.join(', '),
    'Rhost-Role': hello.role,
    'Rhost-Channel': hello.channel,
  };
  const auth = buildAuthorization(hello.key, hello.token);
  if (auth) headers.Authorization = auth;
  return settle<Dialed>(
    (resolve, reject) => {
      const ws = new WebSocket(`${scheme}://${address.hostHeader}${AGENT_PATH}`, [WEBSOCKET_PROTOCOL], {
        headers,
        perMessageDeflate: false,
        maxPayload: MAX_WEBSOCKET_MESSAGE_BYTES,
        // The socket is already connected (and through TLS and any proxy): ws only speaks HTTP on it.
        createConnection: () => socket,
      } as ConstructorParameters<typeof WebSocket>[2]);
      let version = 0;
      let sessionId = '';
      ws.once('upgrade', (res: http.IncomingMessage) => {
        version = parseVersions(String(res.headers['rhost-version'] ?? ''))[0] ?? 0;
        sessionId = String(res.headers['rhost-session'] ?? '');
      });
      ws.once('open', () => {
        if (!version) {
          ws.terminate();
          return reject(new RhostError('ERR_RHOST_UNEXPECTED_RESPONSE', `${where} upgraded to WebSocket but is not rhost`));
        }
        resolve({ transport: new WebSocketDuplex(ws), head: Buffer.alloc(0), version, sessionId, kind: 'websocket' });
      });
      let answered = false;
      ws.once('unexpected-response', (_req: http.ClientRequest, res: http.IncomingMessage) => {
        answered = true;
        const code = String(res.headers['rhost-error'] ?? '');
        if (!code) {
          ws.terminate();
          const status = res.statusCode ?? 0;
          return reject(new HandshakeError('ERR_RHOST_UNEXPECTED_RESPONSE', `${where}, or something on the way to it, answered the WebSocket upgrade with ${status}, not rhost`, status));
        }
        // The tunnel's refusal: its reason is the body's first line, and the tunnel closes after it.
        const retry = Number(res.headers['retry-after']);
        const versions = parseVersions(String(res.headers['rhost-version'] ?? ''));
        let body = '';
        const refused = (): void => {
          reject(refusalError(code, body.split('\n', 1)[0]!.trim(), res.statusCode ?? 0, versions, Number.isFinite(retry) ? retry * 1000 : 0));
          ws.terminate();
        };
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (body.length < 1024) body += d;
          if (body.includes('\n')) refused();
        });
        res.once('end', refused);
        res.once('close', refused);
        res.on('error', () => {});
      });
      // After a refusal, the errors of tearing the request down are not news.
      ws.on('error', (err: Error) => {
        if (!answered) reject(new RhostError('ERR_RHOST_CONNECT', `WebSocket to ${where} failed: ${err.message}`, { cause: err }));
      });
      return () => {};
    },
    deadline,
    `the WebSocket handshake with ${where}`,
    options.signal,
  );
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
  return new HandshakeError('ERR_RHOST_UNEXPECTED_RESPONSE', `the tunnel, or something on the way to it, answered ${status}: ${reason}`, status);
}
