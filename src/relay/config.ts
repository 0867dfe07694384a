import { isIP } from 'node:net';
import type { SessionConfig } from '../mux/config.js';
import { resolveSessionConfig } from '../mux/config.js';
import { addressEntryProblem, DEFAULT_ITERATIONS, isValidChannel, MAX_HEAD_BYTES, MAX_ITERATIONS, MIN_ITERATIONS, policyListProblem } from '../protocol/index.js';
import type { OperatorPolicy } from './policy.js';
import { RouteTable } from './routes.js';
import { badOption, checkInteger, mergeOptions } from '../options.js';
import { silentLogger, type Logger } from '../log.js';

/** Options of a tunnel. */
export interface TunnelConfig {
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Address to listen on. Loopback by default: exposing the tunnel is a choice. */
  host: string;
  /**
   * Channel keys, e.g. `{ '/': 'k1', '/ssh': 'k2' }`. Only configured channels
   * exist; a server agent must present the channel's key to register it.
   */
  keys: Record<string, string>;
  /**
   * Channels anyone who reaches the tunnel may register without a key. Only
   * what is listed here is open, and the tunnel warns about each at start.
   * A tunnel on loopback with no keys at all opens `/` by itself.
   */
  openChannels: string[];
  /** How long a user that sends nothing is waited for before it is carried anyway (server-speaks-first protocols). */
  sniffTimeoutMs: number;
  /** Time allowed for an agent's handshake head (408 beyond). */
  handshakeTimeoutMs: number;
  /** Bytes allowed for an agent's handshake head (431 beyond). */
  maxHeadBytes: number;
  /** On close(), how long sessions may drain before their streams are reset. */
  drainTimeoutMs: number;
  /**
   * Connections not yet classified or still in their handshake, overall.
   * Past it, the oldest such connection is dropped to make room.
   */
  maxPendingHandshakes: number;
  /** Pending connections per source address; past it, new ones from there are refused. */
  maxPendingHandshakesPerIp: number;
  /** Anonymous users (the public port's) carried at once, over all channels. */
  maxUsers: number;
  /** Anonymous users of one channel. */
  maxUsersPerChannel: number;
  /** Anonymous users per source address. */
  maxUsersPerIp: number;
  /**
   * Streams from client agents carried at once: a pool of their own, so
   * that anonymous users can never starve agents that proved a token.
   */
  maxClientStreams: number;
  /**
   * When an anonymous pool is full, the user that has sent and received
   * nothing for longest is closed to make room, if silent this long; 0
   * never evicts.
   */
  userEvictIdleMs: number;
  /** Client agents subscribed to one channel. */
  maxClientsPerChannel: number;
  /** Client agents on one channel from one address. */
  maxClientsPerIp: number;
  /**
   * New connections per second from one address (a token bucket), counted
   * before anything is read; past it a connection is closed at once. 0: no
   * limit. A trusted proxy is counted by the client its PROXY header names.
   */
  maxConnRatePerIp: number;
  /** How many new connections one address may open at once above that rate. */
  connBurstPerIp: number;
  /**
   * Accept agents of the retired protocol 1, which send the key and token
   * in the request: whatever answers it, a proxy's app behind `/` included,
   * learns them. Off by default; the tunnel warns when on.
   */
  allowLegacyAuth: boolean;
  /** PBKDF2 iterations agents must spend on a key or token: a weak secret then costs a guesser that much per try. */
  authIterations: number;
  /**
   * Memory for data held for slow readers, across all sessions. Window
   * growth is drawn from it, and past it new users are turned away (503).
   */
  maxBufferedBytes: number;
  /** A failed key or token locks its address out this long, doubling per failure... */
  authLockoutMs: number;
  /** ...up to this long. */
  authLockoutMaxMs: number;
  /**
   * How often the log sums up what it does not write line by line: users
   * per channel, refused handshakes, failed keys and tokens (each only when
   * there was any).
   */
  summaryIntervalMs: number;
  /**
   * Proxies believed about the client's address (X-Forwarded-For, PROXY
   * protocol): addresses, CIDR ranges, or `loopback` and `private` (every
   * internal range, for a PaaS router).
   */
  trustProxy: string[];
  /** Connections from trusted proxies start with a PROXY protocol header (v1 or v2). */
  proxyProtocol: boolean;
  /** A user connection with no bytes either way for this long is closed; 0 never closes it. */
  userIdleTimeoutMs: number;
  /**
   * A certificate chain and key (PEM file paths) make the one port serve TLS
   * too: connections whose first byte starts a TLS handshake are decrypted,
   * the rest stay plain. Both files are reloaded when they change on disk.
   */
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  /** How often the certificate files are checked for a change. */
  tlsReloadIntervalMs: number;
  /**
   * Domains whose names reach channels by the Host header and TLS SNI:
   * `NAME.DOMAIN` reaches `/NAME` while its server agent declares it
   * public, `DOMAIN` reaches `/`. Other channels stay reachable only
   * through client agents.
   */
  domains: string[];
  /**
   * Host names the operator gives to channels: `shop.example.org` (exact)
   * or `*.example.org` (any one label under it), e.g.
   * `{ 'shop.example.org': '/app' }`. A routed channel answers by that name
   * whether or not its agent declared it public.
   */
  routes: Record<string, string>;
  /** Allow and deny lists per channel (addresses, CIDR ranges): they combine with the server agent's, as the stricter of both. */
  channelPolicies: Record<string, OperatorPolicy>;
  /** Limits and timers of every agent session. */
  session: Partial<SessionConfig>;
  logger: Logger;
  /** The clock lockouts and user silence are measured by (ms); a test can give one it moves by hand. */
  now: () => number;
}

