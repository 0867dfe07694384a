import net from 'node:net';

/**
 * Addresses and CIDR ranges as rhost reads them: in `trustProxy`, and in a
 * service's allow and deny lists (docs/protocol.md §3.9). Pure: no sockets.
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
 * Named ranges. A PaaS router reaches the app from the provider's internal
 * network, whose addresses are not known in advance: `private` names every
 * range such a network uses (RFC 1918, carrier-grade NAT as on Fly.io,
 * link-local, IPv6 unique-local) and loopback.
 */
export const ADDRESS_PRESETS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  loopback: ['127.0.0.0/8', '::1/128'],
  private: ['127.0.0.0/8', '::1/128', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16', 'fc00::/7', 'fe80::/10'],
});

/**
 * Why `entry` is not an address, a CIDR range or a preset (a phrase that
 * starts with the entry, to follow "has"), or null when it is one. An address with a port is refused, saying so, and so is an IPv6
 * address that reads as one (`::1:8080` is a valid address, but not what
 * anyone meant): such an entry would match nothing, silently.
 */
export function addressEntryProblem(entry: string): string | null {
  if (Object.hasOwn(ADDRESS_PRESETS, entry)) return null;
  const withPort = (address: string): string => `${JSON.stringify(entry)}, an address with a port: addresses match whatever the port; write ${address}`;
  const bracketed = /^\[([0-9a-f:.]+)\]:\d+$/i.exec(entry);
  if (bracketed) return withPort(bracketed[1]!);
  const [address, prefix, extra] = entry.split('/');
  const family = net.isIP(address ?? '');
  const bits = family === 6 ? 128 : 32;
  if (!family || extra !== undefined || (prefix !== undefined && !(/^\d{1,3}$/.test(prefix) && Number(prefix) <= bits))) {
    const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(entry);
    if (v4) return withPort(v4[1]!);
    return `${JSON.stringify(entry)}, which is not an address, a CIDR range, loopback or private`;
  }
  const colon = entry.lastIndexOf(':');
  if (prefix === undefined && family === 6 && /^\d+$/.test(entry.slice(colon + 1)) && net.isIP(entry.slice(0, colon)) && entry.includes('::')) {
    return (
      `${JSON.stringify(entry)}, which reads as ${entry.slice(0, colon)} with port ${entry.slice(colon + 1)}: write the address alone ` +
      `(addresses match whatever the port), or spell the IPv6 address out in full if that is what you mean`
    );
  }
  return null;
}

/** A set of addresses and CIDR ranges (and names of ADDRESS_PRESETS). */
export class AddressSet {
  readonly #list = new net.BlockList();
  /** The entries as given. */
  readonly entries: readonly string[];

  /** Throws TypeError naming the first entry that is not an address, a range or a preset. */
  constructor(entries: readonly string[]) {
    this.entries = entries;
    for (const entry of entries.flatMap((e) => ADDRESS_PRESETS[e] ?? [e])) {
      const problem = addressEntryProblem(entry);
      if (problem) throw new TypeError(`the list has ${problem}`);
      const [address, prefix] = entry.split('/');
      const type = net.isIPv6(address!) ? 'ipv6' : 'ipv4';
      if (prefix === undefined) this.#list.addAddress(address!, type);
      else this.#list.addSubnet(address!, Number(prefix), type);
    }
  }

  get size(): number {
    return this.entries.length;
  }

  has(ip: string): boolean {
    if (this.entries.length === 0 || !ip) return false;
    const family = net.isIP(ip);
    return family !== 0 && this.#list.check(ip, family === 6 ? 'ipv6' : 'ipv4');
  }
}
