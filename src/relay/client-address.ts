import net from 'node:net';

/**
 * Who a connection really comes from when the tunnel sits behind a proxy:
 * the PROXY protocol (haproxy's v1 text and v2 binary headers) and
 * X-Forwarded-For, both believed only from configured proxy addresses, so
 * that per-address limits apply to the real client.
 */

/**
 * One spelling per address, for maps and limits: IPv6 in its compressed
 * lower-case form without a zone (`fe80::1%eth0` → `fe80::1`), and an
 * IPv4-mapped address in any spelling (`::ffff:1.2.3.4`,
 * `0:0:0:0:0:FFFF:102:304`) as the IPv4 address. Never throws: what is not
 * an address is returned as it came.
 */
export function normalizeIp(address: string | undefined): string {
  if (!address) return '';
  if (!address.includes(':')) return address; // IPv4: the usual case, spared the IPv6 parser
  const bare = address.split('%', 1)[0]!;
  if (!net.isIPv6(bare)) return bare;
  let compressed: string;
  try {
    compressed = new URL(`http://[${bare}]/`).hostname.slice(1, -1);
  } catch {
    return bare;
  }
  // WHATWG URLs print a mapped address as ::ffff:HHHH:HHHH
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(compressed);
  if (!mapped) return compressed;
  const [hi, lo] = [parseInt(mapped[1]!, 16), parseInt(mapped[2]!, 16)];
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

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
 * Named ranges for `trustProxy`. A PaaS router reaches the app from the
 * provider's internal network, whose addresses are not known in advance:
 * `private` names every range such a network uses (RFC 1918, carrier-grade
 * NAT as on Fly.io, link-local, IPv6 unique-local) and loopback.
 */
export const TRUST_PRESETS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['127.0.0.0/8', '::1/128', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16', 'fc00::/7', 'fe80::/10'],
});

/** Addresses and CIDR ranges (or names of TRUST_PRESETS) of proxies whose word about the client is believed. */
export class TrustedProxies {
  readonly #list = new net.BlockList();
  readonly size: number;

  constructor(entries: readonly string[]) {
    for (const entry of entries.flatMap((e) => TRUST_PRESETS[e] ?? [e])) {
      const [address, prefix] = entry.split('/');
      const type = net.isIPv6(address!) ? 'ipv6' : 'ipv4';
      if (!net.isIP(address!)) throw new TypeError(`not an address or CIDR range: ${entry}`);
      if (prefix === undefined) this.#list.addAddress(address!, type);
      else this.#list.addSubnet(address!, Number(prefix), type);
    }
    this.size = entries.length;
  }

  has(ip: string): boolean {
    if (this.size === 0 || !ip) return false;
    return this.#list.check(ip, net.isIPv6(ip) ? 'ipv6' : 'ipv4');
  }
}

/**
 * The client behind an X-Forwarded-For chain: the right-most address that is
 * not a trusted proxy (what a trusted proxy appended is believed; what the
 * client wrote itself is not).
 */
export function forwardedClient(header: string | undefined, peer: string, trusted: TrustedProxies): string {
  if (!header || !trusted.has(peer)) return peer;
  const hops = header.split(',').map((h) => normalizeIp(h.trim()));
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i]!;
    if (!net.isIP(hop)) return peer;
    if (!trusted.has(hop)) return hop;
  }
  return hops[0] ?? peer;
}

/** What a PROXY header said: the client's address, or none (a health check, `UNKNOWN`, `LOCAL`). */
export type ProxyHeader = { length: number; source: { address: string; port: number } | null };

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_MAX_BYTES = 107;
const V2_MAX_BYTES = 16 + 65535;

function invalid(why: string): never {
  throw new RangeError(`bad PROXY header: ${why}`);
}

/**
 * Parses a PROXY protocol header at the start of `bytes`. Returns null while
 * more bytes are needed; throws RangeError when the bytes are not one.
 */
export function parseProxyHeader(bytes: Buffer): ProxyHeader | null {
  if (bytes.length === 0) return null;
  if (bytes[0] === 0x0d) {
    const n = Math.min(bytes.length, V2_SIGNATURE.length);
    if (!bytes.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) invalid('neither v1 nor v2');
    if (bytes.length < 16) return null;
    const version = bytes[12]! >> 4;
    const command = bytes[12]! & 0x0f;
    const family = bytes[13]!;
    const length = 16 + bytes.readUInt16BE(14);
    if (version !== 2 || command > 1) invalid('unsupported version or command');
    if (length > V2_MAX_BYTES) invalid('too long');
    if (bytes.length < length) return null;
    if (command === 0) return { length, source: null }; // LOCAL: the proxy's own check
    if (family === 0x11 && length >= 16 + 12) {
      const a = bytes.subarray(16, 20);
      return { length, source: { address: `${a[0]}.${a[1]}.${a[2]}.${a[3]}`, port: bytes.readUInt16BE(24) } };
    }
    if (family === 0x21 && length >= 16 + 36) {
      const words: string[] = [];
      for (let i = 0; i < 16; i += 2) words.push(bytes.readUInt16BE(16 + i).toString(16));
      return { length, source: { address: normalizeIp(words.join(':')), port: bytes.readUInt16BE(48) } };
    }
    return { length, source: null };
  }
  const prefix = 'PROXY ';
  const n = Math.min(bytes.length, prefix.length);
  if (bytes.toString('latin1', 0, n) !== prefix.slice(0, n)) invalid('neither v1 nor v2');
  const end = bytes.indexOf('\r\n', 0, 'latin1');
  if (end < 0) {
    if (bytes.length > V1_MAX_BYTES) invalid('v1 line too long');
    return null;
  }
  const parts = bytes.toString('latin1', 0, end).split(' ');
  if (parts[1] === 'UNKNOWN') return { length: end + 2, source: null };
  if ((parts[1] !== 'TCP4' && parts[1] !== 'TCP6') || parts.length !== 6) invalid('v1 line malformed');
  const address = parts[2]!;
  const port = Number(parts[4]);
  if (!net.isIP(address) || !Number.isInteger(port) || port < 0 || port > 65535) invalid('v1 address malformed');
  return { length: end + 2, source: { address: normalizeIp(address), port } };
}
