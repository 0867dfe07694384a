import net from 'node:net';
import { normalizeIp } from './addresses.js';

/**
 * The PROXY protocol (haproxy's v1 text and v2 binary headers): read by a
 * tunnel behind a trusted proxy, written by a server agent (`sendProxy`) so
 * that the local service learns the user's address. Pure: no sockets.
 */

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

/** Where a connection comes from and goes to, as a PROXY header tells it. */
export interface ProxyEndpoints {
  source: { address: string; port: number };
  destination: { address: string; port: number };
}

/**
 * A PROXY header for `ends`: version 1 (`PROXY TCP4 … \r\n`) or 2 (binary).
 * When the two addresses are of different families, or either is not an
 * address, it says UNKNOWN (v1) or AF_UNSPEC (v2): the service then uses
 * the connection's own addresses.
 */
export function buildProxyHeader(version: 1 | 2, ends: ProxyEndpoints | null): Buffer {
  const src = ends ? normalizeIp(ends.source.address) : '';
  const dst = ends ? normalizeIp(ends.destination.address) : '';
  const family = net.isIP(src);
  const known = family !== 0 && family === net.isIP(dst);
  if (version === 1) {
    if (!known) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
    return Buffer.from(`PROXY TCP${family} ${src} ${dst} ${ends!.source.port} ${ends!.destination.port}\r\n`, 'latin1');
  }
  const addressBytes = !known ? 0 : family === 4 ? 12 : 36;
  const out = Buffer.alloc(16 + addressBytes);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x21; // version 2, PROXY
  out[13] = !known ? 0x00 : family === 4 ? 0x11 : 0x21; // AF_UNSPEC, or AF_INET/AF_INET6 over STREAM
  out.writeUInt16BE(addressBytes, 14);
  if (!known) return out;
  const width = family === 4 ? 4 : 16;
  ipBytes(src, family).copy(out, 16);
  ipBytes(dst, family).copy(out, 16 + width);
  out.writeUInt16BE(ends!.source.port, 16 + 2 * width);
  out.writeUInt16BE(ends!.destination.port, 18 + 2 * width);
  return out;
}

/**
 * The 4 or 16 bytes of an address already checked to be of `family`, in
 * normalizeIp's spelling: IPv6 compressed, in hex groups only.
 */
function ipBytes(ip: string, family: number): Buffer {
  if (family === 4) return Buffer.from(ip.split('.').map(Number));
  const [head = '', tail] = ip.split('::');
  const groups = (text: string): string[] => (text ? text.split(':') : []);
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
