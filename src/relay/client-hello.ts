/**
 * Reads the server name (SNI) from a TLS ClientHello, incrementally and
 * within limits, without decrypting anything: the tunnel routes a TLS user
 * by it, and passes the bytes through untouched when it holds no
 * certificate for the name. Pure: no sockets.
 */

/** The most ClientHello bytes read (records and all): a real one is a few KiB, post-quantum key shares included. */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;

const RECORD_HANDSHAKE = 0x16;
const HANDSHAKE_CLIENT_HELLO = 0x01;
const EXTENSION_SERVER_NAME = 0x0000;
const NAME_TYPE_HOST = 0x00;
/** RFC 8446 §5.1: a record's plaintext is at most 2^14 bytes. */
const MAX_RECORD_BYTES = 16384;

/** What the bytes so far say: read more, a ClientHello (with its server name, if any), or not a ClientHello at all. */
export type HelloResult = { need: 'more' } | { sni: string | null } | { error: string };

const MORE: HelloResult = { need: 'more' };
const bad = (error: string): HelloResult => ({ error: `not a valid TLS ClientHello: ${error}` });

/**
 * Parses what arrived so far of a connection that starts with a TLS
 * handshake record. The ClientHello may span several records; it is
 * reassembled up to MAX_CLIENT_HELLO_BYTES. Call again with all the bytes
 * each time more arrive.
 */
export function readClientHello(bytes: Buffer): HelloResult {
  // Reassemble the handshake layer from the records.
  const pieces: Buffer[] = [];
  let have = 0;
  let need = -1;
  for (let at = 0; ; ) {
    if (bytes.length < at + 5) return bytes.length > MAX_CLIENT_HELLO_BYTES ? bad('too long') : MORE;
    if (bytes[at] !== RECORD_HANDSHAKE) return bad('a record that is not a handshake');
    if (bytes[at + 1] !== 0x03) return bad('an unknown record version');
    const length = bytes.readUInt16BE(at + 3);
    if (length === 0 || length > MAX_RECORD_BYTES) return bad('a record of a bad length');
    if (at + 5 + length > MAX_CLIENT_HELLO_BYTES) return bad('too long');
    if (bytes.length < at + 5 + length) return MORE;
    pieces.push(bytes.subarray(at + 5, at + 5 + length));
    have += length;
    at += 5 + length;
    if (need < 0 && have >= 4) {
      const head = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
      if (head[0] !== HANDSHAKE_CLIENT_HELLO) return bad('the first handshake message is not a ClientHello');
      need = 4 + head.readUIntBE(1, 3);
      if (need > MAX_CLIENT_HELLO_BYTES) return bad('too long');
    }
    if (need >= 0 && have >= need) break;
  }
  const hello = (pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces)).subarray(4, need);
  return serverName(hello);
}

/** The server_name extension of a ClientHello body (after its 4-byte header). */
function serverName(body: Buffer): HelloResult {
  let at = 2 + 32; // legacy_version, random
  if (body.length < at + 1) return bad('truncated');
  at += 1 + body[at]!; // legacy_session_id
  if (body.length < at + 2) return bad('truncated');
  const suites = body.readUInt16BE(at);
  if (suites < 2 || suites % 2) return bad('a bad cipher suite list');
  at += 2 + suites;
  if (body.length < at + 1) return bad('truncated');
  const compressions = body[at]!;
  if (compressions < 1) return bad('no compression method');
  at += 1 + compressions;
  if (at === body.length) return { sni: null }; // no extensions at all
  if (body.length < at + 2) return bad('truncated');
  const end = at + 2 + body.readUInt16BE(at);
  if (end !== body.length) return bad('extensions that do not fill the message');
  at += 2;
  let sni: string | null = null;
  const seen = new Set<number>();
  while (at < end) {
    if (end < at + 4) return bad('a truncated extension');
    const type = body.readUInt16BE(at);
    const length = body.readUInt16BE(at + 2);
    at += 4;
    if (end < at + length) return bad('a truncated extension');
    if (seen.has(type)) return bad('an extension that appears twice');
    seen.add(type);
    if (type === EXTENSION_SERVER_NAME) {
      const name = hostName(body.subarray(at, at + length));
      if (typeof name !== 'string') return name;
      sni = name;
    }
    at += length;
  }
  return { sni };
}

/** The host_name entry of a server_name extension (RFC 6066 §3), lower-cased. */
function hostName(ext: Buffer): string | HelloResult {
  if (ext.length < 2 || ext.readUInt16BE(0) !== ext.length - 2) return bad('a malformed server_name');
  let at = 2;
  let name: string | null = null;
  while (at < ext.length) {
    if (ext.length < at + 3) return bad('a malformed server_name');
    const type = ext[at]!;
    const length = ext.readUInt16BE(at + 1);
    at += 3;
    if (ext.length < at + length || length === 0) return bad('a malformed server_name');
    if (type === NAME_TYPE_HOST) {
      if (name !== null) return bad('two host names');
      const text = ext.toString('latin1', at, at + length);
      if (length > 255 || !/^[A-Za-z0-9._-]+$/.test(text)) return bad('a host name with bytes no DNS name has');
      name = text.toLowerCase().replace(/\.$/, '');
    }
    at += length;
  }
  return name ?? bad('a server_name with no host name');
}
