import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { logsAt, type Logger } from '../log.js';
import type { Stream } from '../mux/stream.js';
import type { OpenMeta } from '../protocol/index.js';
import { formatAddress } from '../transport/address.js';
import { clientErrorPage, detachedServer, endToEnd, forward, join, page, requestHead } from '../transport/http-forward.js';
import { Lane } from '../transport/lane.js';

/**
 * A server agent's `--http` mode: users are carried as HTTP requests, not
 * as opaque bytes. Each request is read with Node's parser, checked
 * against `basicAuth`, given X-Forwarded-For, X-Forwarded-Proto,
 * X-Forwarded-Host and Forwarded (appended to, never trusted), its Host as
 * `hostHeader` says, and sent to the local service over a keep-alive
 * connection of the user's own stream. Everything HTTP/1.1 allows passes:
 * pipelining, chunked bodies both ways, 100-continue, streaming responses,
 * and Upgrade, after which the connection carries bytes.
 */

/** The largest request head read in `--http` mode (Node's default). */
export const HTTP_MAX_HEAD_BYTES = 16 * 1024;
/** How long a user's stream may sit idle between requests. */
const KEEP_ALIVE_MS = 75_000;
/** Bound on a request head arriving. */
const HEADERS_TIMEOUT_MS = 30_000;

/** What a request did, for whoever watches (the inspector). */
export interface CarriedRequest {
  method: string;
  path: string;
  status: number;
  durationMs: number;
  remote: string;
}

export interface HttpServiceConfig {
  /** The local service, for `hostHeader: 'rewrite'`. */
  target: { host: string; port: number };
  /** Opens a connection to the local service for one user (the agent's own connect, PROXY header and all). */
  connect: (meta: OpenMeta) => net.Socket;
  /** `preserve` (the user's), `rewrite` (the local service's address), or a value to send. */
  hostHeader: string;
  /** `user:password` pairs; when any is given, every request needs one of them (HTTP Basic). */
  basicAuth: readonly string[];
  log: Logger;
  /** Called for every request carried. */
  onRequest?: (request: CarriedRequest) => void;
}

const USER = Symbol('rhost.user');
type UserStream = Duplex & { [USER]?: { meta: OpenMeta; lane: Lane | null } };

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/** Forwarded's node syntax for an address (RFC 7239 §6): IPv6 quoted in brackets, unknown as `unknown`. */
function forwardedNode(ip: string): string {
  if (!ip) return 'unknown';
  return ip.includes(':') ? `"[${ip}]"` : ip;
}

