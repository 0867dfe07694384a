import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { errorFacts, RhostError, WireError } from '../errors.js';
import type { Logger } from '../log.js';
import { Session } from '../mux/session.js';
import type { SharedBudget } from '../mux/window.js';
import {
  AGENT_PATH,
  normalizeIp,
  type AddressSet,
  buildAcceptResponse,
  buildRefusal,
  challengeHeaders,
  FrameType,
  HandshakeError,
  HeadReader,
  LEGACY_VERSION,
  negotiateVersion,
  parseAgentRequest,
  OPEN_POLICY,
  POLICY_VERSION,
  policyDigest,
  SUPPORTED_VERSIONS,
  Role,
  sameVerifier,
  type AgentRequest,
  type Challenge,
  type ServicePolicy,
} from '../protocol/index.js';
import { readControlFrame, writeControl } from '../transport/preamble.js';
import { acceptWebSocket, createUpgrader, MAX_HELD_BYTES, UNAUTHENTICATED_HELD_BYTES, WEBSOCKET_PROTOCOL, WebSocketDuplex } from '../transport/websocket.js';
import type { Admission } from './admission.js';
import type { AuthGuard } from './auth-guard.js';
import type { Channel, ChannelTable } from './channels.js';
import { forwardedClient, limitKey } from './client-address.js';
import type { ResolvedTunnelConfig } from './config.js';
import type { Connection, Emit } from './connection.js';
import { checkClientAuth, checkLegacyClient, checkLegacyServer, checkServerAuth, type Verdict } from './credentials.js';
import type { RefusalLog } from './refusal-log.js';
import type { Router } from './router.js';

/** How long a registration waits for the current holder of a channel to prove it is alive. */
const HOLDER_PING_TIMEOUT_MS = 2000;

/** After a refusal sent inside the upgraded connection, how long the agent has to read it before the socket goes. */
const REFUSE_GRACE_MS = 2000;

/** Headers that show a handshake passed through a proxy: the implicit open `/` takes no agent that did. */
const PROXY_SIGNS = ['forwarded', 'x-real-ip', 'via'];

/** A registered agent, as reported in events. */
export interface AgentInfo {
  role: 'server' | 'client';
  channel: string;
  sessionId: string;
  remote: string;
  /** The protocol version the agent speaks; 1 only with `allowLegacyAuth`. */
  version: number;
}

/** A refused handshake, as reported in events. */
export interface Refusal {
  remote: string;
  code: RhostError['code'];
  reason: string;
}

/** What the desk needs from its tunnel. */
export interface DeskContext {
  config: ResolvedTunnelConfig;
  log: Logger;
  channels: ChannelTable;
  admission: Admission;
  guard: AuthGuard;
  trusted: AddressSet;
  shared: SharedBudget;
  router: Router;
  refusals: RefusalLog;
  closing(): boolean;
  sessionOpened(session: Session): void;
  emit: Emit;
}

/** How a refusal reaches the agent: an HTTP error before the upgrade, a REFUSE frame after it. */
type Refuse = (err: HandshakeError, retryAfterMs?: number) => void;

/** An upgraded connection, before the session: what to read and write, and the bytes already read. */
interface Upgraded {
  transport: Duplex;
  head: Buffer;
}

/**
 * The tunnel's desk for agents: reads a handshake within its time and byte
 * limits, decides on it (version, lockouts, credentials, channel holder),
 * and turns the connection into a session registered on its channel.
 * Version 2 agents prove their key or token after the upgrade (AUTH);
 * version 1 agents, only with `allowLegacyAuth`, send them in the request.
 */