export const DEFAULT_TUNNEL_CONFIG: Readonly<TunnelConfig> = Object.freeze({
  domains: [],
  routes: {},
  channelPolicies: {},
  port: 7000,
  host: '127.0.0.1',
  keys: {},
  openChannels: [],
  sniffTimeoutMs: 500,
  handshakeTimeoutMs: 10_000,
  maxHeadBytes: MAX_HEAD_BYTES,
  drainTimeoutMs: 30_000,
  maxPendingHandshakes: 1024,
  maxPendingHandshakesPerIp: 256,
  maxUsers: 4096,
  maxUsersPerChannel: 4096,
  maxUsersPerIp: 256,
  maxClientStreams: 4096,
  userEvictIdleMs: 30_000,
  maxClientsPerChannel: 64,
  maxClientsPerIp: 16,
  maxConnRatePerIp: 100,
  connBurstPerIp: 1000,
  allowLegacyAuth: false,
  authIterations: DEFAULT_ITERATIONS,
  maxBufferedBytes: 128 * 1024 * 1024,
  authLockoutMs: 1000,
  authLockoutMaxMs: 300_000,
  summaryIntervalMs: 60_000,
  trustProxy: [],
  proxyProtocol: false,
  userIdleTimeoutMs: 0,
  tlsCert: undefined,
  tlsKey: undefined,
  tlsReloadIntervalMs: 5000,
  session: {},
  logger: silentLogger,
  now: Date.now,
});

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '::ffff:127.0.0.1';
}

/** A verified tunnel config, with the implicit open channel (if any) made explicit. */
export type ResolvedTunnelConfig = TunnelConfig & { implicitOpen: boolean };

