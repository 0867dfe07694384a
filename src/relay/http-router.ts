import http from 'node:http';
import type { Duplex } from 'node:stream';
import { describeEnd, logsAt, type Logger, type TrafficSummary } from '../log.js';
import type { Session } from '../mux/session.js';
import type { Stream } from '../mux/stream.js';
import { buildHttpError, PeerError, WireError, type AddressSet, type OpenMeta } from '../protocol/index.js';
import type { Channel, ChannelTable } from './channels.js';
import { formatAddress } from '../transport/address.js';
import { forwardedClient } from './client-address.js';
import type { ResolvedTunnelConfig } from './config.js';
import type { Connection } from './connection.js';
import { Lane } from './lanes.js';
import { parseHost, type RouteTable } from './routes.js';

/**
 * Host routing, request by request (docs/protocol.md §2.3). Under
 * `domains` or `routes`, a plain-HTTP user connection is read by Node's own
 * parser (llhttp, through an http.Server that listens nowhere): each
 * request goes to the channel its Host names, over a lane (a keep-alive
 * connection through one mux stream, per channel and client) to that
 * channel's server agent; responses go back in order, one finished before
 * the next begins. A pooled connection from a proxy in front, carrying many
 * sites' requests, is routed correctly; an `Upgrade` turns the connection
 * into bytes for the channel it names.
 */

/** Headers of one connection, never forwarded (RFC 9110 §7.6.1); and any the Connection header names. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/** Requests one connection may have in flight (pipelined): past it, a 503. */
export const MAX_PIPELINED = 32;
/** Idle lanes one connection keeps; past it, the least recently used idle one closes. */
export const MAX_IDLE_LANES = 8;
/** How long an idle keep-alive connection is kept: longer than the proxies in front keep theirs (nginx, 60 s). */
export const HTTP_KEEP_ALIVE_MS = 75_000;

/** The one page every name that serves nothing gets, whatever the reason: names cannot be listed. */
const NOT_FOUND = { status: 404, message: 'no site is served at this address' } as const;

/** Stream resets that mean "the service is down": HTTP users get a page saying so. */
export const SERVICE_DOWN: Partial<Record<number, [number, string]>> = {
  [WireError.ConnectRefused]: [502, 'the local service behind this tunnel refused the connection: is it running?'],
  [WireError.ConnectFailed]: [502, 'the local service behind this tunnel could not be reached'],
  [WireError.NoServer]: [503, 'no server agent is connected to this tunnel'],
};

/** What the router needs from its tunnel. */
export interface HttpRouterContext {
  config: ResolvedTunnelConfig;
  log: Logger;
  routes: RouteTable;
  channels: ChannelTable;
  trusted: AddressSet;
  serverFor(channel: Channel | undefined): Session | null;
  traffic: TrafficSummary;
}

/** One routed user connection. */
interface Routed {
  conn: Connection;
  /** The TLS server name of a connection the tunnel decrypted: every Host on it must be this name. */
  sni: string | null;
  lanes: Map<string, Lane>;
  inflight: number;
}

/** Where one request goes, or the page it gets instead. */
type Verdict = { channel: Channel; session: Session; ip: string | null; tls: boolean } | { status: number; message: string };

const ROUTED = Symbol('rhost.routed');
type RoutedSocket = Duplex & { [ROUTED]?: Routed };

