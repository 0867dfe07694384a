import { RhostError, type RhostErrorCode } from '../errors.js';
import { SUPPORTED_VERSIONS } from './constants.js';

/**
 * The agent handshake: an HTTP/1.1 Upgrade request on the tunnel's one port.
 * See docs/protocol.md "Handshake". Pure string work, no sockets.
 */

/** Request target reserved for agents. Users' requests to it are refused, never forwarded. */
export const AGENT_PATH = '/.rhost';

/** The token in `Upgrade:` that asks for the raw rhost framing. */
export const UPGRADE_TOKEN = 'rhost';

/** What a connection must start with to be classified as an agent. */
const AGENT_MARKER = Buffer.from(`GET ${AGENT_PATH}`, 'latin1');

/** Default bound on the bytes of a handshake head (request line and headers). */
export const MAX_HEAD_BYTES = 8 * 1024;

/** Longest channel name, in bytes. */
export const MAX_CHANNEL_BYTES = 128;

/** An agent's role in the handshake. */
export type AgentRole = 'server' | 'client';

/** What an agent asks for. */
export interface AgentHello {
  role: AgentRole;
  /** Channel to register (server) or subscribe to (client). */
  channel: string;
  /** Protocol versions the agent speaks, newest first. */
  versions: readonly number[];
  /** Server agents: the channel's key. */
  key?: string | undefined;
  /** Server agents: the token clients must present. Client agents: that token. */
  token?: string | undefined;
}

/** A parsed agent request. */
export interface AgentRequest extends AgentHello {
  host: string;
  userAgent: string;
  /** `Upgrade:` asked for rhost framing (`rhost`) or WebSocket (`websocket`). */
  upgrade: 'rhost' | 'websocket';
  headers: Map<string, string>;
}

/** What the tunnel answered. */
export type TunnelAnswer =
  | { ok: true; version: number; sessionId: string; headers: Map<string, string> }
  | { ok: false; status: number; code: string; reason: string; versions: number[]; retryAfterMs: number };

/** HTTP status for each refusal code. */
export const REFUSAL_STATUS: Partial<Record<RhostErrorCode, number>> = {
  ERR_RHOST_BAD_HANDSHAKE: 400,
  ERR_RHOST_UNAUTHORIZED: 401,
  ERR_RHOST_BAD_KEY: 403,
  ERR_RHOST_BAD_TOKEN: 403,
  ERR_RHOST_NO_CLIENTS: 403,
  ERR_RHOST_UNKNOWN_CHANNEL: 404,
  ERR_RHOST_HANDSHAKE_TIMEOUT: 408,
  ERR_RHOST_CHANNEL_TAKEN: 409,
  ERR_RHOST_VERSION: 426,
  ERR_RHOST_RATE_LIMITED: 429,
  ERR_RHOST_HEADERS_TOO_LARGE: 431,
  ERR_RHOST_NO_SERVER: 503,
  ERR_RHOST_BUSY: 503,
  ERR_RHOST_SHUTTING_DOWN: 503,
};

const STATUS_TEXT: Record<number, string> = {
  101: 'Switching Protocols',
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  409: 'Conflict',
  426: 'Upgrade Required',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
};

/**
 * A handshake that cannot go on; `status` is the HTTP status to refuse it
 * with, `retryAfterMs` how long the tunnel asked the agent to wait (429).
 */