export function resolveTunnelConfig(partial?: Partial<TunnelConfig>): ResolvedTunnelConfig {
  const c = mergeOptions<TunnelConfig>(DEFAULT_TUNNEL_CONFIG, partial);
  checkInteger('port', c.port, 0, 65535);
  if (typeof c.host !== 'string' || c.host === '') badOption('host', 'must be an address to listen on');
  checkInteger('sniffTimeoutMs', c.sniffTimeoutMs, 1, 60_000);
  checkInteger('handshakeTimeoutMs', c.handshakeTimeoutMs, 1, 300_000);
  checkInteger('maxHeadBytes', c.maxHeadBytes, 512, 1024 * 1024);
  checkInteger('drainTimeoutMs', c.drainTimeoutMs, 0, 3_600_000);
  checkInteger('maxPendingHandshakes', c.maxPendingHandshakes, 1, 1_000_000);
  checkInteger('maxPendingHandshakesPerIp', c.maxPendingHandshakesPerIp, 1, 1_000_000);
  checkInteger('maxUsers', c.maxUsers, 1, 10_000_000);
  checkInteger('maxUsersPerChannel', c.maxUsersPerChannel, 1, 10_000_000);
  checkInteger('maxUsersPerIp', c.maxUsersPerIp, 1, 10_000_000);
  checkInteger('maxClientStreams', c.maxClientStreams, 1, 10_000_000);
  checkInteger('userEvictIdleMs', c.userEvictIdleMs, 0, 86_400_000);
  checkInteger('maxClientsPerChannel', c.maxClientsPerChannel, 1, 1_000_000);
  checkInteger('maxClientsPerIp', c.maxClientsPerIp, 1, 1_000_000);
  checkInteger('maxConnRatePerIp', c.maxConnRatePerIp, 0, 10_000_000);
  checkInteger('connBurstPerIp', c.connBurstPerIp, 1, 10_000_000);
  if (typeof c.allowLegacyAuth !== 'boolean') badOption('allowLegacyAuth', 'must be true or false');
  checkInteger('authIterations', c.authIterations, MIN_ITERATIONS, MAX_ITERATIONS);
  checkInteger('maxBufferedBytes', c.maxBufferedBytes, 0, 2 ** 40);
  checkInteger('authLockoutMs', c.authLockoutMs, 0, 86_400_000);
  checkInteger('authLockoutMaxMs', c.authLockoutMaxMs, c.authLockoutMs, 86_400_000);
  checkInteger('summaryIntervalMs', c.summaryIntervalMs, 10, 86_400_000);
  if (typeof c.now !== 'function') badOption('now', 'must be a function returning the time in ms');
  checkInteger('userIdleTimeoutMs', c.userIdleTimeoutMs, 0, 86_400_000);
  if (!Array.isArray(c.trustProxy)) badOption('trustProxy', 'must be a list of addresses or CIDR ranges');
  for (const entry of c.trustProxy) {
    const problem = addressEntryProblem(String(entry));
    if (problem) badOption('trustProxy', `has ${problem}`);
  }
  if (c.proxyProtocol && c.trustProxy.length === 0) badOption('proxyProtocol', 'needs trustProxy: the addresses of the proxies that send the header');
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) badOption(c.tlsCert ? 'tlsKey' : 'tlsCert', 'is needed too: TLS takes a certificate and its key');
  checkInteger('tlsReloadIntervalMs', c.tlsReloadIntervalMs, 10, 3_600_000);
  resolveSessionConfig(c.session);
  const keys: Record<string, string> = {};
  for (const [channel, key] of Object.entries(c.keys ?? {})) {
    if (!isValidChannel(channel)) badOption('keys', `names an invalid channel ${JSON.stringify(channel)}`);
    if (typeof key !== 'string' || key === '') {
      badOption('keys', `has an empty key for ${channel}; to run ${channel} without a key, list it in openChannels (--open-channel ${channel})`);
    }
    keys[channel] = key;
  }
  const open = [...new Set(c.openChannels ?? [])];
  for (const channel of open) {
    if (!isValidChannel(channel)) badOption('openChannels', `names an invalid channel ${JSON.stringify(channel)}`);
    if (channel in keys) badOption('openChannels', `lists ${channel}, which also has a key`);
  }
  let implicitOpen = false;
  if (Object.keys(keys).length === 0 && open.length === 0) {
    if (!isLoopback(c.host)) {
      badOption(
        'keys',
        `are needed: the tunnel would listen on ${c.host}, reachable from other machines, with no channel anyone may register. ` +
          `Set a key (KEYS=<secret> for channel /, or KEYS='{"/":"<secret>","/ssh":"<secret>"}'), ` +
          `or open a channel to everyone explicitly with --open-channel /`,
      );
    }
    open.push('/');
    implicitOpen = true;
  }
  if (!Array.isArray(c.domains) || c.domains.some((d) => typeof d !== 'string')) badOption('domains', 'must be a list of host names');
  if (!c.routes || typeof c.routes !== 'object') badOption('routes', 'must map host names to channels');
  try {
    new RouteTable(c.domains, c.routes);
  } catch (err) {
    const message = (err as Error).message;
    badOption(message.startsWith('domain') ? 'domains' : 'routes', message.replace(/^(domain|route) /, 'has '));
  }
  const known = new Set([...Object.keys(keys), ...open]);
  for (const [host, channel] of Object.entries(c.routes)) {
    if (!known.has(channel)) badOption('routes', `gives ${JSON.stringify(host)} to ${JSON.stringify(channel)}, which is not a channel of this tunnel (it has no key and is not open)`);
  }
  for (const [channel, policy] of Object.entries(c.channelPolicies ?? {})) {
    if (!known.has(channel)) badOption('channelPolicies', `names ${JSON.stringify(channel)}, which is not a channel of this tunnel`);
    for (const name of ['allow', 'deny'] as const) {
      const list = policy?.[name] ?? [];
      const problem = Array.isArray(list) ? policyListProblem(name, list) : `${name} must be a list`;
      if (problem) badOption('channelPolicies', `for ${channel}: ${problem}`);
    }
  }
  return { ...c, keys, openChannels: open, implicitOpen };
}
