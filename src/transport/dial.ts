import net from 'node:net';
import tls from 'node:tls';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import { errorFacts, isErrorCode, RhostError, type RhostErrorCode } from '../errors.js';
import {
  acceptChallenge,
  AGENT_PATH,
  agentHeaders,
  buildAgentRequest,
  FrameType,
  HandshakeError,
  HeadReader,
  newNonce,
  parseRefusal,
  parseTunnelResponse,
  parseVersions,
  OPEN_POLICY,
  POLICY_VERSION,
  policyDigest,
  policyHeaders,
  retryAfterMs,
  SUPPORTED_VERSIONS,
  type AgentRole,
  type Challenge,
  type RefusalAnswer,
  type ServicePolicy,
} from '../protocol/index.js';
import { printable } from '../log.js';
import { formatAddress, type TunnelAddress } from './address.js';
import { answerChallenge, checkTunnelProofs, type AgentSecrets } from './agent-proof.js';
import { readControlFrame, writeControl } from './preamble.js';
import { chooseProxy, connectViaProxy } from './proxy.js';
import { settle, settleOn } from './settle.js';
import { tlsClientOptions, tlsError, type TlsClientSettings } from './tls.js';
import { MAX_WEBSOCKET_MESSAGE_BYTES, WEBSOCKET_PROTOCOL, WebSocketDuplex } from './websocket.js';

/** How the agent's bytes travel: the raw rhost upgrade, or inside a WebSocket. */
export type TransportKind = 'raw' | 'websocket';

