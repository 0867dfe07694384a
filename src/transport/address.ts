import net from 'node:net';
import { badOption } from '../options.js';

/** How an agent reaches the tunnel. */
export type TunnelScheme = 'tcp' | 'tls' | 'ws' | 'wss';

/** A parsed tunnel address. */
export interface TunnelAddress {
  scheme: TunnelScheme;
  host: string;
  port: number;
  /** What goes in the handshake's Host header. */
  hostHeader: string;
}

/** The seed's default port when only a host is given. */
export const DEFAULT_TUNNEL_PORT = 80;

const SCHEMES: Record<string, { scheme: TunnelScheme; port: number }> = {
  'http:': { scheme: 'tcp', port: 80 },
  'tcp:': { scheme: 'tcp', port: 80 },
  'https:': { scheme: 'tls', port: 443 },
  'ws:': { scheme: 'ws', port: 80 },
  'wss:': { scheme: 'wss', port: 443 },
};

function checkPort(name: string, text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 0 || port > 65535) badOption(name, `has a bad port: ${JSON.stringify(text)}`);
  return port;
}

/** Splits `host:port`, `[v6]:port`, `host`, a bare IPv6 address or `port`; anything else is a bad option. */
export function splitHostPort(name: string, value: string, defaultHost: string, defaultPort: number): { host: string; port: number } {
  const text = value.trim();
  if (text === '') badOption(name, 'is empty');
  if (/^\d+$/.test(text)) return { host: defaultHost, port: checkPort(name, text) };
  if (text.includes('://')) badOption(name, `takes host:port here, not a URL: ${JSON.stringify(value)}`);
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) {
    if (!net.isIPv6(v6[1]!)) badOption(name, `has a bad IPv6 address: ${JSON.stringify(value)}`);
    return { host: v6[1]!, port: v6[2] === undefined ? defaultPort : checkPort(name, v6[2]) };
  }
  if (net.isIPv6(text)) return { host: text, port: defaultPort };
  const colon = text.indexOf(':');
  const host = colon < 0 ? text : text.slice(0, colon);
  if (!/^[a-z0-9_][a-z0-9._-]*$/i.test(host)) badOption(name, `has a bad host: ${JSON.stringify(value)}`);
  if (colon < 0) return { host, port: defaultPort };
  if (text.indexOf(':', colon + 1) >= 0) badOption(name, `has a bad host: ${JSON.stringify(value)} (write an IPv6 address as [addr]:port)`);
  return { host, port: checkPort(name, text.slice(colon + 1)) };
}

/**
 * Parses a tunnel address in any of the seed's forms, `host`, `host:port` and
 * `port` (meaning localhost), or as a URL: `http://`, `https://`, `ws://`,
 * `wss://`. The URL's scheme picks the transport.
 */
export function parseTunnelAddress(value: string, name = 'tunnel'): TunnelAddress {
  const text = value.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (scheme) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      badOption(name, `is not a valid URL: ${JSON.stringify(value)}`);
    }
    const kind = SCHEMES[url.protocol];
    if (!kind) badOption(name, `has an unsupported scheme ${url.protocol} (use http, https, ws or wss)`);
    if (url.pathname !== '/' && url.pathname !== '') badOption(name, 'must not have a path');
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const port = url.port === '' ? kind.port : Number(url.port);
    return { scheme: kind.scheme, host, port, hostHeader: url.host };
  }
  const { host, port } = splitHostPort(name, text, 'localhost', DEFAULT_TUNNEL_PORT);
  const hostHeader = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  return { scheme: 'tcp', host, port, hostHeader };
}

/** Formats an address for logs: `127.0.0.1:7000`, `[::1]:7000`. */
export function formatAddress(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
