import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import { describeEnd, logsAt, TrafficSummary, type Logger } from '../log.js';
import type { Session } from '../mux/session.js';
import { resetSocket } from '../mux/splice.js';
import { formatAddress, splitHostPort } from '../transport/address.js';
import { setListenerOptions } from '../transport/listener.js';
import { AgentLink } from './link.js';
import { checkSecret, DEFAULT_AGENT_CONFIG, linkSettings, resolveAgentConfig, warnIfWeak, type AgentConfig, type AgentEvents } from './config.js';

/** Options of a client agent. */
export interface ClientAgentConfig extends AgentConfig {
  /** Where to listen locally: `7002` (localhost), `host:port`, or 0 for any free port. */
  listen: string | number;
  /** The token the channel's server agent set. */
  token: string | undefined;
}

export const DEFAULT_CLIENT_AGENT_CONFIG: Readonly<ClientAgentConfig> = Object.freeze({
  ...DEFAULT_AGENT_CONFIG,
  listen: 7002,
  token: undefined,
});

/** Events of the agent: `connected`, `disconnected`, `fatal`. */
export type ClientAgentEvents = AgentEvents;

/**
 * Makes a channel's remote service feel local: listens on a local port and
 * carries every local connection as a stream to the channel's server agent.
 * While the tunnel is unreachable it keeps its port, and closes each new
 * local connection at once with a logged reason, so nothing hangs.
 */
/** The listener that keeps a stray socket error from crashing the process. */
function ignore(): void {}

export class ClientAgent extends EventEmitter<ClientAgentEvents> {
  readonly config: ClientAgentConfig;
  readonly #link: AgentLink;
  readonly #log: Logger;
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  /** One 'close' listener for every local socket (`this` is the socket). */
  readonly #onLocalClose: (this: net.Socket) => void;
  /** Accepted sockets inherit TCP_NODELAY from the listener (Linux). */
  #noDelayInherited = false;
  readonly #listenAt: { host: string; port: number };
  /** The info-level log of users: a line per interval; each user's own lines are at debug. */
  readonly #traffic: TrafficSummary;
  /** A user was turned away since the last one got through. */
  #turnedAwayAlready = false;

  constructor(options: Partial<ClientAgentConfig>) {
    super();
    this.config = resolveAgentConfig(DEFAULT_CLIENT_AGENT_CONFIG, options);
    checkSecret('token', this.config.token);
    this.#listenAt = splitHostPort('listen', String(this.config.listen), '127.0.0.1', 7002);
    this.#log = this.config.logger.child({ channel: this.config.channel });
    this.#traffic = new TrafficSummary(this.#log, 'users', this.config.summaryIntervalMs);
    const sockets = this.#sockets;
    this.#onLocalClose = function (this: net.Socket): void {
      sockets.delete(this);
    };
    warnIfWeak(this.#log, 'token', this.config.token);
    this.#link = new AgentLink({
      ...this.config,
      ...linkSettings(this.config),
      role: 'client',
      key: undefined,
      session: { pingIntervalMs: this.config.pingIntervalMs, ...this.config.session },
      logger: this.#log,
    });
    this.#link.on('up', (session) => {
      this.#log.info(`subscribed to ${this.config.channel} (session ${session.id.slice(0, 8)})`, { event: 'subscribed', session: session.id });
      this.emit('connected', session.id);
    });
    this.#link.on('down', (_session, reason) => this.emit('disconnected', reason));
    this.#link.on('fatal', (err) => this.emit('fatal', err));
    this.#server = net.createServer({ allowHalfOpen: true }, (socket) => this.#onLocal(socket));
  }

  /**
   * Listens locally and starts connecting to the tunnel in the background;
   * resolves with the local address. Use `ready()` to wait for the tunnel.
   */
  async listen(): Promise<{ host: string; port: number }> {
    this.#server.listen(this.#listenAt.port, this.#listenAt.host);
    await Promise.race([once(this.#server, 'listening'), once(this.#server, 'error').then(([err]) => Promise.reject(err))]);
    this.#noDelayInherited = setListenerOptions(this.#server);
    this.#link.start().catch(() => {}); // failures surface as `fatal`
    const a = this.address()!;
    this.#log.info(`listening on ${formatAddress(a.host, a.port)} for ${this.config.channel}`, { event: 'listening', ...a });
    return a;
  }

  /** Resolves once subscribed to the channel; rejects if the tunnel refuses the configuration. */
  ready(): Promise<void> {
    return this.#link.start();
  }

  address(): { host: string; port: number } | null {
    const a = this.#server.address();
    return a && typeof a !== 'string' ? { host: a.address, port: a.port } : null;
  }

  /** The session in use, or null while reconnecting. */
  get session(): Session | null {
    return this.#link.session;
  }

  /**
   * Stops listening, closes the session (GOAWAY; streams may finish for
   * `drainTimeoutMs`, 30 s by default) and every local connection; resolves
   * when all sockets are gone.
   */
  async close(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    this.#traffic.close();
    const closed = this.#server.listening ? once(this.#server, 'close') : Promise.resolve();
    this.#server.close();
    await this.#link.close(options.drainTimeoutMs);
    const left = [...this.#sockets];
    for (const socket of left) socket.destroy();
    await Promise.all([closed, ...left.map((s) => (s.closed ? null : once(s, 'close')))]);
  }

  #onLocal(socket: net.Socket): void {
    socket.on('error', ignore);
    this.#sockets.add(socket);
    socket.on('close', this.#onLocalClose);
    if (!this.#noDelayInherited) socket.setNoDelay(true);
    const user = (): string => formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
    const session = this.#link.session;
    const channel = this.config.channel;
    if (!session || session.goingAway) {
      this.#turnedAway(user(), 'no session to the tunnel (reconnecting)');
      resetSocket(socket);
      return;
    }
    const logUsers = logsAt(this.#log, 'debug');
    let streamId = 0;
    try {
      const meta = { channel, remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 };
      streamId = session.openSocket(meta, socket, (end) => {
        this.#traffic.closed(channel, end);
        if (logUsers) this.#log.debug(`user ${user()} disconnected ${describeEnd(end)}`, { stream: streamId, ...end });
      });
    } catch (err) {
      this.#turnedAway(user(), (err as Error).message);
      resetSocket(socket);
      return;
    }
    this.#turnedAwayAlready = false;
    this.#traffic.opened(channel);
    if (logUsers) this.#log.debug(`user ${user()} connected, stream ${streamId}`, { stream: streamId });
  }

  /** A local user turned away: said once until one gets through again, then at debug. */
  #turnedAway(user: string, why: string): void {
    const level = this.#turnedAwayAlready ? 'debug' : 'warn';
    this.#turnedAwayAlready = true;
    this.#log[level](`turned away user ${user}: ${why}`, { event: 'user-refused' });
  }
}