/** `raw` (rawHeaders) without the hop-by-hop headers. */
function endToEnd(raw: readonly string[]): string[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const token of raw[i + 1]!.split(',')) named.add(token.trim().toLowerCase());
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(name) && !named.has(name)) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** A page of our own: plain text, one line, no Date (so that every unserved name's page is the same bytes). */
function page(res: http.ServerResponse, status: number, message: string, close = false): void {
  const body = `${message}\n`;
  res.sendDate = false;
  res.shouldKeepAlive = res.shouldKeepAlive && !close;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
  res.end(body);
}

export class HttpRouter {
  readonly #c: HttpRouterContext;
  readonly #server: http.Server;

  constructor(context: HttpRouterContext) {
    this.#c = context;
    const server = http.createServer({
      maxHeaderSize: context.config.maxHeadBytes,
      keepAliveTimeout: HTTP_KEEP_ALIVE_MS,
      headersTimeout: context.config.handshakeTimeoutMs,
      requestTimeout: 0, // uploads may take long; userIdleTimeoutMs bounds silence
      joinDuplicateHeaders: false,
    });
    server.on('request', (req, res) => this.#onRequest(req, res));
    server.on('checkContinue', (req, res) => this.#onRequest(req, res)); // the service answers 100, or not
    server.on('checkExpectation', (_req, res) => page(res, 417, 'the only expectation served is 100-continue'));
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => socket.end(buildHttpError(405, 'CONNECT is not served here'), () => socket.destroy()));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#onClientError(err, socket));
    // A user that half-closes after its last request still gets its answers.
    (server as http.Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    // It listens nowhere, but Node checks headersTimeout only for servers that said 'listening'.
    server.emit('listening');
    this.#server = server;
  }

  /** Takes a plain-HTTP user connection over, `first` its bytes so far; `sni` when the tunnel decrypted it. `done` when it closes. */
  serve(conn: Connection, first: Buffer, sni: string | null, done: () => void): void {
    const socket = conn.socket as RoutedSocket;
    const state: Routed = { conn, sni, lanes: new Map(), inflight: 0 };
    socket[ROUTED] = state;
    socket.once('close', () => {
      for (const lane of state.lanes.values()) lane.destroy();
      state.lanes.clear();
      done();
    });
    this.#server.emit('connection', socket);
    socket.unshift(first);
  }

  close(): void {
    this.#server.close(() => {});
    this.#server.closeAllConnections?.();
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const state = (req.socket as RoutedSocket)[ROUTED];
    if (!state) return void res.destroy();
    const verdict = this.#route(state, req);
    if ('status' in verdict) return page(res, verdict.status, verdict.message);
    if (state.inflight >= MAX_PIPELINED) return page(res, 503, `more than ${MAX_PIPELINED} requests in flight on one connection`, true);
    state.inflight++;
    res.once('close', () => state.inflight--);
    let upstream: http.ClientRequest;
    try {
      const headers = endToEnd(req.rawHeaders);
      if (req.headers['transfer-encoding'] !== undefined) headers.push('Transfer-Encoding', 'chunked'); // llhttp decoded it; the lane encodes it again
      // HTTP/1.0 may omit Host; the lane speaks 1.1, which requires one: the address the user connected to.
      if (req.headers.host === undefined) headers.push('Host', formatAddress(state.conn.raw.localAddress ?? '127.0.0.1', state.conn.raw.localPort ?? 0));
      upstream = http.request({ agent: this.#lane(state, verdict), method: req.method, path: req.url, headers, setHost: false });
    } catch (err) {
      return page(res, 503, (err as Error).message);
    }
    upstream.on('information', (info: http.InformationEvent) => {
      if (info.statusCode === 100) res.writeContinue();
      else if (info.statusCode === 103) res.writeEarlyHints(Object.fromEntries(Object.entries(info.headers).filter(([, v]) => v !== undefined)) as Record<string, string | string[]>);
    });
    upstream.on('response', (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEnd(answer.rawHeaders));
      answer.pipe(res, { end: false });
      answer.once('end', () => {
        const trailers = answer.rawTrailers;
        if (trailers.length) res.addTrailers(pairs(trailers));
        res.end();
      });
      answer.once('error', () => res.destroy());
    });
    upstream.on('error', (err) => {
      if (res.headersSent) return void res.destroy();
      const down = err instanceof PeerError ? SERVICE_DOWN[err.wireCode] : undefined;
      page(res, down?.[0] ?? 502, down?.[1] ?? `the service behind this tunnel failed the request: ${err.message}`);
    });
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  /** An Upgrade (WebSocket and the like): the connection becomes bytes between the user and the channel it names. */
  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const state = (socket as RoutedSocket)[ROUTED];
    if (!state) return void socket.destroy();
    const verdict = this.#route(state, req);
    const refuse = (status: number, message: string): void => void socket.end(buildHttpError(status, message), () => socket.destroy());
    if ('status' in verdict) return refuse(verdict.status, verdict.message);
    let stream: Stream;
    try {
      stream = verdict.session.open(this.#meta(state, verdict));
    } catch (err) {
      return refuse(503, (err as Error).message);
    }
    const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    stream.write(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
    if (head.length) stream.write(head);
    this.#counted(verdict.channel.name, stream);
    stream.pipe(socket);
    socket.pipe(stream);
    const cut = (): void => {
      stream.destroy();
      socket.destroy();
    };
    stream.once('error', cut);
    socket.once('error', cut);
    socket.once('close', () => stream.destroy());
    stream.once('close', () => socket.destroy());
  }

  #onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (!socket.writable || (err.code === 'ECONNRESET' && socket.destroyed)) return void socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const what = status === 431 ? `the request head exceeds ${this.#c.config.maxHeadBytes} bytes` : status === 408 ? 'the request head took too long' : 'the request is not valid HTTP/1.1';
    socket.end(buildHttpError(status, what), () => socket.destroy());
  }

  /** Where a request goes: the checks of its Host, the routes, the channel's server and policy. */
  #route(state: Routed, req: http.IncomingMessage): Verdict {
    let hosts = 0;
    for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.length === 4 && req.rawHeaders[i]!.toLowerCase() === 'host') hosts++;
    if (hosts > 1) return { status: 400, message: 'the request has two Host headers' };
    let route = null;
    if (hosts === 1) {
      const host = parseHost(req.headers.host ?? '');
      if ('error' in host) return { status: 400, message: host.error };
      if (state.sni !== null && host.name !== state.sni) return { status: 400, message: 'the Host differs from the TLS server name of this connection' };
      route = this.#c.routes.resolve(host.name);
    }
    if (route && route.channel === null) return NOT_FOUND;
    const channel = this.#c.channels.get(route ? route.channel! : '/');
    const session = this.#c.serverFor(channel);
    const byName = route?.by === 'domain' && route.channel !== '/';
    if (!channel || !session || (byName && !channel.policy.public)) return route ? NOT_FOUND : { status: 503, message: 'no server agent is connected to this tunnel' };
    const { conn } = state;
    // A trusted proxy that did not name the client speaks for many: each request says whose it is.
    const anonymous = conn.limitIp === '';
    const named = anonymous ? forwardedClient(req.headers['x-forwarded-for'] as string | undefined, conn.ip, this.#c.trusted) : conn.ip;
    const ip = anonymous && named === conn.ip ? null : named;
    if (channel.policy.restricts && !channel.policy.admits(ip)) return { status: 403, message: 'this address may not reach this site' };
    const tls = conn.tls || (anonymous && req.headers['x-forwarded-proto'] === 'https');
    return { channel, session, ip, tls };
  }

  #meta(state: Routed, to: Extract<Verdict, { session: Session }>): OpenMeta {
    const { conn } = state;
    return { channel: to.channel.name, remoteAddress: to.ip ?? '', remotePort: to.ip === conn.ip ? conn.port : 0, tls: to.tls };
  }

  /** The lane of this connection to the channel, for this client: reused while idle, opened as needed. */
  #lane(state: Routed, to: Extract<Verdict, { session: Session }>): Lane {
    const key = `${to.channel.name} ${to.session.id} ${to.ip ?? ''} ${to.tls ? 's' : ''}`;
    let lane = state.lanes.get(key);
    if (!lane) {
      if (state.lanes.size >= MAX_IDLE_LANES) {
        let oldest: [string, Lane] | null = null;
        for (const entry of state.lanes) if (!entry[1].busy && (!oldest || entry[1].usedAt < oldest[1].usedAt)) oldest = entry;
        if (oldest) {
          oldest[1].destroy();
          state.lanes.delete(oldest[0]);
        }
      }
      const meta = this.#meta(state, to);
      const name = to.channel.name;
      lane = new Lane(() => this.#counted(name, to.session.open(meta)));
      state.lanes.set(key, lane);
    }
    lane.usedAt = performance.now();
    return lane;
  }

  /** A stream to a channel's agent, in the traffic summary and (at debug) the log. */
  #counted<T extends Duplex & { bytesIn: number; bytesOut: number }>(channel: string, stream: T): T {
    const { traffic, log } = this.#c;
    const started = performance.now();
    traffic.opened(channel);
    stream.once('close', () => {
      const end = { bytesIn: stream.bytesOut, bytesOut: stream.bytesIn, durationMs: performance.now() - started, reason: 'closed' };
      traffic.closed(channel, end);
      if (logsAt(log, 'debug')) log.debug(`lane to ${channel} closed ${describeEnd(end)}`, { channel, ...end });
    });
    return stream;
  }
}

/** rawTrailers as [name, value] pairs. */
function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i]!, raw[i + 1]!]);
  return out;
}
