import { EventEmitter, once } from 'node:events';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { RhostError, type RhostErrorCode } from '../errors.js';
import { Session } from '../mux/session.js';
import type { Stream } from '../mux/stream.js';
import {
  buildAcceptResponse,
  buildHttpError,
  buildRefusal,
  HandshakeError,
  HeadReader,
  PeerError,
  looksLikeHttp,
  negotiateVersion,
  parseAgentRequest,
  REFUSAL_STATUS,
  Role,
  SUPPORTED_VERSIONS,
  WireError,
  type AgentRequest,
} from '../protocol/index.js';
import { formatAddress } from '../transport/address.js';
import { describeEnd, type Logger } from '../log.js';
import { resetSocket, spliceSocket, spliceStreams, type SpliceEnd } from '../mux/splice.js';
import { ChannelTable, type Channel } from './channels.js';
import { resolveTunnelConfig, type ResolvedTunnelConfig, type TunnelConfig } from './config.js';
import { sniffConnection } from './sniff.js';

/** Stream resets that mean "the service is down": an HTTP user gets a page saying so instead of a reset. */
const SERVICE_DOWN: Partial<Record<number, [number, string]>> = {
  [WireError.ConnectRefused]: [502, 'the local service behind this tunnel refused the connection: is it running?'],
  [WireError.ConnectFailed]: [502, 'the local service behind this tunnel could not be reached'],
  [WireError.NoServer]: [503, 'no server agent is connected to this tunnel'],
};

function answerHttpUser(err: PeerError, socket: net.Socket): boolean {
  const page = SERVICE_DOWN[err.wireCode];
  if (!page) return false;
  socket.end(buildHttpError(page[0], page[1]), () => socket.destroy());
  return true;
}

/** How long a registration waits for the current holder of a channel to prove it is alive. */
const HOLDER_PING_TIMEOUT_MS = 2000;

/** The address a tunnel listens on. */
export interface TunnelAddressInfo {
  host: string;
  port: number;
}

/** What a tunnel reports about itself. */
export interface TunnelStats {
  /** Agent sessions, by role. */
  servers: number;
  clients: number;
  /** User connections being carried right now. */
  users: number;
  /** Sockets of any kind: users, agents, and connections still being classified. */
  sockets: number;
  /** Bytes received from agents and held for readers that have not taken them: bounded by the windows. */
  bufferedBytes: number;
  channels: Array<{ name: string; open: boolean; server: boolean; clients: number }>;
}

/** A registered agent, as reported in events. */
export interface AgentInfo {
  role: 'server' | 'client';
  channel: string;
  sessionId: string;
  remote: string;
}

export interface TunnelEvents {
  listening: [address: TunnelAddressInfo];
  /** An agent completed its handshake. */
  agent: [info: AgentInfo];
  /** An agent's session ended. */
  'agent-close': [info: AgentInfo, err: Error | undefined];
  /** An agent's handshake was refused. */
  refused: [info: { remote: string; code: RhostErrorCode; reason: string }];
  /** A user connection ended; bytes and duration in `end`. */
  'user-close': [info: { remote: string; channel: string } & SpliceEnd];
}

/**
 * The tunnel: one listening port that serves users and agents alike,
 * telling them apart from their first bytes (docs/protocol.md §2).
 */
export class Tunnel extends EventEmitter<TunnelEvents> {
  readonly config: ResolvedTunnelConfig;
  readonly #log: Logger;
  readonly #server: net.Server;
  readonly #channels: ChannelTable;
  readonly #sockets = new Set<net.Socket>();
  readonly #sessions = new Set<Session>();
  #users = 0;
  #closing: Promise<void> | null = null;

  constructor(options?: Partial<TunnelConfig>) {
    super();
    this.config = resolveTunnelConfig(options);
    this.#log = this.config.logger;
    this.#channels = new ChannelTable(this.config.keys, this.config.openChannels);
    this.#server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (socket) => this.#onConnection(socket));
  }

