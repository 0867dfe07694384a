import { EventEmitter, once } from 'node:events';
import net from 'node:net';
import { RhostError } from '../errors.js';
import { describeEnd, type Logger } from '../log.js';
import type { Session } from '../mux/session.js';
import type { Stream } from '../mux/stream.js';
import { spliceSocket } from '../mux/splice.js';
import { checkInteger } from '../options.js';
import { formatAddress, splitHostPort } from '../transport/address.js';
import { AgentLink } from './link.js';
import { checkSecret, DEFAULT_AGENT_CONFIG, resolveAgentConfig, type AgentConfig, type AgentEvents } from './config.js';

/** Options of a server agent. */
export interface ServerAgentConfig extends AgentConfig {
  /** The local service to expose: `8080` (localhost), `host:port`. */
  target: string;
  /** The channel's key, as configured on the tunnel. */
  key: string | undefined;
  /** The token client agents must present; without one, no client agent may subscribe. */
  token: string | undefined;
  /** Bound on connecting to the local service for one stream. */
  targetConnectTimeoutMs: number;
}

export const DEFAULT_SERVER_AGENT_CONFIG: Readonly<ServerAgentConfig> = Object.freeze({
  ...DEFAULT_AGENT_CONFIG,
  target: '',
  key: undefined,
  token: undefined,
  targetConnectTimeoutMs: 10_000,
});

/** Events of the agent: `connected`, `disconnected`, `fatal`. */
export type ServerAgentEvents = AgentEvents;

/**
 * Exposes a local service through the tunnel: registers a channel, and for
 * every stream the tunnel opens, connects to the local service and splices
 * the two. A refused local connect resets the stream with CONNECT_REFUSED,
 * which the tunnel turns into a 502 page for HTTP users.
 */
export class ServerAgent extends EventEmitter<ServerAgentEvents> {
  readonly config: ServerAgentConfig;
  readonly target: { host: string; port: number };
  readonly #link: AgentLink;
  readonly #log: Logger;
  readonly #sockets = new Set<net.Socket>();

  constructor(options: Partial<ServerAgentConfig>) {
    super();
    this.config = resolveAgentConfig(DEFAULT_SERVER_AGENT_CONFIG, options);
    if (!this.config.target) throw new RhostError('ERR_RHOST_BAD_OPTION', 'option target is required: the local service to expose, e.g. 8080 or host:port');
    this.target = splitHostPort('target', String(this.config.target), 'localhost', 80);
    checkSecret('key', this.config.key);
    checkSecret('token', this.config.token);
    checkInteger('targetConnectTimeoutMs', this.config.targetConnectTimeoutMs, 1, 600_000);
    this.#log = this.config.logger.child({ channel: this.config.channel });
    this.#link = new AgentLink({
      ...this.config,
      role: 'server',
      session: { pingIntervalMs: this.config.pingIntervalMs, ...this.config.session },
      logger: this.#log,
    });
    this.#link.on('up', (session) => this.#onSession(session));
    this.#link.on('down', (_session, reason) => this.emit('disconnected', reason));
    this.#link.on('fatal', (err) => this.emit('fatal', err));
  }

  /** Connects and registers; resolves once registered, rejects if the tunnel refuses the configuration. */
  async start(): Promise<void> {
    await this.#link.start();
  }

  /** The session in use, or null while reconnecting. */
  get session(): Session | null {
    return this.#link.session;
  }

  /**
   * Closes the sessions (GOAWAY; streams may finish for `drainTimeoutMs`,
   * 30 s by default) and every local connection; resolves when all sockets
   * are gone.
   */
  async close(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    await this.#link.close(options.drainTimeoutMs);
    const left = [...this.#sockets];
    for (const socket of left) socket.destroy();
    await Promise.all(left.map((s) => (s.closed ? null : once(s, 'close'))));
  }

  #onSession(session: Session): void {
    const target = formatAddress(this.target.host, this.target.port);
    this.#log.info(`serving ${this.config.channel} → ${target} (session ${session.id.slice(0, 8)})`);
    this.emit('connected', session.id);
    session.on('stream', (stream) => this.#onStream(stream));
  }

  #onStream(stream: Stream): void {
    const user = formatAddress(stream.meta.remoteAddress || '?', stream.meta.remotePort);
    const socket = net.connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true, noDelay: true });
    this.#sockets.add(socket);
    socket.once('close', () => {
      clearTimeout(timer);
      this.#sockets.delete(socket);
    });
    const timer = setTimeout(() => {
      socket.destroy(Object.assign(new Error(`connect to the local service timed out`), { code: 'ETIMEDOUT' }));
    }, this.config.targetConnectTimeoutMs);
    let spliced = false;
    // The user may leave (RST) before the local service answers.
    stream.on('error', () => {});
    stream.once('close', () => spliced || socket.destroy());
    const refused = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      if (stream.destroyed) return;
      this.#log.warn(`user ${user}: local service ${formatAddress(this.target.host, this.target.port)} is down: ${err.code ?? err.message}`);
      stream.destroy(err);
    };
    socket.once('error', refused);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.off('error', refused);
      if (stream.destroyed) return void socket.destroy();
      spliced = true;
      stream.accept();
      this.#log.info(`user ${user} connected`, { stream: stream.id });
      spliceSocket(socket, stream, (end) => {
        // Told from the user's side, as the tunnel tells it: in is what the user sent.
        const seen = { ...end, bytesIn: end.bytesOut, bytesOut: end.bytesIn };
        this.#log.info(`user ${user} disconnected ${describeEnd(seen)}`, { stream: stream.id, ...seen });
      });
    });
  }
}
