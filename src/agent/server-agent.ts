import { EventEmitter, once } from 'node:events';
import dns from 'node:dns';
import net from 'node:net';
import { RhostError } from '../errors.js';
import { describeEnd, logsAt, TrafficSummary, type Logger } from '../log.js';
import type { Session } from '../mux/session.js';
import type { IncomingStream } from '../mux/incoming-stream.js';
import { badOption, checkInteger } from '../options.js';
import { buildProxyHeader, policyListProblem, type OpenMeta, type ServicePolicy } from '../protocol/index.js';
import { HttpService } from './http-service.js';
import { formatAddress, splitHostPort } from '../transport/address.js';
import { AgentLink } from './link.js';
import { checkSecret, DEFAULT_AGENT_CONFIG, linkSettings, resolveAgentConfig, warnIfWeak, type AgentConfig, type AgentEvents } from './config.js';

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
  /**
   * The channel answers by name on the tunnel's public port: `NAME.DOMAIN`
   * for channel `/NAME` under the tunnel's `domains`. Off by default: only
   * `/` and channels the operator routes are reachable by name.
   */
  public: boolean;
  /** Client addresses and CIDR ranges that may reach the service (empty: all not denied); the tunnel enforces it. */
  allow: string[];
  /** Client addresses and CIDR ranges that may not; the tunnel enforces it. */
  deny: string[];
  /** Each connection to the local service starts with a PROXY protocol header (`v1`, `v2`) naming the user. */
  sendProxy: 'v1' | 'v2' | undefined;
  /** Carry users as HTTP requests (X-Forwarded-*, Forwarded, `hostHeader`, `basicAuth`) instead of bytes. */
  http: boolean;
  /** With `http`: the Host the service sees: `preserve` (the user's), `rewrite` (the target's), or a value. */
  hostHeader: string;
  /** `user:password` pairs, one of which every request must carry (HTTP Basic); implies `http`. */
  basicAuth: string[];
}

/** How long the probe of the local service at start may take, connect and goodbye. */
const PROBE_TIMEOUT_MS = 2000;

/** How long a resolved local-service address is reused. */
const LOOKUP_CACHE_MS = 5000;

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

/**
 * Name resolution for the local service, at most once per `ttlMs`. A
 * lookup per stream would send every user through libuv's thread pool
 * (with `localhost`, it cost 8 % of the agent's time and queued connections
 * behind each other); and a name that resolves to one address is dialed by
 * that address, which skips net.connect's lookup machinery (6 % more
 * `Connection: close` requests per second in the bench). A name with several
 * addresses is dialed by name, so that net.connect tries them in turn.
 */
class TargetResolver {
  readonly #host: string;
  readonly #ttlMs: number;
  readonly #literal: boolean;
  #cached: { at: number; addresses: dns.LookupAddress[] } | null = null;

  constructor(host: string, ttlMs: number) {
    this.#host = host;
    this.#ttlMs = ttlMs;
    this.#literal = net.isIP(host) !== 0;
  }

