import { errorFacts, RhostError, type RhostErrorCode } from '../errors.js';
import { SUPPORTED_VERSIONS } from './constants.js';
import { OPEN_POLICY, parsePolicy, policyHeaders, type ServicePolicy } from './policy.js';
import { isNonce, MAX_ITERATIONS, MIN_ITERATIONS } from './proof.js';

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

/** What an agent asks for. It carries no secret: version 2 proves them after the upgrade. */
export interface AgentHello {
  role: AgentRole;
  /** Channel to register (server) or subscribe to (client). */
  channel: string;
  /** Protocol versions the agent speaks, newest first. */
  versions: readonly number[];
  /** Version 2: the agent's fresh nonce (base64url). */
  nonce?: string | undefined;
  /** Version 3, server agents: who may reach the service (sent only when it says something). */
  policy?: ServicePolicy | undefined;
  /**
   * Version 1 only (the retired scheme): credentials sent in Authorization.
   * rhost's agents never send them; tests use this to stand in for old agents.
   */
  legacy?: { key?: string | undefined; token?: string | undefined };
}

/** A parsed agent request. */
export interface AgentRequest extends AgentHello {
  host: string;
  userAgent: string;
  /** `Upgrade:` asked for rhost framing (`rhost`) or WebSocket (`websocket`). */
  upgrade: 'rhost' | 'websocket';
  headers: Map<string, string>;
  /** Whatever an Authorization header said (version 1); a version 2 agent sends none. */
  legacy: { key?: string; token?: string } | undefined;
  /** What the request declared (version 3); the open policy when it said nothing. */
  policy: ServicePolicy;
}

/** What the tunnel's 101 asks a version 2 agent to prove, and with what. */
export interface Challenge {
  /** The tunnel's fresh nonce. */
  nonce: string;
  /** The channel's salt for PBKDF2. */
  salt: Buffer;
  iterations: number;
}

/** A refusal as the tunnel sends it, before the upgrade (HTTP) or after it (REFUSE). */
export interface RefusalAnswer {
  ok: false;
  status: number;
  code: string;
  reason: string;
  /** Versions the tunnel speaks (HTTP refusals only). */
  versions: number[];
  /** How long the tunnel asked the agent to wait, capped at MAX_RETRY_AFTER_MS. */
  retryAfterMs: number;
}

/** What the tunnel answered. */
export type TunnelAnswer = { ok: true; version: number; sessionId: string; challenge: Challenge | null; headers: Map<string, string> } | RefusalAnswer;

/**
 * The longest wait an agent takes from a `Retry-After`: the longest lockout
 * a tunnel gives by default (5 min). A longer one just gets another 429.
 * Without a cap, a huge value would overflow Node's timer, which then
 * fires at once: an agent would hammer the tunnel.
 */
export const MAX_RETRY_AFTER_MS = 300_000;

