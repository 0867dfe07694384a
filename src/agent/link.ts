import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { RhostError } from '../errors.js';
import type { Logger } from '../log.js';
import { Session } from '../mux/session.js';
import type { SessionConfig } from '../mux/config.js';
import { HandshakeError, POLICY_VERSION, Role, type AgentRole, type ServicePolicy } from '../protocol/index.js';
import { formatAddress, type TunnelAddress } from '../transport/address.js';
import { dialTunnel, isFatalRefusal, type Dialed, type TransportKind } from '../transport/dial.js';
import { chooseProxy } from '../transport/proxy.js';
import type { TlsClientSettings } from '../transport/tls.js';
import { checkInteger } from '../options.js';
import { USER_AGENT } from '../version.js';

/** How an agent keeps its session to the tunnel. */
export interface LinkOptions {
  address: TunnelAddress;
  role: AgentRole;
  channel: string;
  key?: string | undefined;
  token?: string | undefined;
  /** A server agent's policy, for the tunnel to enforce (protocol 3). */
  policy?: ServicePolicy | undefined;
  session: Partial<SessionConfig>;
  /** Bound on TCP connect plus handshake. */
  connectTimeoutMs: number;
  /** First reconnect delay; doubles per failed attempt, with jitter. */
  reconnectMinDelayMs: number;
  /**
   * Longest reconnect delay. Small by default (1.5 s), so that agents are
   * back within 2 s of a restarted tunnel listening again, handshake included.
   */
  reconnectMaxDelayMs: number;
  /** Certificate checks for https:// and wss:// tunnels. */
  tls?: TlsClientSettings;
  /** An HTTP proxy to leave through; without it HTTPS_PROXY, HTTP_PROXY and NO_PROXY decide. */
  proxy?: string | undefined;
  /**
   * `auto` (the default): ws:// and wss:// use WebSocket; otherwise the raw
   * upgrade is tried first, and when something on the way refuses it, the
   * agent falls back to WebSocket and keeps using it for its reconnects.
   */
  transport?: 'auto' | TransportKind;
  logger: Logger;
}

/**
 * Said when neither the raw upgrade nor WebSocket reached the tunnel, but
 * something answered both: most often a reverse proxy that keeps its
 * connections to the tunnel open and reuses them, so the request lands on
 * a connection the tunnel already gave to the app behind `/`.
 */
export const REUSED_CONNECTION_HINT =
  'if a reverse proxy is in front of the tunnel, it seems to reuse its connections to it (upstream keepalive), so this request reached ' +
  'the app behind / instead of the tunnel; give /.rhost its own route without keepalive ' +
  '(nginx: a separate `location = /.rhost` whose upstream has no `keepalive`; haproxy: `http-reuse never`): see the README, "Behind a reverse proxy"';

/**
 * What a router answers when it cannot reach the tunnel behind it (a PaaS
 * during a deploy, a tunnel restarting). It says nothing about which
 * upgrades the router passes, so it must not make an agent give up the raw
 * upgrade for good.
 */
const GATEWAY_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

export const DEFAULT_LINK_TIMING = Object.freeze({ connectTimeoutMs: 10_000, reconnectMinDelayMs: 100, reconnectMaxDelayMs: 1500 });

/** Exponential backoff with jitter: between half and all of min × 2^attempt, capped. */
export function reconnectDelay(attempt: number, minMs: number, maxMs: number, random = Math.random): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling * (0.5 + random() * 0.5));
}

export interface LinkEvents {
  /** A session to the tunnel is up. */
  up: [session: Session];
  /** The current session is gone (closed, or the tunnel announced GOAWAY); reconnecting follows. */
  down: [session: Session, reason: string];
  /** The tunnel refused the agent's configuration; the link stopped. */
  fatal: [err: RhostError];
}

/**
 * Keeps one agent session to the tunnel: dials, performs the handshake,
 * and when the session ends or the tunnel announces GOAWAY, dials again with
 * exponential backoff and jitter. A session that got GOAWAY drains on its own
 * while the next one takes new streams. Refusals that retrying cannot fix
 * (bad key, bad token, unknown channel, version) stop the link: `fatal`.
 */