  /** Starts listening; resolves with the real address (port 0 picks one). */
  async listen(): Promise<TunnelAddressInfo> {
    this.#server.listen(this.config.port, this.config.host);
    await Promise.race([once(this.#server, 'listening'), once(this.#server, 'error').then(([err]) => Promise.reject(err))]);
    const address = this.address()!;
    for (const channel of this.config.openChannels) {
      if (this.config.implicitOpen) {
        this.#log.info(`channel ${channel} is open without a key: only this machine can reach ${this.config.host}`);
      } else {
        this.#log.warn(`channel ${channel} is OPEN: anyone who can reach this tunnel may register a server agent on it`, { channel });
      }
    }
    this.#log.info(`tunnel listening on ${formatAddress(address.host, address.port)}`, { ...address });
    this.emit('listening', address);
    return address;
  }

  /** The listening address, or null before listen(). */
  address(): TunnelAddressInfo | null {
    const a = this.#server.address();
    if (a === null || typeof a === 'string') return null;
    return { host: a.address, port: a.port };
  }

  stats(): TunnelStats {
    let servers = 0;
    let clients = 0;
    const channels = [...this.#channels.all()].map((c) => {
      if (c.server) servers++;
      clients += c.clients.size;
      return { name: c.name, open: c.key === null, server: c.server !== null, clients: c.clients.size };
    });
    let bufferedBytes = 0;
    for (const session of this.#sessions) bufferedBytes += session.stats().bufferedBytes;
    return { servers, clients, users: this.#users, sockets: this.#sockets.size, bufferedBytes, channels };
  }

  /**
   * Graceful shutdown: stop accepting, GOAWAY every session, let streams
   * drain for up to `drainTimeoutMs` (the config's by default), then reset
   * what is left. Resolves when every socket is closed.
   */
  close(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    this.#closing ??= this.#shutdown(options.drainTimeoutMs ?? this.config.drainTimeoutMs);
    return this.#closing;
  }

  async #shutdown(drainTimeoutMs: number): Promise<void> {
    const serverClosed = this.#server.listening ? once(this.#server, 'close') : Promise.resolve();
    this.#server.close();
    this.#log.info(`tunnel closing: draining ${this.#sessions.size} sessions`);
    await Promise.all([...this.#sessions].map((s) => s.close(drainTimeoutMs)));
    const left = [...this.#sockets];
    for (const socket of left) socket.destroy();
    await Promise.all([serverClosed, ...left.map((s) => (s.closed ? null : once(s, 'close')))]);
    this.#log.info('tunnel closed');
  }

  // ---- connections -------------------------------------------------------

  #onConnection(socket: net.Socket): void {
    socket.on('error', () => {}); // first: every later owner adds its own, this keeps a stray error from crashing
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    if (this.#closing) {
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    const started = Date.now();
    sniffConnection(socket, this.config.sniffTimeoutMs, (kind, first) => {
      if (kind === 'agent') this.#handshake(socket, first, started);
      else if (kind === 'user') this.#carryUser(socket, first);
      else socket.destroy();
    });
  }

  #remote(socket: net.Socket): string {
    return formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
  }

  #carryUser(socket: net.Socket, first: Buffer): void {
    const http = looksLikeHttp(first);
    const server = this.#channels.get('/')?.server;
    let stream: Stream;
    try {
      if (!server || server.goingAway) throw new RhostError('ERR_RHOST_NO_SERVER', 'no server agent is connected to this tunnel');
      stream = server.open({ channel: '/', remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 });
    } catch (err) {
      const why = (err as Error).message;
      this.#log.debug(`user ${this.#remote(socket)} turned away: ${why}`);
      if (http) socket.end(buildHttpError(503, why), () => socket.destroy());
      else resetSocket(socket);
      return;
    }
    const remote = this.#remote(socket);
    this.#users++;
    this.#log.info(`user ${remote} connected to /`, { remote, channel: '/', stream: stream.id });
    if (first.length > 0) stream.write(first);
    const ended = (end: SpliceEnd): void => {
      this.#users--;
      this.#log.info(`user ${remote} disconnected ${describeEnd(end)}`, { remote, channel: '/', stream: stream.id, ...end });
      this.emit('user-close', { remote, channel: '/', ...end });
    };
    spliceSocket(socket, stream, ended, http ? { answerReset: answerHttpUser } : {});
  }

  // ---- agents --------------------------------------------------------------

  #handshake(socket: net.Socket, first: Buffer, started: number): void {
    const reader = new HeadReader(this.config.maxHeadBytes);
    const remote = this.#remote(socket);
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
      this.#refuse(socket, remote, new HandshakeError('ERR_RHOST_HANDSHAKE_TIMEOUT', `the handshake took longer than ${this.config.handshakeTimeoutMs} ms`));
    }, Math.max(0, this.config.handshakeTimeoutMs - (Date.now() - started)));
    const onData = (chunk: Buffer): void => {
      if (done) return;
      let result: { head: string; rest: Buffer } | null;
      try {
        result = reader.push(chunk);
      } catch (err) {
        stop();
        this.#refuse(socket, remote, err as HandshakeError);
        return;
      }
      if (!result) return;
      stop();
      this.#admit(socket, remote, result.head, result.rest).catch((err) => {
        this.#log.error(`agent ${remote}: ${(err as Error).message}`);
        socket.destroy();
      });
    };
    socket.on('data', onData);
    socket.once('close', stop);
    socket.resume();
    onData(first);
  }

  async #admit(socket: net.Socket, remote: string, head: string, rest: Buffer): Promise<void> {
    let request: AgentRequest;
    try {
      request = parseAgentRequest(head);
    } catch (err) {
      if (err instanceof HandshakeError) return this.#refuse(socket, remote, err);
      throw err;
    }
    const version = negotiateVersion(request.versions);
    if (version === undefined) {
      return this.#refuse(
        socket,
        remote,
        new HandshakeError('ERR_RHOST_VERSION', `this tunnel speaks rhost protocol ${SUPPORTED_VERSIONS.join(', ')}; the agent offered ${request.versions.join(', ')}`),
      );
    }
    if (request.upgrade !== 'rhost') {
      return this.#refuse(socket, remote, new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'this tunnel accepts only Upgrade: rhost'));
    }
    if (this.#closing) return this.#refuse(socket, remote, new HandshakeError('ERR_RHOST_SHUTTING_DOWN', 'the tunnel is shutting down'));
    const channel = this.#channels.get(request.channel);
    if (request.role === 'server') {
      const denied = this.#channels.checkServer(request.channel, request.key);
      if (denied) return this.#refuse(socket, remote, new HandshakeError(denied.code, denied.reason));
      if (channel!.server && (await this.#holderAlive(channel!.server))) {
        return this.#refuse(socket, remote, new HandshakeError('ERR_RHOST_CHANNEL_TAKEN', `another server agent holds ${request.channel}`));
      }
      if (socket.destroyed || this.#closing) return void socket.destroy();
      this.#startServer(socket, remote, channel!, request, rest, version);
    } else {
      const denied = this.#channels.checkClient(request.channel, request.token);
      if (denied) return this.#refuse(socket, remote, new HandshakeError(denied.code, denied.reason));
      this.#startClient(socket, remote, channel!, rest, version);
    }
  }

  /** A channel's holder is alive if it answers a PING in time; a dead one is evicted. */
  async #holderAlive(holder: Session): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const alive = await Promise.race([
      holder.ping().then(() => !holder.closed),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), HOLDER_PING_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (!alive) await holder.destroy(new RhostError('ERR_RHOST_KEEPALIVE_TIMEOUT', 'replaced by a new server agent: the old one did not answer'));
    return alive;
  }

  #accept(socket: net.Socket, rest: Buffer, version: number): Session {
    const id = randomBytes(16).toString('hex');
    socket.write(buildAcceptResponse(version, id));
    const session = new Session(socket, {
      ...this.config.session,
      drainTimeoutMs: this.config.drainTimeoutMs,
      role: Role.Acceptor,
      id,
      head: rest,
    });
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
    return session;
  }

  #startServer(socket: net.Socket, remote: string, channel: Channel, request: AgentRequest, rest: Buffer, version: number): void {
    const session = this.#accept(socket, rest, version);
    const tokenChanged = channel.token !== request.token;
    channel.server = session;
    channel.token = request.token;
    if (tokenChanged) {
      for (const client of channel.clients) client.goAway(WireError.NoError, 'the server agent changed the token');
    }
    const info: AgentInfo = { role: 'server', channel: channel.name, sessionId: session.id, remote };
    const log = this.#log.child({ channel: channel.name, session: session.id.slice(0, 8) });
    log.info(`server agent ${remote} registered ${channel.name}${request.token === undefined ? ' (no token: client agents cannot subscribe)' : ''}`);
    this.emit('agent', info);
    session.once('close', (err) => {
      if (channel.server === session) channel.server = null;
      log.info(`server agent ${remote} left ${channel.name}${err ? `: ${err.message}` : ''}`);
      this.emit('agent-close', info, err);
    });
  }

  #startClient(socket: net.Socket, remote: string, channel: Channel, rest: Buffer, version: number): void {
    const session = this.#accept(socket, rest, version);
    channel.clients.add(session);
    const info: AgentInfo = { role: 'client', channel: channel.name, sessionId: session.id, remote };
    const log = this.#log.child({ channel: channel.name, session: session.id.slice(0, 8) });
    log.info(`client agent ${remote} subscribed to ${channel.name}`);
    this.emit('agent', info);
    const peer = { remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 };
    session.on('stream', (stream) => this.#carryClientStream(channel, peer, remote, stream, log));
    session.once('close', (err) => {
      channel.clients.delete(session);
      log.info(`client agent ${remote} left ${channel.name}${err ? `: ${err.message}` : ''}`);
      this.emit('agent-close', info, err);
    });
  }

  #carryClientStream(channel: Channel, peer: { remoteAddress: string; remotePort: number }, remote: string, stream: Stream, log: Logger): void {
    const server = channel.server;
    let upstream: Stream;
    try {
      if (!server || server.goingAway) throw new RhostError('ERR_RHOST_NO_SERVER', `no server agent on ${channel.name}`);
      // The server agent sees the client agent's address: the one the tunnel knows.
      upstream = server.open({ channel: channel.name, ...peer });
    } catch (err) {
      stream.on('error', () => {});
      stream.reset(err instanceof RhostError && err.code === 'ERR_RHOST_NO_SERVER' ? WireError.NoServer : WireError.RefusedStream);
      log.debug(`client stream ${stream.id} refused: ${(err as Error).message}`);
      return;
    }
    this.#users++;
    log.info(`user ${remote} connected to ${channel.name} through a client agent`, { stream: stream.id });
    spliceStreams(stream, upstream, (end) => {
      this.#users--;
      log.info(`user ${remote} disconnected from ${channel.name} ${describeEnd(end)}`, { stream: stream.id, ...end });
      this.emit('user-close', { remote, channel: channel.name, ...end });
    });
  }

  #refuse(socket: net.Socket, remote: string, err: HandshakeError): void {
    const status = err.status ?? REFUSAL_STATUS[err.code] ?? 400;
    this.#log.warn(`refused agent ${remote}: ${err.message}`, { remote, code: err.code });
    this.emit('refused', { remote, code: err.code, reason: err.message });
    if (socket.destroyed) return;
    socket.end(buildRefusal(err.code, err.message, status), () => socket.destroy());
  }
}