/** What an agent needs to open a session on the tunnel. */
export interface DialOptions {
  address: TunnelAddress;
  /**
   * Role and channel, and the secrets to prove: these stay here, only
   * proofs cross the wire. A server agent's policy goes in the request,
   * signed by the proofs (protocol 3).
   */
  hello: { role: AgentRole; channel: string; policy?: ServicePolicy | undefined } & AgentSecrets;
  userAgent: string;
  /** Bound on reaching the tunnel (through a proxy, TLS) plus the handshake and the proofs. */
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

/** An upgraded, authenticated connection: frames follow, starting with `head`. */
export interface Dialed {
  transport: Duplex;
  /** Bytes that arrived after the tunnel's AUTH: the start of the frame stream. */
  head: Buffer;
  version: number;
  sessionId: string;
  kind: TransportKind;
}

/** An upgrade the tunnel accepted, before the proofs. */
interface Upgraded {
  transport: Duplex;
  head: Buffer;
  version: number;
  sessionId: string;
  challenge: Challenge | null;
}

/** True for refusal codes after which trying again cannot help: the agent's configuration is wrong. */
export function isFatalRefusal(code: RhostErrorCode): boolean {
  return errorFacts(code)?.fatal === true;
}

const isSecure = (a: TunnelAddress): boolean => a.scheme === 'tls' || a.scheme === 'wss';
const where = (a: TunnelAddress): string => `the tunnel at ${formatAddress(a.host, a.port)}`;

/** A TCP connection to the tunnel, direct or through an HTTP proxy, wrapped in TLS for https:// and wss://. */
async function connect(options: DialOptions, deadline: number): Promise<net.Socket> {
  const { address } = options;
  const to = where(address);
  const proxy = chooseProxy(address.host, address.port, isSecure(address), options.proxy, options.env ?? process.env);
  let socket: net.Socket;
  if (proxy) {
    socket = await connectViaProxy(proxy.url, address.host, address.port, deadline, options.signal);
  } else {
    socket = net.connect({ host: address.host, port: address.port, noDelay: true });
    const onError = (err: Error): RhostError => new RhostError('ERR_RHOST_CONNECT', `cannot reach ${to}: ${err.message}`, { cause: err });
    await settleOn(socket, 'connect', onError, deadline, `connecting to ${to}`, options.signal, () => socket.destroy());
  }
  if (!isSecure(address)) return socket;
  const secure = tls.connect({ socket, ...tlsClientOptions(address.host, options.tls ?? {}) });
  await settleOn(secure, 'secureConnect', (err) => tlsError(to, err), deadline, `TLS with ${to}`, options.signal, () => secure.destroy());
  secure.setNoDelay(true);
  return secure;
}

/**
 * Dials the tunnel, performs the agent handshake (docs/protocol.md §3) and
 * proves the agent's key or token. Resolves with the transport; rejects
 * with a RhostError whose code says why: ERR_RHOST_CONNECT, ERR_RHOST_TLS,
 * ERR_RHOST_PROXY, ERR_RHOST_HANDSHAKE_TIMEOUT, a refusal code sent by the
 * tunnel, ERR_RHOST_UNEXPECTED_RESPONSE (something on the way answered
 * instead), or ERR_RHOST_TUNNEL_PROOF (whatever answered could not prove
 * it knows the secret).
 */
export async function dialTunnel(options: DialOptions): Promise<Dialed> {
  const deadline = Date.now() + options.timeoutMs;
  const kind = options.transport ?? (options.address.scheme === 'ws' || options.address.scheme === 'wss' ? 'websocket' : 'raw');
  const socket = await connect(options, deadline);
  const nonce = newNonce();
  let upgraded: Upgraded | null = null;
  try {
    upgraded = kind === 'raw' ? await upgradeRaw(socket, options, nonce, deadline) : await upgradeWebSocket(socket, options, nonce, deadline);
    const head = await authenticate(upgraded, options, nonce, deadline);
    return { transport: upgraded.transport, head, version: upgraded.version, sessionId: upgraded.sessionId, kind };
  } catch (err) {
    upgraded?.transport.destroy();
    socket.destroy();
    throw err;
  }
}

/** The request both transports send: role, channel, versions and the nonce; never a secret. */
function hello(options: DialOptions, nonce: string) {
  const { role, channel, policy } = options.hello;
  return { role, channel, versions: SUPPORTED_VERSIONS, nonce, policy: policy && policyHeaders(policy).length ? policy : undefined };
}

/** The exchange after the upgrade: the agent's proofs, then the tunnel's, or its REFUSE. Returns the bytes after it. */
async function authenticate(upgraded: Upgraded, options: DialOptions, nonce: string, deadline: number): Promise<Buffer> {
  const { role, channel, policy = OPEN_POLICY } = options.hello;
  const to = where(options.address);
  const { version } = upgraded;
  if (!SUPPORTED_VERSIONS.includes(version) || !upgraded.challenge) {
    throw new RhostError('ERR_RHOST_UNEXPECTED_RESPONSE', `${to} accepted protocol ${version}, which this agent did not offer`);
  }
  if (version < POLICY_VERSION && (policy.allow.length || policy.deny.length)) {
    throw new RhostError('ERR_RHOST_VERSION', `${to} speaks protocol ${version}, which cannot enforce --allow and --deny: upgrade the tunnel (or drop them)`);
  }
  const context = { agentNonce: nonce, tunnelNonce: upgraded.challenge.nonce, sessionId: upgraded.sessionId, policy: version >= POLICY_VERSION ? policyDigest(policy) : undefined };
  const proofs = await answerChallenge(role, channel, options.hello, context, upgraded.challenge);
  writeControl(upgraded.transport, { type: FrameType.Auth, streamId: 0, fields: proofs.fields });
  const { frame, rest } = await readControlFrame(upgraded.transport, upgraded.head, deadline, `the proofs with ${to}`, options.signal);
  if (frame.type === FrameType.Refuse) {
    const { status, code, reason, retryAfterS } = frame.refusal;
    throw refusalError({ ok: false, status, code, reason, versions: [], retryAfterMs: retryAfterMs(retryAfterS) });
  }
  if (frame.type !== FrameType.Auth) throw new RhostError('ERR_RHOST_PROTOCOL', `${to} sent ${FrameType[frame.type] ?? frame.type} where its AUTH belongs`);
  checkTunnelProofs(proofs, frame.fields, channel);
  return rest;
}

function upgradeRaw(socket: net.Socket, options: DialOptions, nonce: string, deadline: number): Promise<Upgraded> {
  const { address } = options;
  const to = where(address);
  return settle<Upgraded>(
    (resolve, reject) => {
      const reader = new HeadReader();
      let answerHead: string | null = null;
      let body: Buffer = Buffer.alloc(0);
      let pendingRefusal: RefusalAnswer | null = null;
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
            return resolve({ transport: socket, head: body, version: answer.version, sessionId: answer.sessionId, challenge: answer.challenge });
          }
          // The tunnel's refusals have a one-line body and then it closes; anything else answered on its behalf.
          if (answer.code && !body.includes(0x0a) && body.length < 1024) return void (pendingRefusal = answer);
          reject(refusalError(answer));
        } catch (err) {
          const why = err instanceof HandshakeError ? err.message : String(err);
          reject(new RhostError('ERR_RHOST_UNEXPECTED_RESPONSE', `${to} answered something that is not rhost: ${why}`));
        }
      };
      const onError = (err: Error): void => reject(new RhostError('ERR_RHOST_CONNECT', `lost ${to} during the handshake: ${err.message}`, { cause: err }));
      const onClose = (): void => {
        const r = pendingRefusal;
        if (r) return reject(refusalError({ ...r, reason: body.toString('utf8').split('\n', 1)[0]!.trim() || r.reason }));
        // No answer at all: a tunnel shedding load does this, so it is a failed connection, not a foreign answer.
        reject(new RhostError('ERR_RHOST_CONNECT', `${to} closed the connection before answering the handshake`));
      };
      socket.on('data', onData);
      socket.on('error', onError);
      socket.on('close', onClose);
      socket.write(buildAgentRequest(hello(options, nonce), { host: address.hostHeader, userAgent: options.userAgent }));
      return () => {
        socket.off('data', onData);
        socket.off('error', onError);
        socket.off('close', onClose);
      };
    },
    deadline,
    `the handshake with ${to}`,
    options.signal,
  );
}