export class AgentLink extends EventEmitter<LinkEvents> {
  readonly address: TunnelAddress;
  readonly #options: LinkOptions;
  readonly #log: Logger;
  readonly #sessions = new Set<Session>();
  #current: Session | null = null;
  #closed = false;
  #wake = new AbortController();
  #running: Promise<void> | null = null;
  #firstUp: { resolve: () => void; reject: (err: Error) => void; promise: Promise<void> };
  #kind: TransportKind;

  constructor(options: LinkOptions) {
    super();
    this.address = options.address;
    checkInteger('connectTimeoutMs', options.connectTimeoutMs, 1, 600_000);
    checkInteger('reconnectMinDelayMs', options.reconnectMinDelayMs, 1, 600_000);
    checkInteger('reconnectMaxDelayMs', options.reconnectMaxDelayMs, options.reconnectMinDelayMs, 3_600_000);
    this.#options = options;
    this.#log = options.logger;
    const forced = options.transport ?? 'auto';
    this.#kind = forced !== 'auto' ? forced : this.address.scheme === 'ws' || this.address.scheme === 'wss' ? 'websocket' : 'raw';
    let resolve!: () => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    promise.catch(() => {});
    this.#firstUp = { resolve, reject, promise };
  }

  /** The session new streams should use, or null while reconnecting. */
  get session(): Session | null {
    return this.#current;
  }

  /** Starts the link; resolves once the first session is up, rejects on a fatal refusal. */
  start(): Promise<void> {
    this.#running ??= this.#run();
    return this.#firstUp.promise;
  }