export class AgentDesk {
  readonly #c: DeskContext;
  /** The untrusted-proxy hint was logged. */
  #hinted = false;
  /** Completes WebSocket upgrades, adding the rhost headers to the 101. */
  readonly #upgrader = createUpgrader((headers, req) => {
    const { version, id, challenge } = (req as unknown as { rhost: { version: number; id: string; challenge: Challenge | null } }).rhost;
    headers.push(`Rhost-Version: ${version}`, `Rhost-Session: ${id}`, ...(challenge ? challengeHeaders(challenge) : []));
  });

  constructor(context: DeskContext) {
    this.#c = context;
  }

  /** Reads the head of a connection classified as an agent; `first` holds its bytes so far. */
  handshake(conn: Connection, first: Buffer, started: number): void {
    const { socket } = conn;
    const reader = new HeadReader(this.#c.config.maxHeadBytes);
    let done = false;
    const stop = (): void => {
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', stop);
      socket.pause();
    };
    const timer = setTimeout(() => {
      stop();
      this.#refuseHttp(conn)(new HandshakeError('ERR_RHOST_HANDSHAKE_TIMEOUT', `the handshake took longer than ${this.#c.config.handshakeTimeoutMs} ms`));
    }, Math.max(0, this.#c.config.handshakeTimeoutMs - (Date.now() - started)));
    const onData = (chunk: Buffer): void => {
      if (done) return;
      let result: { head: string; rest: Buffer } | null;
      try {
        result = reader.push(chunk);
      } catch (err) {
        stop();
        return this.#refuseHttp(conn)(err as HandshakeError);
      }
      if (!result) return;
      stop();
      this.#decide(conn, result.head, result.rest, started).catch((err) => {
        this.#c.log.error(`agent ${conn.remote}: unexpected failure (a bug): ${(err as Error).stack ?? String(err)}`);
        this.#c.admission.leavePending(conn.raw);
        socket.destroy();
      });
    };
    socket.on('data', onData);
    socket.once('close', stop);
    socket.resume();
    onData(first);
  }

  async #decide(conn: Connection, head: string, rest: Buffer, started: number): Promise<void> {
    let request: AgentRequest;
    try {
      request = parseAgentRequest(head);
    } catch (err) {
      if (err instanceof HandshakeError) return this.#refuseHttp(conn)(err);
      throw err;
    }
    const ip = forwardedClient(request.headers.get('x-forwarded-for'), conn.ip, this.#c.trusted);
    if (ip !== conn.ip) conn = { ...conn, ip, limitIp: ip, port: 0, remote: ip };
    const refuse = this.#refuseHttp(conn, request);
    const locked = this.#c.guard.lockedFor(conn.ip, request.channel);
    if (locked > 0) {
      return refuse(new HandshakeError('ERR_RHOST_RATE_LIMITED', `too many failed attempts from ${conn.ip}: retry in ${Math.ceil(locked / 1000)} s`), locked);
    }
    const version = this.#version(request);
    if (typeof version !== 'number') return refuse(version);
    if (request.upgrade === 'websocket' && !offersSubprotocol(request)) {
      return refuse(new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', `WebSocket agents must offer the ${WEBSOCKET_PROTOCOL} subprotocol`));
    }
    if (this.#c.closing()) return refuse(new HandshakeError('ERR_RHOST_SHUTTING_DOWN', 'the tunnel is shutting down'));
    const { channels } = this.#c;
    const channel = channels.get(request.channel);
    if (request.role === 'server' && this.#c.config.implicitOpen && channel?.key === null && cameThroughProxy(request)) {
      return refuse(
        new HandshakeError(
          'ERR_RHOST_OPEN_VIA_PROXY',
          'the open channel / of a tunnel with no keys is for trying rhost on one machine; this handshake came through a proxy ' +
            '(it carries X-Forwarded-For, Forwarded, X-Real-IP or Via), so it may come from anywhere: set a key on the tunnel (KEYS=<secret>)',
        ),
      );
    }
    // Client agents need the verifier of a token; without one there is nothing to prove against, whatever the reason.
    const verifier = request.role === 'client' ? channel?.tokenVerifier : undefined;
    if (request.role === 'client' && !verifier) {
      this.#c.guard.probed(conn.ip, request.channel);
      return refuse(new HandshakeError('ERR_RHOST_NO_SERVER', `no server agent that admits client agents is registered on ${request.channel}: waiting for one`));
    }
    if (version === LEGACY_VERSION) return this.#decideLegacy(conn, request, rest, verifier);
    if (request.nonce === undefined) return refuse(new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', `protocol ${version} needs Rhost-Nonce`));
    if (request.legacy) {
      return refuse(new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', `protocol ${version} agents send no Authorization: a secret in the request reaches whatever answers it`));
    }
    const id = randomBytes(16).toString('hex');
    const challenge = channels.challenge(request.channel);
    const upgraded = await this.#upgrade(conn, request, rest, version, id, challenge);
    if (!upgraded) return;
    const refuseAfter = this.#refuseInside(conn, upgraded.transport, request);
    let auth;
    try {
      auth = await readControlFrame(upgraded.transport, upgraded.head, started + this.#c.config.handshakeTimeoutMs, 'the agent’s AUTH');
    } catch (err) {
      const code = (err as RhostError).code === 'ERR_RHOST_HANDSHAKE_TIMEOUT' ? 'ERR_RHOST_HANDSHAKE_TIMEOUT' : 'ERR_RHOST_BAD_HANDSHAKE';
      return refuseAfter(new HandshakeError(code, (err as Error).message));
    }
    if (auth.frame.type !== FrameType.Auth) return refuseAfter(new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'the first frame after the upgrade must be AUTH'));
    // Version 3 signs the server agent's policy: nothing on the way can change it unseen.
    const policy = version >= POLICY_VERSION ? policyDigest(request.policy) : undefined;
    const context = { role: request.role, channel: request.channel, agentNonce: request.nonce, tunnelNonce: challenge.nonce, sessionId: id, policy };
    const verdict = request.role === 'server' ? checkServerAuth(channels, context, auth.frame.fields) : checkClientAuth(verifier!, context, auth.frame.fields);
    const { transport } = upgraded;
    await this.#admit(conn, request, verdict, version, id, refuseAfter, (v) => {
      if (transport instanceof WebSocketDuplex) transport.heldLimit = MAX_HELD_BYTES; // proven: one whole message may now wait
      writeControl(transport, { type: FrameType.Auth, streamId: 0, fields: v.reply });
      return Promise.resolve({ transport, head: auth.rest });
    });
  }

  /** Protocol 1 (`allowLegacyAuth`): the credentials came in the request, and are checked before the 101. */
  async #decideLegacy(conn: Connection, request: AgentRequest, rest: Buffer, verifier: Channel['tokenVerifier']): Promise<void> {
    const { channels } = this.#c;
    const { key, token } = request.legacy ?? {};
    const verdict = request.role === 'server' ? await checkLegacyServer(channels, request.channel, key, token) : await checkLegacyClient(verifier!, request.channel, token);
    const id = randomBytes(16).toString('hex');
    await this.#admit(conn, request, verdict, LEGACY_VERSION, id, this.#refuseHttp(conn, request), () => this.#upgrade(conn, request, rest, LEGACY_VERSION, id, null));
  }

  /** The versions this tunnel speaks: protocol 1 only with `allowLegacyAuth`. */
  #versions(): number[] {
    return this.#c.config.allowLegacyAuth ? [...SUPPORTED_VERSIONS, LEGACY_VERSION] : [...SUPPORTED_VERSIONS];
  }

  /** The version to speak, or why there is none: protocol 1 is offered only with `allowLegacyAuth`. */
  #version(request: AgentRequest): number | HandshakeError {
    const version = negotiateVersion(request.versions, this.#versions());
    if (version !== undefined) return version;
    const offered = request.versions.join(', ');
    if (request.versions.includes(LEGACY_VERSION)) {
      return new HandshakeError(
        'ERR_RHOST_VERSION',
        `this agent speaks rhost protocol ${offered}, which sends its key in the clear request to whatever answers it; ` +
          `upgrade the agent to one that speaks protocol ${SUPPORTED_VERSIONS.join(' or ')} (or start the tunnel with --allow-legacy-auth, which is unsafe)`,
      );
    }
    return new HandshakeError('ERR_RHOST_VERSION', `this tunnel speaks rhost protocol ${this.#versions().join(', ')}; the agent offered ${offered}`);
  }

  /**
   * A verdict on an agent's credentials becomes a session: the guess is
   * counted or the address remembered as good, the channel's holder and
   * limits are checked, then `open` answers (AUTH, or the 101 for protocol
   * 1) and the session starts.
   */
  async #admit(
    conn: Connection,
    request: AgentRequest,
    verdict: Verdict,
    version: number,
    id: string,
    refuse: Refuse,
    open: (verdict: Extract<Verdict, { ok: true }>) => Promise<Upgraded | null>,
  ): Promise<void> {
    if (!verdict.ok) return refuse(verdict.refusal);
    this.#c.guard.succeeded(conn.ip);
    const channel = this.#c.channels.get(request.channel)!;
    if (request.role === 'client') {
      const { maxClientsPerChannel, maxClientsPerIp } = this.#c.config;
      const key = limitKey(conn.limitIp);
      if (channel.clients.size >= maxClientsPerChannel) {
        return refuse(new HandshakeError('ERR_RHOST_BUSY', `${request.channel} has its maximum of ${maxClientsPerChannel} client agents`));
      }
      if (channel.policy.restricts && !channel.policy.admits(conn.limitIp || null)) {
        return refuse(new HandshakeError('ERR_RHOST_FORBIDDEN', `${request.channel} does not admit client agents from ${conn.ip}`));
      }
      if (conn.limitIp && countClientsFrom(channel, key) >= maxClientsPerIp) {
        return refuse(new HandshakeError('ERR_RHOST_BUSY', `${request.channel} has its maximum of ${maxClientsPerIp} client agents from ${conn.ip}`));
      }
      const up = await open(verdict);
      if (up) this.#startClient(this.#session(conn, up, id), conn, channel, version);
      return;
    }
    // One registration at a time: the holder check and the takeover below span awaits.
    if (channel.registering) return refuse(new HandshakeError('ERR_RHOST_CHANNEL_TAKEN', `another server agent is registering ${request.channel}`));
    channel.registering = true;
    try {
      if (channel.server && (await this.#holderAlive(channel.server))) {
        return refuse(new HandshakeError('ERR_RHOST_CHANNEL_TAKEN', `another server agent holds ${request.channel}`));
      }
      if (conn.socket.destroyed || this.#c.closing()) {
        this.#c.admission.leavePending(conn.raw);
        return void conn.socket.destroy();
      }
      const up = await open(verdict);
      const policy = version >= POLICY_VERSION ? request.policy : OPEN_POLICY;
      if (up) this.#startServer(this.#session(conn, up, id), conn, channel, verdict.tokenVerifier, version, policy);
    } finally {
      channel.registering = false;
    }
  }

  /**
   * A channel's holder keeps it if it answers a PING in time; a dead one is
   * evicted. One that is leaving (GOAWAY either way) gives way at once and
   * keeps draining its own streams.
   */
  async #holderAlive(holder: Session): Promise<boolean> {
    if (holder.goingAway) return false;
    let timer: NodeJS.Timeout | undefined;
    const alive = await Promise.race([
      holder.ping().then(
        () => !holder.closed,
        () => false,
      ),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), HOLDER_PING_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (!alive) await holder.destroy(new RhostError('ERR_RHOST_KEEPALIVE_TIMEOUT', 'replaced by a new server agent: the old one did not answer'));
    return alive;
  }

  /** Answers 101, raw or WebSocket (through `ws`); resolves with the upgraded transport, or null if the agent left. */
  async #upgrade(conn: Connection, request: AgentRequest, rest: Buffer, version: number, id: string, challenge: Challenge | null): Promise<Upgraded | null> {
    if (request.upgrade !== 'websocket') {
      conn.socket.write(buildAcceptResponse(version, id, challenge));
      return { transport: conn.socket, head: rest };
    }
    const req = { method: 'GET', url: AGENT_PATH, headers: Object.fromEntries(request.headers), rhost: { version, id, challenge } };
    // Protocol 1 proved its credentials before the upgrade; protocol 2 has proven nothing yet.
    const held = { limit: challenge ? UNAUTHENTICATED_HELD_BYTES : MAX_HELD_BYTES, onChange: (delta: number) => void (this.#c.shared.buffered += delta) };
    try {
      const transport = await acceptWebSocket(this.#upgrader, req as unknown as http.IncomingMessage, conn.socket, rest, held);
      return { transport, head: Buffer.alloc(0) };
    } catch {
      this.#c.admission.leavePending(conn.raw);
      conn.socket.destroy();
      return null;
    }
  }

  /**
   * The session over an upgraded transport. Its owner subscribes to it at
   * once, before the frames that came with the handshake are read (the
   * session reads them on the next tick).
   */
  #session(conn: Connection, up: Upgraded, id: string): Session {
    this.#c.admission.leavePending(conn.raw);
    const session = new Session(up.transport, {
      ...this.#c.config.session,
      drainTimeoutMs: this.#c.config.drainTimeoutMs,
      role: Role.Acceptor,
      id,
      head: up.head,
      shared: this.#c.shared,
    });
    this.#c.sessionOpened(session);
    return session;
  }

  #startServer(session: Session, conn: Connection, channel: Channel, tokenVerifier: Channel['tokenVerifier'], version: number, policy: ServicePolicy): void {
    const before = channel.tokenVerifier;
    const tokenChanged = before !== undefined && (tokenVerifier === undefined || !sameVerifier(before, tokenVerifier));
    channel.server = session;
    channel.policy.declare(policy);
    channel.tokenVerifier = tokenVerifier;
    if (tokenChanged) {
      for (const client of channel.clients) client.goAway(WireError.CredentialsChanged, 'the server agent changed the token');
    }
    const info: AgentInfo = { role: 'server', channel: channel.name, sessionId: session.id, remote: conn.remote, version };
    const log = this.#c.log.child({ channel: channel.name, session: session.id.slice(0, 8) });
    const note = tokenVerifier === undefined ? ' (no token: client agents cannot subscribe)' : '';
    log.info(`server agent ${conn.remote} registered ${channel.name}${note}`, { event: 'registered', role: 'server', remote: conn.remote });
    this.#warnLegacy(conn, channel, version);
    this.#c.emit('agent', info);
    session.once('close', (err) => {
      if (channel.server === session) {
        channel.server = null;
        channel.policy.declare(OPEN_POLICY);
      }
      log.info(`server agent ${conn.remote} left ${channel.name}${err ? `: ${err.message}` : ''}`);
      this.#c.emit('agent-close', info, err);
    });
  }

  #startClient(session: Session, conn: Connection, channel: Channel, version: number): void {
    const key = limitKey(conn.limitIp);
    channel.clients.add(session);
    if (conn.limitIp) clientAddresses.set(session, key);
    const info: AgentInfo = { role: 'client', channel: channel.name, sessionId: session.id, remote: conn.remote, version };
    const log = this.#c.log.child({ channel: channel.name, session: session.id.slice(0, 8) });
    log.info(`client agent ${conn.remote} subscribed to ${channel.name}`, { event: 'registered', role: 'client', remote: conn.remote });
    this.#warnLegacy(conn, channel, version);
    this.#c.emit('agent', info);
    session.handleStreams((stream) => this.#c.router.carryClientStream(channel, conn, stream, log));
    session.once('close', (err) => {
      channel.clients.delete(session);
      clientAddresses.delete(session);
      log.info(`client agent ${conn.remote} left ${channel.name}${err ? `: ${err.message}` : ''}`);
      this.#c.emit('agent-close', info, err);
    });
  }

  #warnLegacy(conn: Connection, channel: Channel, version: number): void {
    if (version !== LEGACY_VERSION) return;
    this.#c.log.warn(
      `agent ${conn.remote} on ${channel.name} speaks the retired protocol ${LEGACY_VERSION} (allowed by --allow-legacy-auth): ` +
        `its key or token crossed the wire in the clear request; upgrade it`,
    );
  }

  /** Refuses with a plain HTTP error, before the upgrade. */
  #refuseHttp(conn: Connection, request?: AgentRequest): Refuse {
    return (err, retryAfterMs) => {
      this.#refused(conn, err, request);
      const { socket } = conn;
      if (socket.destroyed) return;
      const retry = retryAfterMs ? [`Retry-After: ${Math.ceil(retryAfterMs / 1000)}`] : [];
      socket.end(buildRefusal(err.code, err.message, err.status, retry, this.#versions()), () => socket.destroy());
    };
  }

  /** Refuses with a REFUSE frame, inside the upgraded connection, then closes it. */
  #refuseInside(conn: Connection, transport: Duplex, request: AgentRequest): Refuse {
    return (err, retryAfterMs = 0) => {
      this.#refused(conn, err, request);
      if (transport.destroyed) return;
      const refusal = { status: err.status, retryAfterS: Math.ceil(retryAfterMs / 1000), code: err.code, reason: err.message };
      writeControl(transport, { type: FrameType.Refuse, streamId: 0, refusal });
      transport.end();
      const guard = setTimeout(() => transport.destroy(), REFUSE_GRACE_MS);
      transport.once('close', () => clearTimeout(guard));
      transport.on('error', () => {});
    };
  }

  /**
   * Books a refusal: guessing locks the address out of the name it tried;
   * the log gets one line per address per minute and a summary for the rest.
   */
  #refused(conn: Connection, err: HandshakeError, request?: AgentRequest): void {
    this.#c.admission.leavePending(conn.raw);
    let message = `refused agent ${conn.remote}: ${err.message}`;
    if (request && errorFacts(err.code)?.guess) {
      const lockout = this.#c.guard.failed(conn.ip, request.channel);
      message += ` (address locked out of ${request.channel} for ${Math.ceil(lockout / 1000)} s)`;
      this.#hintUntrustedProxy(conn, request);
    }
    // A client agent that waits for its server agent is not a problem: it says so itself.
    const level = err.code === 'ERR_RHOST_NO_SERVER' ? 'info' : 'warn';
    this.#c.refusals.refused(conn.ip, err.code, message, { remote: conn.remote, code: err.code }, level);
    this.#c.emit('refused', { remote: conn.remote, code: err.code, reason: err.message } satisfies Refusal);
  }

  /**
   * Agents that come through a proxy the tunnel does not trust all count
   * under the proxy's address: one guesser then locks out every agent
   * behind it. Said once, when it first matters.
   */
  #hintUntrustedProxy(conn: Connection, request: AgentRequest): void {
    const peer = normalizeIp(conn.raw.remoteAddress);
    if (this.#hinted || !request.headers.has('x-forwarded-for') || this.#c.trusted.has(peer)) return;
    this.#hinted = true;
    this.#c.log.warn(
      `agents reach this tunnel through a proxy at ${peer} (their handshakes carry X-Forwarded-For), which is not trusted: ` +
        `lockouts count the proxy's address, so one guesser can lock out every agent behind it. ` +
        `Set --trust-proxy ${peer} (or TRUST_PROXY=private behind a PaaS router)`,
    );
  }
}

/** The per-address key each client agent session counts under (L6: a per-address cap). */
const clientAddresses = new WeakMap<Session, string>();

function countClientsFrom(channel: Channel, key: string): number {
  let n = 0;
  for (const session of channel.clients) if (clientAddresses.get(session) === key) n++;
  return n;
}

function offersSubprotocol(request: AgentRequest): boolean {
  return (request.headers.get('sec-websocket-protocol') ?? '').split(',').some((p) => p.trim() === WEBSOCKET_PROTOCOL);
}

/** Any sign that a proxy passed the handshake on. */
function cameThroughProxy(request: AgentRequest): boolean {
  for (const name of request.headers.keys()) if (name.startsWith('x-forwarded-') || PROXY_SIGNS.includes(name)) return true;
  return false;
}