export class HandshakeError extends RhostError {
  readonly status: number;
  readonly retryAfterMs: number;
  constructor(code: RhostErrorCode, message: string, status = REFUSAL_STATUS[code] ?? 400, retryAfterMs = 0) {
    super(code, message);
    this.name = 'HandshakeError';
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Classifies a connection from its first bytes: `agent` when they start with
 * `GET /.rhost` followed by a space or `?`, `user` as soon as they cannot,
 * `more` while they are a strict prefix of that. A fixed-prefix compare: no
 * user's request is ever parsed as HTTP here.
 */
export function sniff(bytes: Buffer): 'agent' | 'user' | 'more' {
  const n = Math.min(bytes.length, AGENT_MARKER.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== AGENT_MARKER[i]) return 'user';
  if (bytes.length <= AGENT_MARKER.length) return 'more';
  const next = bytes[AGENT_MARKER.length];
  return next === 0x20 || next === 0x3f ? 'agent' : 'user';
}

/** True when the bytes plausibly start an HTTP/1.x request (a method token then a space). */
export function looksLikeHttp(bytes: Buffer): boolean {
  const limit = Math.min(bytes.length, 16);
  for (let i = 0; i < limit; i++) {
    const c = bytes[i]!;
    if (c === 0x20) return i > 0;
    if (c < 0x41 || c > 0x5a) return false; // methods are upper-case letters
  }
  return false;
}

/** `/`, or `/`-separated segments of `a-z 0-9 . _ -` starting with a letter or digit. */
export function isValidChannel(channel: string): boolean {
  return channel.length <= MAX_CHANNEL_BYTES && /^\/$|^(\/[a-z0-9][a-z0-9._-]*)+$/.test(channel);
}

/** Percent-encodes a credential so that it is an HTTP `token` (RFC 9110 §5.6.2). */
export function encodeCredential(value: string): string {
  return encodeURIComponent(value).replace(/[()]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function decodeCredential(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'a credential in Authorization is not valid percent-encoding');
  }
}

/** Builds an `Authorization: Rhost key=…, token=…` value; `undefined` parts are left out. */
export function buildAuthorization(key?: string, token?: string): string | undefined {
  const params: string[] = [];
  if (key !== undefined) params.push(`key=${encodeCredential(key)}`);
  if (token !== undefined) params.push(`token=${encodeCredential(token)}`);
  return params.length ? `Rhost ${params.join(', ')}` : undefined;
}

/** Parses an `Authorization: Rhost …` value into its key and token. */
export function parseAuthorization(value: string): { key?: string; token?: string } {
  const match = /^rhost(?:\s+(.*))?$/is.exec(value.trim());
  if (!match) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'Authorization must use the Rhost scheme');
  const out: { key?: string; token?: string } = {};
  const params = (match[1] ?? '').trim();
  if (!params) return out;
  for (const part of params.split(',')) {
    const m = /^\s*([A-Za-z]+)\s*=\s*([!#$%&'*+.^_`|~0-9A-Za-z-]*)\s*$/.exec(part);
    if (!m) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'Authorization parameters must be name=value');
    const name = m[1]!.toLowerCase();
    if (name !== 'key' && name !== 'token') continue;
    if (out[name] !== undefined) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', `Authorization repeats ${name}`);
    out[name] = decodeCredential(m[2]!);
  }
  return out;
}

/** Parses `1`, `2, 1` into version numbers. */
export function parseVersions(value: string | undefined): number[] {
  if (value === undefined) return [];
  const versions: number[] = [];
  for (const part of value.split(',')) {
    const v = Number(part.trim());
    if (Number.isInteger(v) && v > 0 && v < 65536) versions.push(v);
  }
  return versions;
}

/** Picks the newest version both sides speak, or undefined. */
export function negotiateVersion(offered: readonly number[], supported = SUPPORTED_VERSIONS): number | undefined {
  let best: number | undefined;
  for (const v of offered) if (supported.includes(v) && (best === undefined || v > best)) best = v;
  return best;
}

/** A parsed HTTP/1.1 head: its start line and its headers, names lower-cased. */
export interface Head {
  startLine: string;
  headers: Map<string, string>;
}

/** Headers that must not repeat: a second copy could smuggle a different value past a proxy. */
const SINGLETON_HEADERS = new Set(['authorization', 'upgrade', 'host', 'rhost-role', 'rhost-channel', 'rhost-version']);

/** Parses an HTTP/1.1 head (everything before the blank line), strictly: CRLF lines, no folding. */
export function parseHead(text: string): Head {
  const lines = text.split('\r\n');
  const startLine = lines[0] ?? '';
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0 || /[\s]/.test(line[0]!)) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', `malformed header line ${i}`);
    const name = line.slice(0, colon).toLowerCase();
    if (!/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(name)) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', `malformed header name on line ${i}`);
    const value = line.slice(colon + 1).trim();
    const prior = headers.get(name);
    if (prior !== undefined) {
      if (SINGLETON_HEADERS.has(name)) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', `header ${name} appears twice`);
      headers.set(name, `${prior}, ${value}`);
    } else {
      headers.set(name, value);
    }
  }
  return { startLine, headers };
}