/** The HTTP status a handshake refused for `code` gets. */
export function refusalStatus(code: RhostErrorCode): number {
  return errorFacts(code)?.status ?? 400;
}

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
  constructor(code: RhostErrorCode, message: string, status = refusalStatus(code), retryAfterMs = 0) {
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

/** Version 1: builds an `Authorization: Rhost key=…, token=…` value; `undefined` parts are left out. */
export function buildAuthorization(key?: string, token?: string): string | undefined {
  const params: string[] = [];
  if (key !== undefined) params.push(`key=${encodeCredential(key)}`);
  if (token !== undefined) params.push(`token=${encodeCredential(token)}`);
  return params.length ? `Rhost ${params.join(', ')}` : undefined;
}

/**
 * Version 1: parses an `Authorization: Rhost …` value into its key and
 * token. The scheme is matched in any case; values are tokens, never quoted.
 */
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
const SINGLETON_HEADERS = new Set(['authorization', 'upgrade', 'host', 'rhost-role', 'rhost-channel', 'rhost-version', 'rhost-nonce', 'rhost-public', 'rhost-allow', 'rhost-deny']);

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

/**
 * The headers of an agent's request, in order, as name and value: the one
 * description of the request, which the raw upgrade writes out as a head
 * and the WebSocket dial hands to `ws`.
 */
export function agentHeaders(hello: AgentHello, opts: { host: string; userAgent: string; websocket?: boolean }): Array<[string, string]> {
  const headers: Array<[string, string]> = [['Host', opts.host]];
  if (!opts.websocket) headers.push(['Connection', 'Upgrade'], ['Upgrade', UPGRADE_TOKEN]);
  headers.push(
    ['User-Agent', opts.userAgent],
    ['Rhost-Version', hello.versions.join(', ')],
    ['Rhost-Role', hello.role],
    ['Rhost-Channel', hello.channel],
  );
  if (hello.nonce !== undefined) headers.push(['Rhost-Nonce', hello.nonce]);
  if (hello.policy) headers.push(...policyHeaders(hello.policy));
  const auth = hello.legacy && buildAuthorization(hello.legacy.key, hello.legacy.token);
  if (auth) headers.push(['Authorization', auth]);
  return headers;
}

/** Builds the agent's request head for the raw upgrade, blank line included. */
export function buildAgentRequest(hello: AgentHello, opts: { host: string; userAgent: string }): string {
  const lines = [`GET ${AGENT_PATH} HTTP/1.1`, ...agentHeaders(hello, opts).map(([name, value]) => `${name}: ${value}`)];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/**
 * Parses and checks an agent request head. Throws a HandshakeError that says
 * how to refuse it. Version 1 credentials are decoded, never checked here;
 * which version's rules apply is the tunnel's to decide.
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
  const host = headers.get('host');
  if (!host) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'Host is missing: HTTP/1.1 requires it');
  const nonce = headers.get('rhost-nonce');
  if (nonce !== undefined && !isNonce(nonce)) throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', 'Rhost-Nonce must be base64url of 16 to 48 random bytes');
  const auth = headers.get('authorization');
  let policy = OPEN_POLICY;
  try {
    policy = parsePolicy((name) => headers.get(name));
  } catch (err) {
    throw new HandshakeError('ERR_RHOST_BAD_HANDSHAKE', (err as Error).message);
  }
  return {
    role,
    channel,
    versions,
    nonce,
    legacy: auth === undefined ? undefined : parseAuthorization(auth),
    upgrade,
    host,
    userAgent: headers.get('user-agent') ?? '',
    headers,
    policy,
  };
}

/** The headers of a 101 that carry a version 2 challenge. */
export function challengeHeaders(challenge: Challenge): string[] {
  return [`Rhost-Nonce: ${challenge.nonce}`, `Rhost-Salt: ${challenge.salt.toString('base64url')}`, `Rhost-Iterations: ${challenge.iterations}`];
}

/** Reads a version 2 challenge from a 101's headers; throws when it is missing or out of bounds. */
export function parseChallenge(get: (name: string) => string | undefined): Challenge {
  const nonce = get('rhost-nonce');
  const salt = get('rhost-salt') ?? '';
  const iterations = Number(get('rhost-iterations'));
  if (!isNonce(nonce) || !/^[A-Za-z0-9_-]{22,86}$/.test(salt)) {
    throw new HandshakeError('ERR_RHOST_UNEXPECTED_RESPONSE', 'the 101 answer has no valid Rhost-Nonce and Rhost-Salt');
  }
  if (!Number.isInteger(iterations) || iterations < MIN_ITERATIONS || iterations > MAX_ITERATIONS) {
    throw new HandshakeError('ERR_RHOST_UNEXPECTED_RESPONSE', `the 101 answer asks for ${get('rhost-iterations')} PBKDF2 iterations; agents accept ${MIN_ITERATIONS} to ${MAX_ITERATIONS}`);
  }
  return { nonce, salt: Buffer.from(salt, 'base64url'), iterations };
}

/** The tunnel's `101 Switching Protocols` for a raw rhost upgrade; version 2 carries its challenge. */
export function buildAcceptResponse(version: number, sessionId: string, challenge: Challenge | null): string {
  return [
    'HTTP/1.1 101 Switching Protocols',
    'Connection: Upgrade',
    `Upgrade: ${UPGRADE_TOKEN}`,
    `Rhost-Version: ${version}`,
    `Rhost-Session: ${sessionId}`,
    ...(challenge ? challengeHeaders(challenge) : []),
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
export function buildRefusal(
  code: RhostErrorCode,
  reason: string,
  status = refusalStatus(code),
  extraHeaders: string[] = [],
  versions: readonly number[] = SUPPORTED_VERSIONS,
): string {
  return plainError(status, reason, [`Rhost-Error: ${code}`, `Rhost-Version: ${versions.join(', ')}`, ...extraHeaders]);
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
    return { ok: true, version, sessionId, challenge: acceptChallenge(version, (n) => headers.get(n)), headers };
  }
  return parseRefusal(status, (n) => headers.get(n), body, m[2]);
}

/** A version 2 acceptance must carry a challenge and a session id fit for a proof. */
export function acceptChallenge(version: number, get: (name: string) => string | undefined): Challenge | null {
  if (version < 2) return null;
  if (!/^[0-9a-f]{32}$/.test(get('rhost-session') ?? '')) throw new HandshakeError('ERR_RHOST_UNEXPECTED_RESPONSE', 'the 101 answer has no valid Rhost-Session');
  return parseChallenge(get);
}

/**
 * The one reading of a tunnel's HTTP refusal, for the raw and the WebSocket
 * dial alike: its code, its reason (the body's first line), the versions it
 * speaks, and `Retry-After` in whole seconds, capped at MAX_RETRY_AFTER_MS.
 */
export function parseRefusal(status: number, get: (name: string) => string | undefined, body: string, statusText = ''): RefusalAnswer {
  const reason = body.split('\n', 1)[0]!.trim() || `${status} ${statusText}`.trim();
  return {
    ok: false,
    status,
    code: get('rhost-error') ?? '',
    reason,
    versions: parseVersions(get('rhost-version')),
    retryAfterMs: retryAfterMs(get('retry-after')),
  };
}

/** `Retry-After` (whole seconds) as milliseconds, capped; 0 for anything else. */
export function retryAfterMs(value: string | number | undefined): number {
  const seconds = typeof value === 'number' ? value : /^\s*\d+\s*$/.test(value ?? '') ? Number(value) : 0;
  return seconds > 0 ? Math.min(seconds * 1000, MAX_RETRY_AFTER_MS) : 0;
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
