import { isIP } from 'node:net';
import { isValidChannel } from '../protocol/index.js';

/**
 * Which channel a host name reaches on the public port (docs/protocol.md
 * §2.3): the operator's routes (`shop.example.org` or `*.example.org` to a
 * channel), then the tunnel's domains (`NAME.DOMAIN` to `/NAME`, `DOMAIN`
 * to `/`). Pure: no sockets.
 */

/** The longest Host (or SNI) the tunnel reads, without its port. */
export const MAX_HOST_BYTES = 255;

/** RFC 3986 reg-name: unreserved, sub-delims and pct-encoded; a port after a colon. */
const REG_NAME = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$/;
/** A DNS name of letters, digits and hyphens (an underscore is tolerated), in labels of 1 to 63. */
const DNS_NAME = /^(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** A Host header's name (lower-case, no port, no trailing dot), or why it is not one. */
export type HostName = { name: string } | { error: string };

/**
 * Reads a Host header value (or an SNI name): an IP literal in brackets or
 * a reg-name, then an optional `:port`. The name comes back in lower case,
 * without port or trailing dot, so `Example.COM.:8080` is `example.com`.
 */
export function parseHost(value: string): HostName {
  let host = value;
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    if (end < 0 || !isIP(host.slice(1, end))) return { error: 'the Host has a malformed IP literal' };
    const rest = host.slice(end + 1);
    if (rest !== '' && !/^:\d{0,5}$/.test(rest)) return { error: 'the Host has bytes after its IP literal' };
    return { name: host.slice(0, end + 1).toLowerCase() };
  }
  const colon = host.lastIndexOf(':');
  if (colon >= 0) {
    if (!/^\d{0,5}$/.test(host.slice(colon + 1))) return { error: 'the Host has a malformed port' };
    host = host.slice(0, colon);
  }
  if (Buffer.byteLength(host) > MAX_HOST_BYTES) return { error: `the Host is longer than ${MAX_HOST_BYTES} bytes` };
  if (!REG_NAME.test(host)) return { error: 'the Host has bytes outside RFC 3986 reg-name' };
  host = host.toLowerCase();
  if (host.endsWith('.')) host = host.slice(0, -1);
  return { name: host };
}

/** Where a host name leads. */
export type Route =
  /** An operator's route: the channel is reachable by this name whether or not its agent said public. */
  | { channel: string; by: 'route' }
  /** A name under a domain: reachable only while its channel's server agent declares it public (or it is `/`). */
  | { channel: string; by: 'domain' }
  /** A name under a domain that can be no channel (`a.b.DOMAIN`, `bad!name.DOMAIN`): the 404 page. */
  | { channel: null; by: 'domain' };

/** A checked `--route` pattern and `--domain` name, or why not. */
function checkName(kind: string, name: string, wildcard: boolean): string {
  const bare = wildcard && name.startsWith('*.') ? name.slice(2) : name;
  const lower = bare.toLowerCase().replace(/\.$/, '');
  if (!DNS_NAME.test(lower) || lower.length > MAX_HOST_BYTES) throw new TypeError(`${kind} ${JSON.stringify(name)} is not a host name${wildcard ? ' (or *.name)' : ''}`);
  return lower;
}

/**
 * The routing table. A name is looked up as: an exact route; the wildcard
 * route of its parent (`*.example.org` covers one label, `a.example.org`,
 * not `a.b.example.org`); then the domains, the longest first. A name none of them covers is no one's: the caller sends it where
 * it sent every user before routing existed (`/`).
 */
export class RouteTable {
  readonly #exact = new Map<string, string>();
  readonly #wildcards = new Map<string, string>();
  readonly #domains: string[];

  /** Throws TypeError naming a bad domain, route pattern or channel. */
  constructor(domains: readonly string[], routes: Readonly<Record<string, string>>) {
    this.#domains = [...new Set(domains.map((d) => checkName('domain', d, false)))].sort((a, b) => b.length - a.length);
    for (const [pattern, channel] of Object.entries(routes)) {
      if (!isValidChannel(channel)) throw new TypeError(`route ${pattern} leads to ${JSON.stringify(channel)}, which is not a channel name`);
      const name = checkName('route', pattern, true);
      (pattern.startsWith('*.') ? this.#wildcards : this.#exact).set(name, channel);
    }
  }

  /** True when any name is routed: the public port then reads every HTTP request's Host, and every ClientHello's SNI. */
  get enabled(): boolean {
    return this.#domains.length > 0 || this.#exact.size > 0 || this.#wildcards.size > 0;
  }

  /** Where `name` (as parseHost returns it) leads, or null for a name no route or domain covers. */
  resolve(name: string): Route | null {
    const exact = this.#exact.get(name);
    if (exact !== undefined) return { channel: exact, by: 'route' };
    const dot = name.indexOf('.');
    if (dot > 0) {
      const wild = this.#wildcards.get(name.slice(dot + 1));
      if (wild !== undefined) return { channel: wild, by: 'route' };
    }
    for (const domain of this.#domains) {
      if (name === domain) return { channel: '/', by: 'domain' };
      if (name.length > domain.length + 1 && name.endsWith(domain) && name[name.length - domain.length - 1] === '.') {
        const label = name.slice(0, name.length - domain.length - 1);
        const channel = `/${label}`;
        return { channel: !label.includes('.') && isValidChannel(channel) ? channel : null, by: 'domain' };
      }
    }
    return null;
  }
}