function hasToken(list: string | undefined, token: string): boolean {
  return (list ?? '').split(',').some((t) => t.trim().toLowerCase() === token);
}

/** Builds the agent's request head, blank line included. */
export function buildAgentRequest(hello: AgentHello, opts: { host: string; userAgent: string; websocketKey?: string }): string {
  const lines = [`GET ${AGENT_PATH} HTTP/1.1`, `Host: ${opts.host}`, 'Connection: Upgrade'];
  if (opts.websocketKey !== undefined) {
    lines.push('Upgrade: websocket', 'Sec-WebSocket-Version: 13', `Sec-WebSocket-Key: ${opts.websocketKey}`);
  } else {
    lines.push(`Upgrade: ${UPGRADE_TOKEN}`);
  }
  lines.push(
    `User-Agent: ${opts.userAgent}`,
    `Rhost-Version: ${hello.versions.join(', ')}`,
    `Rhost-Role: ${hello.role}`,
    `Rhost-Channel: ${hello.channel}`,
  );
  const auth = buildAuthorization(hello.key, hello.token);
  if (auth) lines.push(`Authorization: ${auth}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/**
 * Parses and checks an agent request head. Throws a HandshakeError that says
 * how to refuse it. Credentials are decoded, never checked here.
 */
export function parseAgentRequest(text: string): AgentRequest {
  const { startLine, headers } = parseHead(text);
  const m = /^GET (\S+) HTTP\/1\.1$/.exec(startLine);
  if (!m) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'the request line must be GET /.rhost HTTP/1.1');
  const target = m[1]!;
  const path = target.split('?', 1)[0];
  if (path !== AGENT_PATH) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', `agents must request ${AGENT_PATH}`);
  const upgradeHeader = (headers.get('upgrade') ?? '').toLowerCase();
  const upgrade = hasToken(upgradeHeader, UPGRADE_TOKEN) ? 'rhost' : hasToken(upgradeHeader, 'websocket') ? 'websocket' : null;
  if (!upgrade || !hasToken(headers.get('connection'), 'upgrade')) {
    throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', `${AGENT_PATH} is reserved for rhost agents (Upgrade: ${UPGRADE_TOKEN})`);
  }
  const versions = parseVersions(headers.get('rhost-version'));
  if (versions.length === 0) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'Rhost-Version is missing');
  const role = headers.get('rhost-role');
  if (role !== 'server' && role !== 'client') throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'Rhost-Role must be server or client');
  const channel = headers.get('rhost-channel') ?? '/';
  if (!isValidChannel(channel)) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'Rhost-Channel is not a valid channel name');
  const auth = headers.get('authorization');
  const { key, token } = auth === undefined ? {} : parseAuthorization(auth);
  return {
    role,
    channel,
    versions,
    key,
    token,
    upgrade,
    host: headers.get('host') ?? '',
    userAgent: headers.get('user-agent') ?? '',
    headers,
  };
}

/** The tunnel's `101 Switching Protocols` for a raw rhost upgrade. */
export function buildAcceptResponse(version: number, sessionId: string): string {
  return [
    'HTTP/1.1 101 Switching Protocols',
    'Connection: Upgrade',
    `Upgrade: ${UPGRADE_TOKEN}`,
    `Rhost-Version: ${version}`,
    `Rhost-Session: ${sessionId}`,
    '',
    '',
  ].join('\r\n');
}

/** A plain-text HTTP/1.1 error whose body is one line; the connection closes after it. */
function plainError(status: number, message: string, headers: string[]): string {
  const body = `${message.replace(/[\r\n]+/g, ' ')}\n`;
  return [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...headers,
    '',
    body,
  ].join('\r\n');
}

/**
 * A refusal: a plain HTTP/1.1 error with a one-line reason as its body and the
 * machine-readable code in `Rhost-Error`; the tunnel then closes the socket.
 */
export function buildRefusal(code: RhostErrorCode, reason: string, status = REFUSAL_STATUS[code] ?? 400, extraHeaders: string[] = []): string {
  return plainError(status, reason, [`Rhost-Error: ${code}`, `Rhost-Version: ${SUPPORTED_VERSIONS.join(', ')}`, ...extraHeaders]);
}

/** A short plain-text HTTP response for users (e.g. 502 when the local service is down). */
export function buildHttpError(status: number, message: string): string {
  return plainError(status, message, ['Cache-Control: no-store']);
}

/**
 * Reads the tunnel's answer. `body` is whatever followed the head in the same
 * reads (the refusal's reason line, if any).
 */
export function parseTunnelResponse(text: string, body = ''): TunnelAnswer {
  const { startLine, headers } = parseHead(text);
  const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(startLine);
  if (!m) throw new HandshakeError('ERR_RHOST_UNEXPECTED_RESPONSE', 'the answer is not an HTTP response');
  const status = Number(m[1]);
  const versions = parseVersions(headers.get('rhost-version'));
  if (status === 101) {
    const version = versions[0];
    const sessionId = headers.get('rhost-session') ?? '';
    if (version === undefined || !hasToken(headers.get('upgrade'), UPGRADE_TOKEN)) {
      throw new HandshakeError('ERR_RHOST_UNEXPECTED_RESPONSE', 'the 101 answer is not an rhost upgrade');
    }
    return { ok: true, version, sessionId, headers };
  }
  const code = headers.get('rhost-error') ?? '';
  const reason = body.split('\n', 1)[0]!.trim() || `${status} ${m[2] ?? ''}`.trim();
  const retryAfter = Number(headers.get('retry-after'));
  const retryAfterMs = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter, 86_400) * 1000 : 0;
  return { ok: false, status, code, reason, versions, retryAfterMs };
}

/**
 * Accumulates bytes until a blank line ends an HTTP head. Bounded: more than
 * `limit` bytes without the end throws ERR_RHOST_HEADERS_TOO_LARGE.
 */
export class HeadReader {
  readonly #limit: number;
  #buffer: Buffer = Buffer.alloc(0);

  constructor(limit = MAX_HEAD_BYTES) {
    this.#limit = limit;
  }

  /** Bytes held so far. */
  get buffered(): Buffer {
    return this.#buffer;
  }

  /** Adds a chunk; returns the head (latin1, without the blank line) and the bytes after it, once complete. */
  push(chunk: Buffer): { head: string; rest: Buffer } | null {
    const from = Math.max(0, this.#buffer.length - 3);
    this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
    const end = this.#buffer.indexOf('\r\n\r\n', from, 'latin1');
    if (end < 0 || end + 4 > this.#limit) {
      if (this.#buffer.length > this.#limit || end >= 0) {
        throw new HandshakeError('ERR_RHOST_HEADERS_TOO_LARGE', `the handshake head exceeds ${this.#limit} bytes`);
      }
      return null;
    }
    const head = this.#buffer.toString('latin1', 0, end);
    const rest = this.#buffer.subarray(end + 4);
    this.#buffer = Buffer.alloc(0);
    return { head, rest };
  }
}
