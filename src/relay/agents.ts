import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { RhostError, type RhostErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { Session } from '../mux/session.js';
import type { Stream } from '../mux/stream.js';
import type { SharedBudget } from '../mux/window.js';
import {
  AGENT_PATH,
  buildAcceptResponse,
  buildRefusal,
  HandshakeError,
  HeadReader,
  negotiateVersion,
  parseAgentRequest,
  Role,
  SUPPORTED_VERSIONS,
  WireError,
  type AgentRequest,
} from '../protocol/index.js';
import { acceptWebSocket, createUpgrader, WEBSOCKET_PROTOCOL } from '../transport/websocket.js';
import type { Admission } from './admission.js';
import type { AuthGuard } from './auth-guard.js';
import type { Channel, ChannelTable } from './channels.js';
import { forwardedClient, normalizeIp, type TrustedProxies } from './client-address.js';
import type { ResolvedTunnelConfig } from './config.js';
import type { Connection } from './tunnel.js';

function offersSubprotocol(request: AgentRequest): boolean {
  return (request.headers.get('sec-websocket-protocol') ?? '').split(',').some((p) => p.trim() === WEBSOCKET_PROTOCOL);
}

/** How long a registration waits for the current holder of a channel to prove it is alive. */
const HOLDER_PING_TIMEOUT_MS = 2000;

/** Refusals that count as guessing: they lock the address out for a while. */
const GUESSES: ReadonlySet<RhostErrorCode> = new Set<RhostErrorCode>([
  'ERR_RHOST_BAD_KEY',
  'ERR_RHOST_BAD_TOKEN',
  'ERR_RHOST_UNAUTHORIZED',
  'ERR_RHOST_UNKNOWN_CHANNEL',
]);

/** A registered agent, as reported in events. */
export interface AgentInfo {
  role: 'server' | 'client';
  channel: string;
  sessionId: string;
  remote: string;
}

/** A refused handshake, as reported in events. */
export interface Refusal {
  remote: string;
  code: RhostErrorCode;
  reason: string;
}

/** What the desk needs from its tunnel. */
export interface DeskContext {
  config: ResolvedTunnelConfig;
  log: Logger;
  channels: ChannelTable;
  admission: Admission;
  guard: AuthGuard;
  trusted: TrustedProxies;
  shared: SharedBudget;
  closing(): boolean;
  sessionOpened(session: Session): void;
  carryClientStream(channel: Channel, conn: Connection, stream: Stream, log: Logger): void;
  emit(event: 'agent' | 'agent-close' | 'refused', ...args: unknown[]): void;
}

/**
 * The tunnel's desk for agents: reads a handshake within its time and byte
 * limits, decides on it (version, credentials, lockouts, channel holder),
 * and turns the connection into a session registered on its channel.
 */
export class AgentDesk {
  readonly #c: DeskContext;
  /** The untrusted-proxy hint was logged. */
  #hinted = false;
  /** Completes WebSocket upgrades, adding the rhost headers to the 101. */
  readonly #upgrader = createUpgrader((headers, req) => {
    const { version, id } = (req as unknown as { rhost: { version: number; id: string } }).rhost;
    headers.push(`Rhost-Version: ${version}`, `Rhost-Session: ${id}`);
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
      this.#refuse(conn, new HandshakeError('ERR_RHOST_HANDSHAKE_TIMEOUT', `the handshake took longer than ${this.#c.config.handshakeTimeoutMs} ms`));
    }, Math.max(0, this.#c.config.handshakeTimeoutMs - (Date.now() - started)));
    const onData = (chunk: Buffer): void => {
      if (done) return;
      let result: { head: string; rest: Buffer } | null;
      try {
        result = reader.push(chunk);
      } catch (err) {
        stop();
        return this.#refuse(conn, err as HandshakeError);
      }
      if (!result) return;
      stop();
      this.#decide(conn, result.head, result.rest).catch((err) => {
        this.#c.log.error(`agent ${conn.remote}: ${(err as Error).message}`);
        socket.destroy();
      });
    };
    socket.on('data', onData);
    socket.once('close', stop);
    socket.resume();
    onData(first);
  }

  async #decide(conn: Connection, head: string, rest: Buffer): Promise<void> {
    let request: AgentRequest;
    try {
      request = parseAgentRequest(head);
    } catch (err) {
      if (err instanceof HandshakeError) return this.#refuse(conn, err);
      throw err;
    }
    const ip = forwardedClient(request.headers.get('x-forwarded-for'), conn.ip, this.#c.trusted);
    if (ip !== conn.ip) conn = { ...conn, ip, limitIp: ip, port: 0, remote: ip };
    const locked = this.#c.guard.lockedFor(conn.ip, this.#lockoutChannel(request));
    if (locked > 0) {
      const err = new HandshakeError('ERR_RHOST_RATE_LIMITED', `too many failed attempts from ${conn.ip} on ${request.channel}: retry in ${Math.ceil(locked / 1000)} s`);
      return this.#refuse(conn, err, request, locked);
    }
    const version = negotiateVersion(request.versions);
    if (version === undefined) {
      const ours = SUPPORTED_VERSIONS.join(', ');
      return this.#refuse(conn, new HandshakeError('ERR_RHOST_VERSION', `this tunnel speaks rhost protocol ${ours}; the agent offered ${request.versions.join(', ')}`));
    }
    if (request.upgrade === 'websocket' && !offersSubprotocol(request)) {
      return this.#refuse(conn, new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', `WebSocket agents must offer the ${WEBSOCKET_PROTOCOL} subprotocol`));
    }
    if (this.#c.closing()) return this.#refuse(conn, new HandshakeError('ERR_RHOST_SHUTTING_DOWN', 'the tunnel is shutting down'));
    const { channels } = this.#c;
    const denied = request.role === 'server' ? channels.checkServer(request.channel, request.key) : channels.checkClient(request.channel, request.token);
    if (denied) return this.#refuse(conn, new HandshakeError(denied.code, denied.reason), request);
    const channel = channels.get(request.channel)!;
    if (request.role === 'server') {
      // One registration at a time: the holder check and the takeover below span awaits.
      if (channel.registering) {
        return this.#refuse(conn, new HandshakeError('ERR_RHOST_CHANNEL_TAKEN', `another server agent is registering ${request.channel}`));
      }
      channel.registering = true;
      try {
        if (channel.server && (await this.#holderAlive(channel.server))) {
          return this.#refuse(conn, new HandshakeError('ERR_RHOST_CHANNEL_TAKEN', `another server agent holds ${request.channel}`));
        }
        if (conn.socket.destroyed || this.#c.closing()) return void conn.socket.destroy();
        return await this.#accept(conn, request, rest, version, (session) => this.#startServer(session, conn, channel, request));
      } finally {
        channel.registering = false;
      }
    }
    if (channel.clients.size >= this.#c.config.maxClientsPerChannel) {
      return this.#refuse(conn, new HandshakeError('ERR_RHOST_BUSY', `${request.channel} has its maximum of ${this.#c.config.maxClientsPerChannel} client agents`));
    }
    await this.#accept(conn, request, rest, version, (session) => this.#startClient(session, conn, channel));
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

  /**
   * Answers 101 (raw, or WebSocket through `ws`) and starts the session;
   * `start` subscribes to it at once, before the frames that came with the
   * handshake are read (the session reads them on the next tick).
   */
  async #accept(conn: Connection, request: AgentRequest, rest: Buffer, version: number, start: (session: Session) => void): Promise<void> {
    this.#c.admission.leavePending(conn.raw);
    const id = randomBytes(16).toString('hex');
    let transport: Duplex = conn.socket;
    let head = rest;
    if (request.upgrade === 'websocket') {
      const req = { method: 'GET', url: AGENT_PATH, headers: Object.fromEntries(request.headers), rhost: { version, id } };
      transport = await acceptWebSocket(this.#upgrader, req as unknown as http.IncomingMessage, conn.socket, rest);
      head = Buffer.alloc(0);
    } else {
      conn.socket.write(buildAcceptResponse(version, id));
    }
    const session = new Session(transport, {
      ...this.#c.config.session,
      drainTimeoutMs: this.#c.config.drainTimeoutMs,
      role: Role.Acceptor,
      id,
      head,
      shared: this.#c.shared,
    });
    this.#c.sessionOpened(session);
    start(session);
  }

  #startServer(session: Session, conn: Connection, channel: Channel, request: AgentRequest): void {
    const tokenChanged = channel.token !== request.token;
    channel.server = session;
    channel.token = request.token;
    if (tokenChanged) {
      for (const client of channel.clients) client.goAway(WireError.NoError, 'the server agent changed the token');
    }
    const info: AgentInfo = { role: 'server', channel: channel.name, sessionId: session.id, remote: conn.remote };
    const log = this.#c.log.child({ channel: channel.name, session: session.id.slice(0, 8) });
    const note = request.token === undefined ? ' (no token: client agents cannot subscribe)' : '';
    log.info(`server agent ${conn.remote} registered ${channel.name}${note}`);
    this.#c.emit('agent', info);
    session.once('close', (err) => {
      if (channel.server === session) channel.server = null;
      log.info(`server agent ${conn.remote} left ${channel.name}${err ? `: ${err.message}` : ''}`);
      this.#c.emit('agent-close', info, err);
    });
  }

  #startClient(session: Session, conn: Connection, channel: Channel): void {
    channel.clients.add(session);
    const info: AgentInfo = { role: 'client', channel: channel.name, sessionId: session.id, remote: conn.remote };
    const log = this.#c.log.child({ channel: channel.name, session: session.id.slice(0, 8) });
    log.info(`client agent ${conn.remote} subscribed to ${channel.name}`);
    this.#c.emit('agent', info);
    session.on('stream', (stream) => this.#c.carryClientStream(channel, conn, stream, log));
    session.once('close', (err) => {
      channel.clients.delete(session);
      log.info(`client agent ${conn.remote} left ${channel.name}${err ? `: ${err.message}` : ''}`);
      this.#c.emit('agent-close', info, err);
    });
  }

  /** The channel a lockout is counted on: the one asked for, or null (one bucket) for names that do not exist. */
  #lockoutChannel(request: AgentRequest): string | null {
    return this.#c.channels.get(request.channel) ? request.channel : null;
  }

  /**
   * Answers with a plain HTTP error and closes. Guessing (`request` given)
   * locks the address out of the channel; each failure is logged once.
   */
  #refuse(conn: Connection, err: HandshakeError, request?: AgentRequest, retryAfterMs?: number): void {
    const { socket } = conn;
    this.#c.admission.leavePending(conn.raw);
    if (request && GUESSES.has(err.code)) {
      const lockout = this.#c.guard.failed(conn.ip, this.#lockoutChannel(request));
      this.#c.log.warn(`refused agent ${conn.remote}: ${err.message} (address locked out of ${request.channel} for ${Math.ceil(lockout / 1000)} s)`, {
        remote: conn.remote,
        code: err.code,
      });
      this.#hintUntrustedProxy(conn, request);
    } else if (err.code !== 'ERR_RHOST_RATE_LIMITED') {
      this.#c.log.warn(`refused agent ${conn.remote}: ${err.message}`, { remote: conn.remote, code: err.code });
    }
    this.#c.emit('refused', { remote: conn.remote, code: err.code, reason: err.message } satisfies Refusal);
    if (socket.destroyed) return;
    const retry = retryAfterMs ? [`Retry-After: ${Math.ceil(retryAfterMs / 1000)}`] : [];
    socket.end(buildRefusal(err.code, err.message, err.status, retry), () => socket.destroy());
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