function upgradeWebSocket(socket: net.Socket, options: DialOptions, nonce: string, deadline: number): Promise<Upgraded> {
  const { address } = options;
  const to = where(address);
  const scheme = isSecure(address) ? 'wss' : 'ws';
  // ws writes Host, Connection, Upgrade and its own Sec-WebSocket-* headers itself.
  const headers = Object.fromEntries(agentHeaders(hello(options, nonce), { host: address.hostHeader, userAgent: options.userAgent, websocket: true }).filter(([n]) => n !== 'Host'));
  return settle<Upgraded>(
    (resolve, reject) => {
      const ws = new WebSocket(`${scheme}://${address.hostHeader}${AGENT_PATH}`, [WEBSOCKET_PROTOCOL], {
        headers,
        perMessageDeflate: false,
        maxPayload: MAX_WEBSOCKET_MESSAGE_BYTES,
        // The socket is already connected (and through TLS and any proxy): ws only speaks HTTP on it.
        createConnection: () => socket,
      } as ConstructorParameters<typeof WebSocket>[2]);
      let accepted: Omit<Upgraded, 'transport' | 'head'> | null = null;
      let failed: Error | null = null;
      ws.once('upgrade', (res: http.IncomingMessage) => {
        const get = (name: string): string | undefined => {
          const v = res.headers[name];
          return Array.isArray(v) ? v.join(', ') : v;
        };
        const version = parseVersions(get('rhost-version'))[0];
        if (version === undefined) return;
        try {
          accepted = { version, sessionId: get('rhost-session') ?? '', challenge: acceptChallenge(version, get) };
        } catch (err) {
          failed = err as Error;
        }
      });
      ws.once('open', () => {
        if (!accepted) {
          ws.terminate();
          const why = failed ? `: ${failed.message}` : '';
          return reject(new RhostError('ERR_RHOST_UNEXPECTED_RESPONSE', `${to} upgraded to WebSocket but is not rhost${why}`));
        }
        resolve({ transport: new WebSocketDuplex(ws), head: Buffer.alloc(0), ...accepted });
      });
      let answered = false;
      ws.once('unexpected-response', (_req: http.ClientRequest, res: http.IncomingMessage) => {
        answered = true;
        const status = res.statusCode ?? 0;
        const get = (name: string): string | undefined => res.headers[name] as string | undefined;
        if (!get('rhost-error')) {
          ws.terminate();
          return reject(new HandshakeError('ERR_RHOST_UNEXPECTED_RESPONSE', `${to}, or something on the way to it, answered the WebSocket upgrade with ${status}, not rhost`, status));
        }
        // The tunnel's refusal: its reason is the body's first line, and the tunnel closes after it.
        let body = '';
        const refused = (): void => {
          reject(refusalError(parseRefusal(status, get, body, res.statusMessage)));
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
        if (!answered) reject(new RhostError('ERR_RHOST_CONNECT', `WebSocket to ${to} failed: ${err.message}`, { cause: err }));
      });
      return () => {};
    },
    deadline,
    `the WebSocket handshake with ${to}`,
    options.signal,
  );
}

/** Turns a tunnel's refusal, from either transport, before or after the upgrade, into the error the agent reports. */
function refusalError(answer: RefusalAnswer): RhostError {
  const { code, status, versions } = answer;
  const reason = printable(answer.reason);
  if (code === 'ERR_RHOST_VERSION') {
    const theirs = versions.join(', ') || 'an unknown version';
    return new RhostError(
      'ERR_RHOST_VERSION',
      `the tunnel speaks rhost protocol ${theirs} and this agent speaks ${SUPPORTED_VERSIONS.join(', ')}: ` +
        `upgrade the tunnel, or run an agent release that speaks protocol ${theirs}`,
    );
  }
  if (isErrorCode(code)) return new HandshakeError(code, reason, status, answer.retryAfterMs);
  return new HandshakeError('ERR_RHOST_UNEXPECTED_RESPONSE', `the tunnel, or something on the way to it, answered ${status}: ${reason}`, status);
}