  /** Stops reconnecting and closes every session gracefully (GOAWAY, then drain up to `drainTimeoutMs`). */
  async close(drainTimeoutMs?: number): Promise<void> {
    this.#closed = true;
    this.#wake.abort();
    this.#firstUp.reject(new RhostError('ERR_RHOST_CLOSED', 'the agent was closed'));
    await Promise.all([...this.#sessions].map((s) => s.close(drainTimeoutMs)));
    await this.#running;
  }

  async #run(): Promise<void> {
    const where = formatAddress(this.address.host, this.address.port);
    let attempt = 0;
    let lastFailure = '';
    let retryAfterMs = 0;
    let everUp = false;
    while (!this.#closed) {
      try {
        const dialed = await this.#dial();
        if (this.#closed) {
          dialed.transport.destroy();
          break;
        }
        const session = new Session(dialed.transport, { ...this.#options.session, role: Role.Initiator, id: dialed.sessionId, head: dialed.head });
        if (!everUp) this.#log.info(`connected to the tunnel at ${where} over ${this.#describe(dialed.kind)}`, { event: 'connected', transport: dialed.kind, tls: this.#secure });
        else if (attempt > 0) this.#log.info(`reconnected to the tunnel at ${where} over ${this.#describe(dialed.kind)} after ${attempt} attempt${attempt === 1 ? '' : 's'}`, { event: 'connected', transport: dialed.kind, tls: this.#secure, attempts: attempt });
        if (!everUp && this.#options.policy?.public && dialed.version < POLICY_VERSION) {
          this.#log.warn(`the tunnel speaks protocol ${dialed.version}: it cannot make ${this.#options.channel} public by name (--public); upgrade the tunnel`);
        }
        everUp = true;
        attempt = 0;
        lastFailure = '';
        await this.#hold(session);
      } catch (caught) {
        // Anything but an RhostError is a bug: logged with its stack, and the agent stops rather than loop on it.
        const err = caught instanceof RhostError ? caught : new RhostError('ERR_RHOST_BUG', `the link to the tunnel failed unexpectedly: ${(caught as Error).message}`, { cause: caught });
        if (err.code === 'ERR_RHOST_BUG') this.#log.error(`unexpected exception (a bug in rhost; please report it): ${(caught as Error).stack ?? String(caught)}`);
        // A certificate that fails at the very start is a configuration to fix; later, a renewal to wait out.
        if (isFatalRefusal(err.code) || (err.code === 'ERR_RHOST_TLS' && !everUp)) {
          this.#closed = true;
          this.#log.error(err.message, { code: err.code });
          this.#firstUp.reject(err);
          this.emit('fatal', err);
          break;
        }
        if (err.message !== lastFailure) this.#log.warn(`${this.#explain(err)}; retrying`, { event: 'retrying', code: err.code });
        else this.#log.debug(`${err.message}; retrying`, { event: 'retrying', code: err.code });
        lastFailure = err.message;
        retryAfterMs = err instanceof HandshakeError ? err.retryAfterMs : 0; // a 429 says how long to wait
      }
      if (this.#closed) break;
      const delay = Math.max(retryAfterMs, reconnectDelay(attempt++, this.#options.reconnectMinDelayMs, this.#options.reconnectMaxDelayMs));
      retryAfterMs = 0;
      await sleep(delay, undefined, { signal: this.#wake.signal }).catch(() => {});
    }
  }

  /**
   * One dial, with the transport remembered from before. In auto mode a raw
   * upgrade that something on the way refused is retried at once as a
   * WebSocket; if that works, WebSocket is used from then on. A gateway
   * error (502, 503, 504) is not a refusal: WebSocket may carry this
   * session, but the next dial tries the raw upgrade again.
   */
  async #dial(): Promise<Dialed> {
    const options = {
      address: this.address,
      hello: { role: this.#options.role, channel: this.#options.channel, key: this.#options.key, token: this.#options.token, policy: this.#options.policy },
      userAgent: USER_AGENT,
      timeoutMs: this.#options.connectTimeoutMs,
      signal: this.#wake.signal,
      tls: this.#options.tls ?? {},
      proxy: this.#options.proxy,
    };
    try {
      return await dialTunnel({ ...options, transport: this.#kind });
    } catch (err) {
      const auto = (this.#options.transport ?? 'auto') === 'auto';
      // Something on the way answered for the tunnel, or stripped the upgrade so that the tunnel saw a plain GET.
      const refusedOnTheWay = err instanceof RhostError && (err.code === 'ERR_RHOST_UNEXPECTED_RESPONSE' || err.code === 'ERR_RHOST_BAD_HANDSHAKE');
      if (!auto || this.#kind !== 'raw' || !refusedOnTheWay) throw err;
      const dialed = await dialTunnel({ ...options, transport: 'websocket' });
      if (err instanceof HandshakeError && GATEWAY_STATUSES.has(err.status)) {
        this.#log.warn(`${err.message}; WebSocket got through this time, and the next reconnect tries the raw upgrade again`);
        return dialed;
      }
      this.#log.warn(`${err.message}; the way to the tunnel passes WebSocket upgrades only, so this agent uses WebSocket from now on`);
      this.#kind = 'websocket';
      return dialed;
    }
  }

  /** A failure as the operator should read it: a client agent waiting for its server agent is not an error. */
  #explain(err: RhostError): string {
    if (err.code === 'ERR_RHOST_NO_SERVER' && this.#options.role === 'client') {
      return `waiting for a server agent on ${this.#options.channel}: the tunnel has none that admits client agents yet`;
    }
    // Something answered that is not the tunnel: say what usually causes that.
    if (err.code === 'ERR_RHOST_UNEXPECTED_RESPONSE') return `${err.message}; ${REUSED_CONNECTION_HINT}`;
    return err.message;
  }

  get #secure(): boolean {
    return this.address.scheme === 'tls' || this.address.scheme === 'wss';
  }

  #describe(kind: TransportKind): string {
    const secure = this.#secure;
    const via = chooseProxy(this.address.host, this.address.port, secure, this.#options.proxy, process.env);
    const proxied = via ? ` through the proxy ${via.url.host}` : '';
    return `${kind === 'websocket' ? 'WebSocket' : 'the raw upgrade'}${secure ? ' with TLS' : ''}${proxied}`;
  }

  /** Serves on `session` until it closes or the tunnel says GOAWAY. */
  async #hold(session: Session): Promise<void> {
    this.#sessions.add(session);
    session.once('close', () => this.#sessions.delete(session));
    this.#current = session;
    this.emit('up', session);
    this.#firstUp.resolve();
    const reason = await new Promise<string>((resolve) => {
      session.once('close', (err) => resolve(err ? err.message : 'the session closed'));
      session.once('goaway', (_code, why) => resolve(`the tunnel is going away${why ? `: ${why}` : ''}`));
    });
    if (this.#current === session) this.#current = null;
    if (!this.#closed) {
      this.#log.warn(`lost the tunnel session: ${reason}; reconnecting`, { event: 'disconnected' });
      this.emit('down', session, reason);
    }
  }
}
