import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { RhostError } from '../errors.js';
import { Session } from '../mux/session.js';
import type { Stream } from '../mux/stream.js';
import { resetSocket, spliceStreams, type SpliceEnd } from '../mux/splice.js';
import { SharedBudget } from '../mux/window.js';
import { buildHttpError, looksLikeHttp, PeerError, WireError } from '../protocol/index.js';
import { formatAddress } from '../transport/address.js';
import { describeEnd, logsAt, type Logger } from '../log.js';
import { Admission } from './admission.js';
import { AgentDesk, type AgentInfo, type Refusal } from './agents.js';
import { AuthGuard } from './auth-guard.js';
import { ChannelTable, type Channel } from './channels.js';
import { normalizeIp, TrustedProxies, type ProxyHeader } from './client-address.js';
import { CertificateStore } from '../transport/tls.js';
import { resolveTunnelConfig, type ResolvedTunnelConfig, type TunnelConfig } from './config.js';
import { sniffConnection } from './sniff.js';

export type { AgentInfo } from './agents.js';

/** TCP keepalive on every accepted socket: the kernel notices peers that vanished without a FIN. */
const TCP_KEEPALIVE_MS = 60_000;

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
  /** Connections not yet classified, or agents mid-handshake. */
  pending: number;
  /** Sockets of any kind. */
  sockets: number;
  /** Bytes received from agents and held for readers that have not taken them: bounded by the windows. */
  bufferedBytes: number;
  /** Since start: failed credentials, attempts refused while locked out, addresses remembered. */
  auth: { failures: number; lockedOut: number; tracked: number };
  /** Since start: connections refused or dropped by a limit. */
  limits: { pendingRefused: number; pendingDropped: number; usersRefused: number };
  channels: Array<{ name: string; open: boolean; server: boolean; clients: number }>;
}

export interface TunnelEvents {
  listening: [address: TunnelAddressInfo];
  /** An agent completed its handshake. */
  agent: [info: AgentInfo];
  /** An agent's session ended. */
  'agent-close': [info: AgentInfo, err: Error | undefined];
  /** An agent's handshake was refused. */
  refused: [info: Refusal];
  /** A user connection ended; bytes and duration in `end`. */
  'user-close': [info: { remote: string; channel: string } & SpliceEnd];
  /** The TLS certificate files changed on disk and were loaded again. */
  'tls-reload': [];
}

/** One accepted connection and who it really comes from. */
export interface Connection {
  /** What to read and write: the accepted socket, or the TLS socket over it. */
  socket: net.Socket;
  /** The accepted TCP socket, for bookkeeping. */
  raw: net.Socket;
  /** The client's address: the socket's peer, or what a trusted proxy said. */
  ip: string;
  /**
   * The address per-address limits count under: `ip`, or empty when the
   * connection comes from a trusted proxy that did not say for whom (it
   * speaks for many clients; only the overall limits apply).
   */
  limitIp: string;
  port: number;
  /** `ip:port`, for logs. */
  remote: string;
}

/**
 * The tunnel: one listening port that serves users and agents alike,
 * telling them apart from their first bytes (docs/protocol.md §2), with
 * every queue and every stranger's share of it bounded (docs/limits.md).
 */
export class Tunnel extends EventEmitter<TunnelEvents> {
  readonly config: ResolvedTunnelConfig;
  readonly #log: Logger;
  readonly #server: net.Server;
  readonly #channels: ChannelTable;
  readonly #sockets = new Set<net.Socket>();
  readonly #sessions = new Set<Session>();
  readonly #admission: Admission;
  readonly #guard: AuthGuard;
  readonly #trusted: TrustedProxies;
  readonly #shared: SharedBudget;
  readonly #desk: AgentDesk;
  readonly #certs: CertificateStore | null;
  #closing: Promise<void> | null = null;
  #authSummary: NodeJS.Timeout | null = null;
  /** The guessing totals at the last summary. */
  #summarized = { failures: 0, refused: 0 };

