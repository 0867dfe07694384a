import { isIP } from 'node:net';
import type { SessionConfig } from '../mux/config.js';
import { resolveSessionConfig } from '../mux/config.js';
import { isValidChannel, MAX_HEAD_BYTES } from '../protocol/index.js';
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
  /** Limits and timers of every agent session. */
  session: Partial<SessionConfig>;
  logger: Logger;
}

export const DEFAULT_TUNNEL_CONFIG: Readonly<TunnelConfig> = Object.freeze({
  port: 7000,
  host: '127.0.0.1',
  keys: {},
  openChannels: [],
  sniffTimeoutMs: 500,
  handshakeTimeoutMs: 10_000,
  maxHeadBytes: MAX_HEAD_BYTES,
  drainTimeoutMs: 30_000,
  session: {},
  logger: silentLogger,
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
  return { ...c, keys, openChannels: open, implicitOpen };
}
