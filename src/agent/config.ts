import type { RhostError } from '../errors.js';
import type { SessionConfig } from '../mux/config.js';
import { resolveSessionConfig } from '../mux/config.js';
import { isValidChannel } from '../protocol/index.js';
import { badOption, checkInteger, mergeOptions } from '../options.js';
import { silentLogger, type Logger } from '../log.js';
import { parseTunnelAddress, type TunnelAddress } from '../transport/address.js';
import { readFileSync } from 'node:fs';
import { DEFAULT_LINK_TIMING } from './link.js';
import { parseProxyUrl } from '../transport/proxy.js';
import type { TlsClientSettings } from '../transport/tls.js';

/** Events both agents emit. */
export interface AgentEvents {
  /** Registered or subscribed on the tunnel (again, after a reconnect). */
  connected: [sessionId: string];
  /** Lost the tunnel; reconnecting. */
  disconnected: [reason: string];
  /** The tunnel refused the configuration (bad key or token, unknown channel...); the agent stopped. */
  fatal: [err: RhostError];
}

/** Options both agents share. */
export interface AgentConfig {
  /** The tunnel: `host`, `host:port`, `port`, or a URL (`http://host:port`). */
  tunnel: string;
  /** Channel to register (server agent) or subscribe to (client agent). */
  channel: string;
  /** Keepalive PING interval in ms (the seed's `--ping`). */
  pingIntervalMs: number;
  /** Bound on reaching the tunnel and completing the handshake. */
  connectTimeoutMs: number;
  /** First reconnect delay; doubles per failed attempt, with jitter. */
  reconnectMinDelayMs: number;
  /** Longest reconnect delay. */
  reconnectMaxDelayMs: number;
  /** Further session limits and timers. */
  session: Partial<SessionConfig>;
  /** CA certificates (a PEM file's path, or PEM text) trusted for https:// and wss:// tunnels, on top of the system's. */
  ca: string | undefined;
  /** Skip TLS certificate checks. Never the default; the agent warns. */
  insecure: boolean;
  /** An HTTP proxy (`http://[user:pass@]host:port`) to leave through; without it HTTPS_PROXY, HTTP_PROXY and NO_PROXY decide. */
  proxy: string | undefined;
  /** `auto`: by the URL, falling back from the raw upgrade to WebSocket when something on the way refuses it. */
  transport: 'auto' | 'raw' | 'websocket';
  /** How often the log sums up the users carried (a line per interval with traffic; each user's own lines are at debug). */
  summaryIntervalMs: number;
  logger: Logger;
}

export const DEFAULT_AGENT_CONFIG: Readonly<AgentConfig> = Object.freeze({
  tunnel: 'localhost:7000',
  channel: '/',
  pingIntervalMs: 8000,
  ...DEFAULT_LINK_TIMING,
  session: {},
  ca: undefined,
  insecure: false,
  proxy: undefined,
  transport: 'auto',
  summaryIntervalMs: 60_000,
  logger: silentLogger,
});

/** Merges and verifies the shared options. */
export function resolveAgentConfig<T extends AgentConfig>(defaults: T, partial: Partial<T> | undefined): T {
  const c = mergeOptions<T>(defaults, partial);
  if (typeof c.tunnel !== 'string') badOption('tunnel', 'must be an address');
  if (typeof c.channel !== 'string' || !isValidChannel(c.channel)) {
    badOption('channel', `must be / or /name (lower-case letters, digits, . _ -), got ${JSON.stringify(c.channel)}`);
  }
  checkInteger('pingIntervalMs', c.pingIntervalMs, 0, 3_600_000);
  resolveSessionConfig({ pingIntervalMs: c.pingIntervalMs, ...c.session });
  if (!['auto', 'raw', 'websocket'].includes(c.transport)) badOption('transport', 'must be auto, raw or websocket');
  checkInteger('summaryIntervalMs', c.summaryIntervalMs, 10, 86_400_000);
  return c;
}

/** What an agent's link needs, parsed and checked once from its config. */
export interface LinkSettings {
  address: TunnelAddress;
  tls: TlsClientSettings;
  proxy: string | undefined;
  transport: 'auto' | 'raw' | 'websocket';
}

/**
 * The link options an agent's config gives, each checked here and only
 * here: the tunnel's address, TLS checks (the CA file read now), the proxy
 * and the transport.
 */
export function linkSettings(c: AgentConfig): LinkSettings {
  const address = parseTunnelAddress(c.tunnel);
  if (c.proxy !== undefined) parseProxyUrl(c.proxy);
  let ca: string | undefined;
  if (c.ca !== undefined) {
    if (c.ca.includes('-----BEGIN')) ca = c.ca;
    else {
      try {
        ca = readFileSync(c.ca, 'utf8');
      } catch (err) {
        badOption('ca', `cannot be read: ${(err as Error).message}`);
      }
    }
  }
  if (c.insecure) {
    const { scheme } = address;
    if (scheme === 'tls' || scheme === 'wss') {
      c.logger.warn('TLS certificate checks are OFF (--insecure): anyone on the way can pose as the tunnel, read this agent’s traffic, and try to guess its key offline');
    } else {
      c.logger.warn(`--insecure changes nothing: ${c.tunnel} is not an https:// or wss:// address, so this agent’s traffic crosses the network in the clear`);
    }
  }
  return { address, tls: { ca, insecure: c.insecure }, proxy: c.proxy, transport: c.transport };
}

/** Secrets shorter than this can be guessed offline from a recorded handshake: agents warn about them. */
export const STRONG_SECRET_BYTES = 16;

/** Warns about a weak key or token: the proofs keep it off the wire, but a recorded exchange still lets a guesser try it offline. */
export function warnIfWeak(log: Logger, name: 'key' | 'token', value: string | undefined): void {
  if (value === undefined || Buffer.byteLength(value) >= STRONG_SECRET_BYTES) return;
  log.warn(
    `the ${name} is shorter than ${STRONG_SECRET_BYTES} bytes: whoever records a handshake, or poses as the tunnel, can guess a weak ${name} offline. ` +
      `Use a random one: openssl rand -base64 24`,
  );
}

/** Checks an optional credential: absent, or a non-empty string. */
export function checkSecret(name: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '') badOption(name, 'must be a non-empty string when given');
  return value;
}