  constructor(options?: Partial<TunnelConfig>) {
    super();
    this.config = resolveTunnelConfig(options);
    this.#log = this.config.logger;
    this.#channels = new ChannelTable(this.config.keys, this.config.openChannels);
    this.#admission = new Admission(this.config);
    this.#guard = new AuthGuard(this.config.authLockoutMs, this.config.authLockoutMaxMs);
    this.#trusted = new TrustedProxies(this.config.trustProxy);
    this.#shared = new SharedBudget(Math.floor(this.config.maxBufferedBytes / 2));
    this.#desk = new AgentDesk({
      config: this.config,
      log: this.#log,
      channels: this.#channels,
      admission: this.#admission,
      guard: this.#guard,
      trusted: this.#trusted,
      shared: this.#shared,
      closing: () => this.#closing !== null,
      sessionOpened: (session) => {
        this.#sessions.add(session);
        session.once('close', () => this.#sessions.delete(session));
      },
      carryClientStream: (channel, conn, stream, log) => this.#carryClientStream(channel, conn, stream, log),
      emit: (event, ...args) => (this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args),
    });
    this.#certs = this.config.tlsCert ? new CertificateStore(this.config.tlsCert, this.config.tlsKey!, this.config.tlsReloadIntervalMs) : null;
    this.#certs?.on('reload', () => {
      this.#log.info(`reloaded the TLS certificate ${this.config.tlsCert}`);
      this.emit('tls-reload');
    });
    this.#certs?.on('error', (err) => this.#log.error(`${err.message}; still serving the previous certificate`));
    this.#server = net.createServer({ allowHalfOpen: true }, (socket) => this.#onConnection(socket));
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
    const tls = this.#certs ? ', TLS and plain' : '';
    this.#log.info(`tunnel listening on ${formatAddress(address.host, address.port)}${tls}`, { ...address });
    this.#authSummary = setInterval(() => this.#summarizeGuessing(), this.config.authSummaryIntervalMs).unref();
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
    return {
      servers,
      clients,
      users: this.#admission.users,
      pending: this.#admission.pending,
      sockets: this.#sockets.size,
      bufferedBytes: this.#shared.buffered,
      auth: { failures: this.#guard.failures, lockedOut: this.#guard.refused, tracked: this.#guard.tracked },
      limits: { ...this.#admission.counts },
      channels,
    };
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
    this.#certs?.close();
    if (this.#authSummary) clearInterval(this.#authSummary);
    this.#log.info(`tunnel closing: draining ${this.#sessions.size} sessions`);
    await Promise.all([...this.#sessions].map((s) => s.close(drainTimeoutMs)));
    const left = [...this.#sockets];
    for (const socket of left) socket.destroy();
    await Promise.all([serverClosed, ...left.map((s) => (s.closed ? null : once(s, 'close')))]);
    this.#log.info('tunnel closed');
  }

  /** Each failure is logged as it happens; this adds the totals, when they moved. */
  #summarizeGuessing(): void {
    const { failures, refused, tracked } = this.#guard;
    const last = this.#summarized;
    if (failures === last.failures && refused === last.refused) return;
    this.#log.warn(
      `guessing: ${failures - last.failures} failed keys or tokens and ${refused - last.refused} attempts refused while locked out ` +
        `in the last ${Math.round(this.config.authSummaryIntervalMs / 1000)} s (${failures} and ${refused} since start); ` +
        `${tracked} address and channel pairs remembered`,
      { failures, refused, tracked },
    );
    this.#summarized = { failures, refused };
  }

  // ---- connections -------------------------------------------------------

  #onConnection(socket: net.Socket): void {
    socket.on('error', () => {}); // first: every later owner adds its own, this keeps a stray error from crashing
    this.#sockets.add(socket);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      this.#admission.leavePending(socket);
    });
    if (this.#closing) return void socket.destroy();
    const peer = normalizeIp(socket.remoteAddress);
    const fromProxy = this.#trusted.has(peer);
    // A trusted proxy speaks for many clients: only the overall limit applies, until a PROXY header names the client.
    if (!this.#admission.enterPending(socket, fromProxy ? '' : peer)) {
      this.#log.debug(`refused a connection from ${peer}: too many pending from that address`);
      return void socket.destroy();
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    this.#classify(socket, socket, peer, fromProxy, Date.now(), null);
  }

  /**
   * Sorts out what a connection is: a PROXY header first when one is
   * expected (from a trusted proxy, `fromProxy`), then TLS (decrypted, and
   * classified again inside), then an agent or a user.
   */
  #classify(socket: net.Socket, raw: net.Socket, peer: string, fromProxy: boolean, started: number, source: ProxyHeader['source']): void {
    const outer = socket === raw;
    const tlsHere = this.#certs !== null && outer;
    const proxyHeader = fromProxy && this.config.proxyProtocol && outer;
    // The PROXY header names the real client: its per-address pending limit applies from then on.
    const onProxyHeader = (header: ProxyHeader['source']): boolean => {
      if (!header || this.#admission.assignPending(raw, header.address)) return true;
      this.#log.debug(`refused a connection from ${header.address} (via ${peer}): too many pending from that address`);
      return false;
    };
    sniffConnection(socket, this.config.sniffTimeoutMs, proxyHeader && onProxyHeader, tlsHere, (kind, first, header) => {
      const origin = header ?? source;
      if (kind === 'tls') return this.#startTls(socket, first, (secure) => this.#classify(secure, raw, peer, fromProxy, started, origin));
      const ip = origin ? origin.address : peer;
      const port = origin ? origin.port : (raw.remotePort ?? 0);
      const limitIp = origin || !fromProxy ? ip : '';
      const conn: Connection = { socket, raw, ip, limitIp, port, remote: formatAddress(ip || '?', port) };
      if (kind === 'agent') return this.#desk.handshake(conn, first, started);
      this.#admission.leavePending(raw);
      if (kind === 'user') this.#carryUser(conn, first);
      else socket.destroy();
    });
  }

  /** Decrypts a connection that opened with a TLS handshake; gives up after the handshake timeout. */
  #startTls(socket: net.Socket, first: Buffer, then: (secure: tls.TLSSocket) => void): void {
    socket.pause();
    socket.unshift(first);
    const secure = new tls.TLSSocket(socket, { isServer: true, secureContext: this.#certs!.context });
    secure.on('error', () => secure.destroy());
    const timer = setTimeout(() => secure.destroy(), this.config.handshakeTimeoutMs);
    secure.once('close', () => clearTimeout(timer));
    secure.once('secure', () => {
      clearTimeout(timer);
      then(secure);
    });
  }

  #carryUser(conn: Connection, first: Buffer): void {
    const { socket, remote } = conn;
    const http = looksLikeHttp(first);
    const server = this.#channels.get('/')?.server;
    const logUsers = logsAt(this.#log, 'info');
    let streamId = 0;
    const ended = (end: SpliceEnd): void => {
      this.#admission.releaseUser(conn.limitIp);
      if (logUsers) this.#log.info(`user ${remote} disconnected ${describeEnd(end)}`, { remote, channel: '/', stream: streamId, ...end });
      if (this.listenerCount('user-close') > 0) this.emit('user-close', { remote, channel: '/', ...end });
    };
    try {
      if (!server || server.goingAway) throw new RhostError('ERR_RHOST_NO_SERVER', 'no server agent is connected to this tunnel');
      const refused = this.#admit(conn.limitIp);
      if (refused) throw new RhostError('ERR_RHOST_BUSY', refused);
      try {
        const meta = { channel: '/', remoteAddress: conn.ip, remotePort: conn.port };
        streamId = server.openSocket(meta, socket, ended, { head: first, ...(http ? { answerReset: answerHttpUser } : {}) });
      } catch (err) {
        this.#admission.releaseUser(conn.limitIp);
        throw err;
      }
    } catch (err) {
      const why = (err as Error).message;
      this.#log.debug(`user ${remote} turned away: ${why}`);
      if (http) socket.end(buildHttpError(503, why), () => socket.destroy());
      else resetSocket(socket);
      return;
    }
    if (logUsers) this.#log.info(`user ${remote} connected to /`, { remote, channel: '/', stream: streamId });
    if (this.config.userIdleTimeoutMs > 0) {
      socket.setTimeout(this.config.userIdleTimeoutMs, () => resetSocket(socket));
    }
  }

  /** Takes a user slot for `ip`, or says why not. */
  #admit(ip: string): string | null {
    if (this.#shared.buffered >= this.config.maxBufferedBytes) {
      this.#admission.counts.usersRefused++;
      return 'the tunnel is holding its maximum of data for slow readers: try again later';
    }
    return this.#admission.admitUser(ip);
  }

  #carryClientStream(channel: Channel, conn: Connection, stream: Stream, log: Logger): void {
    const server = channel.server;
    let upstream: Stream;
    let code = WireError.RefusedStream;
    try {
      if (!server || server.goingAway) {
        code = WireError.NoServer;
        throw new RhostError('ERR_RHOST_NO_SERVER', `no server agent on ${channel.name}`);
      }
      const refused = this.#admit(conn.limitIp);
      if (refused) {
        code = WireError.LimitExceeded;
        throw new RhostError('ERR_RHOST_BUSY', refused);
      }
      try {
        // The server agent sees the client agent's address: the one the tunnel knows.
        upstream = server.open({ channel: channel.name, remoteAddress: conn.ip, remotePort: conn.port });
      } catch (err) {
        this.#admission.releaseUser(conn.limitIp);
        throw err;
      }
    } catch (err) {
      stream.on('error', () => {});
      stream.reset(code);
      log.debug(`client stream ${stream.id} refused: ${(err as Error).message}`);
      return;
    }
    const { remote } = conn;
    const logUsers = logsAt(log, 'info');
    if (logUsers) log.info(`user ${remote} connected to ${channel.name} through a client agent`, { stream: stream.id });
    spliceStreams(stream, upstream, (end) => {
      this.#admission.releaseUser(conn.limitIp);
      if (logUsers) log.info(`user ${remote} disconnected from ${channel.name} ${describeEnd(end)}`, { stream: stream.id, ...end });
      if (this.listenerCount('user-close') > 0) this.emit('user-close', { remote, channel: channel.name, ...end });
    });
  }
}
