import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { Session } from '../mux/session.js';
import type { SpliceEnd } from '../mux/splice.js';
import { SharedBudget } from '../mux/window.js';
import { formatAddress } from '../transport/address.js';
import { formatDuration, type Logger } from '../log.js';
import { Admission } from './admission.js';
import { AgentDesk, type AgentInfo, type Refusal } from './agents.js';
import { AuthGuard } from './auth-guard.js';
import { ChannelTable } from './channels.js';
import type { Connection } from './connection.js';
import { AddressSet, normalizeIp, type ProxyHeader } from '../protocol/index.js';
import { setListenerOptions } from '../transport/listener.js';
import { CertificateStore } from '../transport/tls.js';
import { resolveTunnelConfig, type ResolvedTunnelConfig, type TunnelConfig } from './config.js';
import { RefusalLog } from './refusal-log.js';
import { readClientHello } from './client-hello.js';
import { Router } from './router.js';
import { RouteTable } from './routes.js';
import { Sniffer } from './sniff.js';

export type { AgentInfo } from './agents.js';
export type { Connection } from './connection.js';

/** TCP keepalive on every accepted socket: the kernel notices peers that vanished without a FIN. */
const TCP_KEEPALIVE_MS = 60_000;

/** Keys shorter than this are easy to guess offline from a recorded handshake: the tunnel warns about them. */
const STRONG_KEY_BYTES = 16;

/** The listener that keeps a stray socket error from crashing the process. */
function ignore(): void {}

