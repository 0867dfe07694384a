import net from 'node:net';
import { normalizeIp, type AddressSet } from '../protocol/index.js';

/**
 * Who a connection really comes from when the tunnel sits behind a proxy:
 * the PROXY protocol (haproxy's v1 text and v2 binary headers) and
 * X-Forwarded-For, both believed only from configured proxy addresses, so
 * that per-address limits apply to the real client.
 */

/**
 * The key per-address limits and lockouts count under: an IPv4 address as
 * it is, an IPv6 address by its /64 (a client owns a whole /64, so counting
 * single addresses would let it walk around every limit).
 */
export function limitKey(ip: string): string {
  if (!ip.includes(':') || !net.isIPv6(ip)) return ip;
  // Expand `::` to its zero groups, then keep the first four groups.
  const [head = '', tail] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/**
 * The network an address belongs to for fairness between crowds: an IPv4
 * address by its /24, an IPv6 address by its /64. One party usually holds
 * a whole group, so a flood from it is charged to its group.
 */
export function addressGroup(ip: string): string {
  if (ip.includes(':')) return limitKey(ip);
  const dot = ip.lastIndexOf('.');
  return dot < 0 ? ip : `${ip.slice(0, dot)}.0/24`;
}

/**
 * The client behind an X-Forwarded-For chain: the right-most address that is
 * not a trusted proxy (what a trusted proxy appended is believed; what the
 * client wrote itself is not).
 */
export function forwardedClient(header: string | undefined, peer: string, trusted: AddressSet): string {
  if (!header || !trusted.has(peer)) return peer;
  const hops = header.split(',').map((h) => normalizeIp(h.trim()));
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (!net.isIP(hop)) return peer;
    if (!trusted.has(hop)) return hop;
  }
  return hops[0] ?? peer;
}