  /** What to dial: the address, when there is exactly one known lately, or else the name (resolved through `lookup`). */
  host(): string {
    if (this.#literal) return this.#host;
    const hit = this.#cached;
    return hit && hit.addresses.length === 1 && Date.now() - hit.at < this.#ttlMs ? hit.addresses[0]!.address : this.#host;
  }

  /** A `lookup` for net.connect, which calls it only for this resolver's host; answers from the cache while it is fresh. */
  readonly lookup = (host: string, options: dns.LookupOptions, callback: LookupCallback): void => {
    const answer = (addresses: dns.LookupAddress[]): void => {
      const wanted = options.family ? addresses.filter((a) => a.family === options.family) : addresses;
      if (options.all) callback(null, wanted);
      else callback(null, wanted[0]!.address, wanted[0]!.family);
    };
    const hit = this.#cached;
    if (hit && Date.now() - hit.at < this.#ttlMs) return answer(hit.addresses);
    dns.lookup(host, { all: true }, (err, addresses) => {
      if (err || addresses.length === 0) return callback(err ?? Object.assign(new Error(`no address for ${host}`), { code: 'ENOTFOUND' }), []);
      this.#cached = { at: Date.now(), addresses };
      answer(addresses);
    });
  };
}

/**
 * The PROXY header for a user: its address and port as the tunnel saw
 * them, to the local service's. The destination takes the user's family
 * (its unspecified address when the service's is of the other family or
 * a name), since a header must name one family.
 */
function proxyHeaderFor(version: 'v1' | 'v2', meta: OpenMeta, target: { host: string; port: number }): Buffer {
  const family = net.isIP(meta.remoteAddress);
  const destination = net.isIP(target.host) === family ? target.host : family === 6 ? '::' : '0.0.0.0';
  const ends = family ? { source: { address: meta.remoteAddress, port: meta.remotePort }, destination: { address: destination, port: target.port } } : null;
  return buildProxyHeader(version === 'v1' ? 1 : 2, ends);
}

/** The policy a server agent's options declare, checked. */
function checkPolicy(c: ServerAgentConfig): ServicePolicy {
  if (typeof c.public !== 'boolean') badOption('public', 'must be true or false');
  for (const name of ['allow', 'deny'] as const) {
    const list = c[name];
    if (!Array.isArray(list) || list.some((e) => typeof e !== 'string')) badOption(name, 'must be a list of addresses and CIDR ranges');
    const problem = policyListProblem(name, list);
    if (problem) badOption(name, problem.slice(name.length + 1));
  }
  return { public: c.public, allow: c.allow, deny: c.deny };
}

/** Checks the options of `http` mode and the PROXY header. */
function checkCarrying(c: ServerAgentConfig): void {
  if (c.sendProxy !== undefined && c.sendProxy !== 'v1' && c.sendProxy !== 'v2') badOption('sendProxy', 'must be v1 or v2');
  if (typeof c.http !== 'boolean') badOption('http', 'must be true or false');
  if (typeof c.hostHeader !== 'string' || c.hostHeader === '' || /[\r\n\0]/.test(c.hostHeader)) badOption('hostHeader', 'must be preserve, rewrite or a host name');
  if (!Array.isArray(c.basicAuth)) badOption('basicAuth', 'must be a list of user:password');
  for (const pair of c.basicAuth) {
    if (typeof pair !== 'string' || pair.indexOf(':') < 1) badOption('basicAuth', 'entries must be user:password, with a user name');
  }
}

export const DEFAULT_SERVER_AGENT_CONFIG: Readonly<ServerAgentConfig> = Object.freeze({
  ...DEFAULT_AGENT_CONFIG,
  target: '',
  key: undefined,
  token: undefined,
  targetConnectTimeoutMs: 10_000,
  public: false,
  allow: [],
  deny: [],
  sendProxy: undefined,
  http: false,
  hostHeader: 'preserve',
  basicAuth: [],
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
  readonly #resolver: TargetResolver;
  /** The info-level log of users: a line per interval; each user's own lines are at debug. */
  readonly #traffic: TrafficSummary;
  /** The local service was tried at the first registration. */
  #probed = false;
  /** The local service failed its last connect (said once per outage). */
  #down = false;
  /** Connects to the local service under way, in order of their deadlines. */
  readonly #connecting = new Map<net.Socket, number>();
  #connectTimer: NodeJS.Timeout | null = null;
  /** Users carried as HTTP (`http`, `basicAuth`), or null: as bytes. */
  readonly #http: HttpService | null;

  constructor(options: Partial<ServerAgentConfig>) {
    super();
    this.config = resolveAgentConfig(DEFAULT_SERVER_AGENT_CONFIG, options);
    if (!this.config.target) throw new RhostError('ERR_RHOST_BAD_OPTION', 'option target is required: the local service to expose, e.g. 8080 or host:port');
    this.target = splitHostPort('target', String(this.config.target), 'localhost', 80);
    this.#resolver = new TargetResolver(this.target.host, LOOKUP_CACHE_MS);
    checkSecret('key', this.config.key);
    checkSecret('token', this.config.token);
    checkInteger('targetConnectTimeoutMs', this.config.targetConnectTimeoutMs, 1, 600_000);
    const policy = checkPolicy(this.config);
    checkCarrying(this.config);
    this.#log = this.config.logger.child({ channel: this.config.channel });
    this.#http = this.config.http || this.config.basicAuth.length > 0
      ? new HttpService({ target: this.target, connect: (meta) => this.#connect(meta), hostHeader: this.config.hostHeader, basicAuth: this.config.basicAuth, log: this.#log })
      : null;
    this.#traffic = new TrafficSummary(this.#log, 'users', this.config.summaryIntervalMs);
    warnIfWeak(this.#log, 'key', this.config.key);
    warnIfWeak(this.#log, 'token', this.config.token);
    this.#link = new AgentLink({
      ...this.config,
      ...linkSettings(this.config),
      role: 'server',
      policy,
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
    this.#traffic.close();
    this.#http?.close();
    if (this.#connectTimer) clearInterval(this.#connectTimer);
    this.#connectTimer = null;
    await this.#link.close(options.drainTimeoutMs);
    const left = [...this.#sockets];
    for (const socket of left) socket.destroy();
    await Promise.all(left.map((s) => (s.closed ? null : once(s, 'close'))));
  }

  #onSession(session: Session): void {
    const target = formatAddress(this.target.host, this.target.port);
    this.#log.info(`serving ${this.config.channel} → ${target} (session ${session.id.slice(0, 8)})`, { event: 'serving', session: session.id });
    this.emit('connected', session.id);
    session.handleStreams((stream) => this.#onStream(stream));
    if (!this.#probed) {
      this.#probed = true;
      this.#probeService();
    }
  }

  /**
   * Tries the local service once, at the first registration: an agent whose
   * service is down says so at once, not only when the first user gets a 502.
   * Politely: on connect it ends its side and reads whatever comes until the
   * service closes (at most a second), so the service sees a client that
   * left, never a reset.
   */
  #probeService(): void {
    const socket = net.connect({ host: this.#resolver.host(), port: this.target.port, lookup: this.#resolver.lookup });
    this.#sockets.add(socket);
    const timer = setTimeout(() => {
      if (socket.connecting) this.#serviceDown(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' }));
      socket.destroy();
    }, Math.min(this.config.targetConnectTimeoutMs, PROBE_TIMEOUT_MS));
    socket.once('connect', () => {
      socket.end();
      socket.resume();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (socket.connecting || !socket.remoteAddress) this.#serviceDown(err);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      this.#sockets.delete(socket);
    });
  }

  /** The local service failed a connect: said once per outage, until a connect works again. */
  #serviceDown(err: NodeJS.ErrnoException): void {
    if (this.#down) return;
    this.#down = true;
    const target = formatAddress(this.target.host, this.target.port);
    this.#log.warn(`the local service ${target} does not answer (${err.code ?? err.message}): users get a 502 until it does`, { event: 'service-down', code: err.code });
  }

  /**
   * Connects to the local service for a user's stream and splices the two:
   * the stream is accepted once the service answers, and reset with
   * CONNECT_REFUSED (or CONNECT_FAILED, after the connect timeout) if not.
   */
  #onStream(stream: IncomingStream): void {
    if (this.#http) return this.#http.serve(stream.duplex());
    const logUsers = logsAt(this.#log, 'debug');
    const socket = this.#connect(stream.meta);
    const user = (): string => formatAddress(stream.meta.remoteAddress || '?', stream.meta.remotePort);
    stream.splice(
      socket,
      (end) => {
        this.#sockets.delete(socket);
        // Told from the user's side, as the tunnel tells it: in is what the user sent.
        const seen = { ...end, bytesIn: end.bytesOut, bytesOut: end.bytesIn };
        if (socket.remoteAddress) this.#traffic.closed(this.config.channel, seen);
        if (logUsers) this.#log.debug(`user ${user()} disconnected ${describeEnd(seen)}`, { stream: stream.id, ...seen });
      },
      {
        onConnect: () => {
          this.#connecting.delete(socket);
          if (this.#down) {
            this.#down = false;
            this.#log.info(`the local service ${formatAddress(this.target.host, this.target.port)} answers again`, { event: 'service-up' });
          }
          this.#traffic.opened(this.config.channel);
          if (logUsers) this.#log.debug(`user ${user()} connected`, { stream: stream.id });
        },
        onConnectError: (err) => {
          this.#connecting.delete(socket);
          this.#serviceDown(err);
          if (logUsers) this.#log.debug(`user ${user()}: the local service is down: ${err.code ?? err.message}`, { stream: stream.id });
        },
      },
    );
  }

  /**
   * A connection to the local service for the user `meta` describes: with
   * `sendProxy`, its first bytes are a PROXY header naming the user, as the
   * tunnel saw it.
   */
  #connect(meta: OpenMeta): net.Socket {
    const { port } = this.target;
    const socket = net.connect({ host: this.#resolver.host(), port, allowHalfOpen: true, noDelay: true, lookup: this.#resolver.lookup });
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    this.#watchConnect(socket);
    if (this.config.sendProxy) socket.write(proxyHeaderFor(this.config.sendProxy, meta, this.target));
    return socket;
  }

  /**
   * Bounds a connect to the local service by `targetConnectTimeoutMs`, with
   * one timer for every connect under way instead of one each: checked every
   * tenth of the timeout, a connect gives up within 10 % of it.
   */
  #watchConnect(socket: net.Socket): void {
    this.#connecting.set(socket, performance.now() + this.config.targetConnectTimeoutMs);
    socket.once('close', () => this.#connecting.delete(socket));
    this.#connectTimer ??= setInterval(() => {
      const now = performance.now();
      for (const [s, deadline] of this.#connecting) {
        if (deadline > now) break;
        this.#connecting.delete(s);
        s.destroy(Object.assign(new Error('connect to the local service timed out'), { code: 'ETIMEDOUT' }));
      }
      if (this.#connecting.size === 0 && this.#connectTimer) {
        clearInterval(this.#connectTimer);
        this.#connectTimer = null;
      }
    }, Math.max(10, Math.ceil(this.config.targetConnectTimeoutMs / 10))).unref();
  }
}