/** A Forwarded `host` value: a token, or a quoted string with `"` and `\` escaped. */
function forwardedValue(value: string): string {
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`;
}

export class HttpService {
  readonly #c: HttpServiceConfig;
  readonly #server: http.Server;
  readonly #credentials: Buffer[];

  constructor(config: HttpServiceConfig) {
    this.#c = config;
    this.#credentials = config.basicAuth.map(sha256);
    const server = detachedServer({ maxHeaderSize: HTTP_MAX_HEAD_BYTES, headersTimeoutMs: HEADERS_TIMEOUT_MS, keepAliveTimeoutMs: KEEP_ALIVE_MS });
    server.on('request', (req, res) => this.#onRequest(req, res));
    server.on('checkContinue', (req, res) => this.#onRequest(req, res));
    server.on('checkExpectation', (_req, res) => page(res, 417, 'the only expectation served is 100-continue'));
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => socket.destroy());
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      if (!socket.writable) return void socket.destroy();
      const [status, what] = clientErrorPage(err, HTTP_MAX_HEAD_BYTES);
      socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nConnection: close\r\nContent-Length: ${what.length + 1}\r\n\r\n${what}\n`);
    });
    this.#server = server;
  }

  /** Carries a user's stream as HTTP. */
  serve(stream: Stream): void {
    stream.accept(); // the agent itself answers: a page of its own when the service is down
    const user = stream as unknown as UserStream;
    user[USER] = { meta: stream.meta, lane: null };
    stream.once('close', () => user[USER]!.lane?.destroy());
    this.#server.emit('connection', stream);
  }

  close(): void {
    this.#server.closeAllConnections?.();
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const user = (req.socket as UserStream)[USER];
    if (!user) return void res.destroy();
    if (!this.#authorized(req)) return this.#unauthorized(res, user.meta);
    const started = performance.now();
    user.lane ??= new Lane(() => this.#c.connect(user.meta));
    try {
      forward(req, res, {
        agent: user.lane,
        headers: this.#headers(req, user.meta, false),
        done: (status) => this.#c.onRequest?.({ method: req.method ?? '', path: req.url ?? '', status, durationMs: performance.now() - started, remote: formatAddress(user.meta.remoteAddress || '?', user.meta.remotePort) }),
      });
    } catch (err) {
      page(res, 502, `the local service could not be reached: ${(err as Error).message}`);
    }
  }

  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const user = (socket as UserStream)[USER];
    if (!user) return void socket.destroy();
    if (!this.#authorized(req)) {
      const body = 'this site needs a user name and password\n';
      socket.end(`HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="rhost", charset="UTF-8"\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
      return;
    }
    const service = this.#c.connect(user.meta);
    service.write(requestHead(req, this.#headers(req, user.meta, true)), 'latin1');
    if (head.length) service.write(head);
    join(socket, service);
  }

  /** A request's credentials, checked against every configured pair in constant time. */
  #authorized(req: http.IncomingMessage): boolean {
    if (this.#credentials.length === 0) return true;
    const header = req.headers.authorization ?? '';
    const match = /^basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
    const given = sha256(match ? Buffer.from(match[1]!, 'base64').toString('utf8') : '\0none');
    let ok = false;
    for (const expected of this.#credentials) ok = timingSafeEqual(given, expected) || ok;
    return ok;
  }

  #unauthorized(res: http.ServerResponse, meta: OpenMeta): void {
    if (logsAt(this.#c.log, 'debug')) this.#c.log.debug(`a request from ${formatAddress(meta.remoteAddress || '?', meta.remotePort)} had no valid credentials`);
    page(res, 401, 'this site needs a user name and password', { 'WWW-Authenticate': 'Basic realm="rhost", charset="UTF-8"' });
  }

  /**
   * The headers a request goes on with: hop-by-hop ones gone (kept for an
   * Upgrade), X-Forwarded-For and Forwarded appended to, X-Forwarded-Proto
   * and X-Forwarded-Host set, Host as configured, and the Basic credentials
   * this agent checked kept from the service.
   */
  #headers(req: http.IncomingMessage, meta: OpenMeta, upgrade: boolean): string[] {
    const raw = upgrade ? req.rawHeaders : endToEnd(req.rawHeaders);
    const ip = meta.remoteAddress;
    const proto = meta.tls ? 'https' : 'http';
    const host = req.headers.host ?? '';
    const out: string[] = [];
    const xff: string[] = [];
    const forwarded: string[] = [];
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const lower = name.toLowerCase();
      if (lower === 'x-forwarded-for') xff.push(raw[i + 1]!);
      else if (lower === 'forwarded') forwarded.push(raw[i + 1]!);
      else if (lower === 'x-forwarded-proto' || lower === 'x-forwarded-host') continue;
      else if (lower === 'authorization' && this.#credentials.length) continue;
      else if (lower === 'host') continue;
      else out.push(name, raw[i + 1]!);
    }
    const { hostHeader, target } = this.#c;
    const sentHost = hostHeader === 'preserve' ? host : hostHeader === 'rewrite' ? formatAddress(target.host, target.port) : hostHeader;
    if (sentHost) out.unshift('Host', sentHost);
    if (ip) xff.push(ip);
    if (xff.length) out.push('X-Forwarded-For', xff.join(', '));
    out.push('X-Forwarded-Proto', proto);
    if (host) out.push('X-Forwarded-Host', host);
    forwarded.push(`for=${forwardedNode(ip)};proto=${proto}${host ? `;host=${forwardedValue(host)}` : ''}`);
    out.push('Forwarded', forwarded.join(', '));
    return out;
  }
}