/** Loopback and internal ranges: where a proxy in front of the tunnel comes from. */
const PRIVATE_RANGES = new AddressSet(['private']);

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
  /** Of `users`, the streams client agents carry (a pool of their own). */
  clientStreams: number;
  /** Bytes received from agents and held for readers that have not taken them: bounded by the windows. */
  bufferedBytes: number;
  /** Since start: failed credentials, attempts refused while locked out, entries remembered. */
  auth: { failures: number; lockedOut: number; tracked: number };
  /** Since start: connections refused or dropped by a limit. */
  limits: { pendingRefused: number; pendingDropped: number; rateRefused: number; usersRefused: number; usersEvicted: number };
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
  readonly #trusted: AddressSet;
  readonly #shared: SharedBudget;
  readonly #router: Router;
  readonly #routes: RouteTable;
  readonly #desk: AgentDesk;
  readonly #refusals: RefusalLog;
  readonly #certs: CertificateStore | null;
  #closing: Promise<void> | null = null;
  #authSummary: NodeJS.Timeout | null = null;
  /** A hint about a proxy the tunnel does not trust was logged. */
  #limitHinted = false;
  /** The listening socket carries TCP_NODELAY and keepalive, which accepted sockets inherit: none is set per connection. */
  #optionsInherited = false;
  readonly #sniffer: Sniffer;
  /** Every accepted socket's 'close' listener, one function for all (`this` is the socket). */
  readonly #onSocketClose: (this: net.Socket) => void;
  /** The guessing totals at the last summary. */
  #summarized = { failures: 0, refused: 0 };

  constructor(options?: Partial<TunnelConfig>) {
    super();
    this.config = resolveTunnelConfig(options);
    this.#log = this.config.logger;
    this.#channels = new ChannelTable(this.config.keys, this.config.openChannels, this.config.authIterations, this.config.channelPolicies);
    this.#routes = new RouteTable(this.config.domains, this.config.routes);
    this.#admission = new Admission(this.config);
    this.#guard = new AuthGuard({ baseDelayMs: this.config.authLockoutMs, maxDelayMs: this.config.authLockoutMaxMs }, this.config.now);
    this.#trusted = new AddressSet(this.config.trustProxy);
    this.#shared = new SharedBudget(Math.floor(this.config.maxBufferedBytes / 2));
    this.#refusals = new RefusalLog(this.#log);
    this.#sniffer = new Sniffer(this.config.sniffTimeoutMs);
    const sockets = this.#sockets;
    const admission = this.#admission;
    const sniffer = this.#sniffer;
    this.#onSocketClose = function (this: net.Socket): void {
      sockets.delete(this);
      admission.leavePending(this);
      sniffer.forget(this);
    };
    // Events only cost when someone listens: user-close fires once per user.
    const emit = (event: string, ...args: unknown[]): void => {
      if (this.listenerCount(event) > 0) (this.emit as (e: string, ...a: unknown[]) => boolean)(event, ...args);
    };
    this.#router = new Router({ config: this.config, log: this.#log, channels: this.#channels, shared: this.#shared, emit, routes: this.#routes, trusted: this.#trusted });
    this.#desk = new AgentDesk({
      config: this.config,
      log: this.#log,
      channels: this.#channels,
      admission: this.#admission,
      guard: this.#guard,
      trusted: this.#trusted,
      shared: this.#shared,
      router: this.#router,
      refusals: this.#refusals,
      closing: () => this.#closing !== null,
      sessionOpened: (session) => {
        this.#sessions.add(session);
        session.once('close', () => this.#sessions.delete(session));
      },
      emit,
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
    await this.#channels.prepare();
    this.#server.listen(this.config.port, this.config.host);
    await Promise.race([once(this.#server, 'listening'), once(this.#server, 'error').then(([err]) => Promise.reject(err))]);
    const address = this.address()!;
    this.#optionsInherited = setListenerOptions(this.#server, TCP_KEEPALIVE_MS);
    this.#warnAtStart();
    const tls = this.#certs ? ', TLS and plain' : '';
    this.#log.info(`tunnel listening on ${formatAddress(address.host, address.port)}${tls}`, { event: 'listening', ...address, tls: this.#certs !== null });
    this.#authSummary = setInterval(() => this.#summarize(), this.config.summaryIntervalMs).unref();
    this.emit('listening', address);
    return address;
  }

  /** What an operator must know about this configuration, every time it starts. */
  #warnAtStart(): void {
    for (const channel of this.config.openChannels) {
      if (this.config.implicitOpen) {
        this.#log.info(
          `channel ${channel} is open without a key, for trying rhost on this machine only: it listens on ${this.config.host}, ` +
            `and refuses agents whose handshake came through a proxy. Anywhere else, set a key (KEYS=$(openssl rand -base64 24))`,
        );
      } else {
        this.#log.warn(`channel ${channel} is OPEN: anyone who can reach this tunnel may register a server agent on it`, { channel });
      }
    }
    for (const [channel, key] of Object.entries(this.config.keys)) {
      if (Buffer.byteLength(key) < STRONG_KEY_BYTES) {
        this.#log.warn(
          `the key of ${channel} is shorter than ${STRONG_KEY_BYTES} bytes: whoever records a handshake, or poses as this tunnel, can guess a weak key offline. ` +
            `Use a random one: openssl rand -base64 24`,
          { channel },
        );
      }
    }
    if (this.config.allowLegacyAuth) {
      this.#log.warn(
        'legacy auth is ON (--allow-legacy-auth): agents of protocol 1 send their key and token in the clear request, ' +
          'and a proxy that reuses connections delivers them to the app behind /. Upgrade every agent, then drop the flag',
      );
    }
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
      users: this.#router.users.publicUsers + this.#router.users.clientStreams,
      clientStreams: this.#router.users.clientStreams,
      pending: this.#admission.pending,
      sockets: this.#sockets.size,
      bufferedBytes: this.#shared.buffered,
      auth: { failures: this.#guard.failures, lockedOut: this.#guard.refused, tracked: this.#guard.tracked },
      limits: { ...this.#admission.counts, ...this.#router.users.counts },
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
    this.#router.close();
    this.#sniffer.close();
    if (this.#authSummary) clearInterval(this.#authSummary);
    this.#log.info(`tunnel closing: draining ${this.#sessions.size} sessions`, { event: 'closing', sessions: this.#sessions.size });
    await Promise.all([...this.#sessions].map((s) => s.close(drainTimeoutMs)));
    const left = [...this.#sockets];
    for (const socket of left) socket.destroy();
    await Promise.all([serverClosed, ...left.map((s) => (s.closed ? null : once(s, 'close')))]);
    this.#log.info('tunnel closed');
  }

  /** Sums up, once a minute, the refusals not logged one by one and the guessing totals, when they moved. */
  #summarize(): void {
    this.#refusals.flush(this.config.summaryIntervalMs);
    this.#router.traffic.flush();
    const { failures, refused, tracked } = this.#guard;
    const last = this.#summarized;
    if (failures === last.failures && refused === last.refused) return;
    this.#log.warn(
      `guessing: ${failures - last.failures} failed keys or tokens and ${refused - last.refused} attempts refused while locked out ` +
        `in the last ${formatDuration(this.config.summaryIntervalMs)} (${failures} and ${refused} since start); ` +
        `${tracked} addresses and names remembered`,
      { failures, refused, tracked },
    );
    this.#summarized = { failures, refused };
  }

  // ---- connections -------------------------------------------------------

  #onConnection(socket: net.Socket): void {
    const peer = normalizeIp(socket.remoteAddress);
    const fromProxy = this.#trusted.has(peer);
    // Over its address's rate: closed before anything else is spent on it. A trusted proxy is counted by the client it names.
    if (!fromProxy && !this.#admission.allowConnection(peer)) {
      this.#hintLimit(peer, 'new connections per second');
      return void socket.resetAndDestroy();
    }
    socket.on('error', ignore); // first: every later owner adds its own, this keeps a stray error from crashing
    this.#sockets.add(socket);
    socket.on('close', this.#onSocketClose);
    if (this.#closing) return void socket.destroy();
    // A trusted proxy speaks for many clients: only the overall limit applies, until a PROXY header names the client.
    if (!this.#admission.enterPending(socket, fromProxy ? '' : peer)) {
      this.#log.debug(`refused a connection from ${peer}: too many pending from that address`);
      this.#hintLimit(peer, 'pending connections');
      return void socket.destroy();
    }
    if (!this.#optionsInherited) {
      socket.setNoDelay(true);
      socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    }
    this.#classify(socket, socket, peer, fromProxy, Date.now(), null, null);
  }

  /**
   * Sorts out what a connection is: a PROXY header first when one is
   * expected (from a trusted proxy, `fromProxy`), then TLS (routed by its
   * server name, passed through, or decrypted and classified again inside),
   * then an agent or a user. `sni`: the name a decrypted connection was for.
   */
  #classify(socket: net.Socket, raw: net.Socket, peer: string, fromProxy: boolean, started: number, source: ProxyHeader['source'], sni: string | null): void {
    const outer = socket === raw;
    const tlsHere = (this.#certs !== null || this.#routes.enabled) && outer;
    const proxyHeader = fromProxy && this.config.proxyProtocol && outer;
    // The PROXY header names the real client: its per-address pending limit applies from then on.
    const onProxyHeader = (header: ProxyHeader['source']): boolean => {
      if (!header) return true;
      if (!this.#admission.allowConnection(header.address)) return false;
      if (this.#admission.assignPending(raw, header.address)) return true;
      this.#log.debug(`refused a connection from ${header.address} (via ${peer}): too many pending from that address`);
      return false;
    };
    this.#sniffer.watch(socket, proxyHeader && onProxyHeader, tlsHere, (kind, first, header) => {
      const origin = header ?? source;
      const ip = origin ? origin.address : peer;
      const port = origin ? origin.port : (raw.remotePort ?? 0);
      const limitIp = origin || !fromProxy ? ip : '';
      const conn: Connection = { socket, raw, ip, limitIp, port, remote: formatAddress(ip || '?', port), tls: !outer };
      if (kind === 'tls') return this.#onTls(conn, first, (secure, name) => this.#classify(secure, raw, peer, fromProxy, started, origin, name));
      if (kind === 'agent') return this.#desk.handshake(conn, first, started);
      this.#admission.leavePending(raw);
      if (kind === 'user') this.#router.carryUser(conn, first, sni);
      else socket.destroy();
    });
  }

  /**
   * A connection that opened with a TLS handshake: its ClientHello is read
   * (within the handshake's time and MAX_CLIENT_HELLO_BYTES) for the server
   * name. A routed name whose certificate the tunnel does not hold passes
   * through untouched to its channel; otherwise, with a certificate, the
   * tunnel decrypts it; without one, it goes to `/` as bytes, as any user.
   */
  #onTls(conn: Connection, first: Buffer, decrypted: (secure: tls.TLSSocket, sni: string | null) => void): void {
    const { socket } = conn;
    let bytes = first;
    const stop = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
    };
    const timer = setTimeout(() => {
      stop();
      socket.destroy();
    }, this.config.handshakeTimeoutMs);
    const onData = (chunk?: Buffer): void => {
      if (chunk) bytes = Buffer.concat([bytes, chunk]);
      const hello = readClientHello(bytes);
      if ('need' in hello) return;
      stop();
      if ('error' in hello) {
        this.#log.debug(`refused a connection from ${conn.remote}: ${hello.error}`);
        return void socket.destroy();
      }
      const route = hello.sni !== null && this.#routes.enabled ? this.#routes.resolve(hello.sni) : null;
      if (route && !this.#certs?.covers(hello.sni!)) {
        this.#admission.leavePending(conn.raw);
        return this.#router.passThrough(conn, bytes, route);
      }
      if (this.#certs) return this.#startTls(socket, bytes, (secure) => decrypted(secure, this.#routes.enabled ? hello.sni : null));
      this.#admission.leavePending(conn.raw);
      this.#router.carryUser(conn, bytes, null);
    };
    socket.on('data', onData);
    onData();
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

  /**
   * A per-address limit that refuses a loopback or private address is most
   * likely a proxy in front of the tunnel that it was not told to trust:
   * every user behind it then counts as one. Said once.
   */
  #hintLimit(peer: string, what: string): void {
    if (this.#limitHinted || !PRIVATE_RANGES.has(peer)) return;
    this.#limitHinted = true;
    this.#log.warn(
      `refusing connections from ${peer}: past its limit of ${what}. If ${peer} is a proxy in front of this tunnel, ` +
        `every user behind it counts as one address: set --trust-proxy ${peer} (with --proxy-protocol if it sends the PROXY header)`,
    );
  }
}
