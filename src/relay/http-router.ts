import type http from 'node:http';
import type { Duplex } from 'node:stream';
import { describeEnd, logsAt, type Logger, type TrafficSummary } from '../log.js';
import type { Session } from '../mux/session.js';
import type { Stream } from '../mux/stream.js';
import { buildHttpError, type AddressSet, type OpenMeta } from '../protocol/index.js';
import type { Channel, ChannelTable } from './channels.js';
import { formatAddress } from '../transport/address.js';
import { clientErrorPage, detachedServer, endToEnd, forward, join, page, requestHead } from '../transport/http-forward.js';
import { Lane } from '../transport/lane.js';
import { PinnedConnection } from './http-pinned.js';
import { forwardedClient } from './client-address.js';
import type { ResolvedTunnelConfig } from './config.js';
import type { Connection } from './connection.js';
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

/** Requests one connection may have in flight (pipelined): past it, a 503. */
export const MAX_PIPELINED = 32;
/** Idle lanes one connection keeps; past it, the least recently used idle one closes. */
export const MAX_IDLE_LANES = 8;
/** How long an idle keep-alive connection is kept: longer than the proxies in front keep theirs (nginx, 60 s). */
export const HTTP_KEEP_ALIVE_MS = 75_000;

/** The one page every name that serves nothing gets, whatever the reason: names cannot be listed. */
const NOT_FOUND = { status: 404, message: 'no site is served at this address' } as const;

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
  /** Handed from the pinned fast path to the general router. */
  general?: boolean;
}

/** Where one request goes, or the page it gets instead. */
type Verdict = { channel: Channel; session: Session; ip: string | null; tls: boolean } | { status: number; message: string };

/** Requests that share a lane: same channel, agent session, client address and TLS. */
function laneKey(to: Extract<Verdict, { session: Session }>): string {
  return `${to.channel.name} ${to.session.id} ${to.ip ?? ''} ${to.tls ? 's' : ''}`;
}

const ROUTED = Symbol('rhost.routed');
type RoutedSocket = Duplex & { [ROUTED]?: Routed };

export class HttpRouter {
  readonly #c: HttpRouterContext;
  readonly #server: http.Server;

  constructor(context: HttpRouterContext) {
    this.#c = context;
    const server = detachedServer({ maxHeaderSize: context.config.maxHeadBytes, headersTimeoutMs: context.config.handshakeTimeoutMs, keepAliveTimeoutMs: HTTP_KEEP_ALIVE_MS });
    server.on('request', (req, res) => this.#onRequest(req, res));
    server.on('checkContinue', (req, res) => this.#onRequest(req, res)); // the service answers 100, or not
    server.on('checkExpectation', (_req, res) => page(res, 417, 'the only expectation served is 100-continue'));
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => this.#onUpgrade(req, socket, head));
    server.on('connect', (_req: http.IncomingMessage, socket: Duplex) => socket.end(buildHttpError(405, 'CONNECT is not served here'), () => socket.destroy()));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#onClientError(err, socket));
    this.#server = server;
  }

  /** Takes a plain-HTTP user connection over, `first` its bytes so far; `sni` when the tunnel decrypted it. `done` when it closes. */
  serve(conn: Connection, first: Buffer, sni: string | null, done: () => void): void {
    const state: Routed = { conn, sni, lanes: new Map(), inflight: 0 };
    const { config } = this.#c;
    new PinnedConnection(
      {
        socket: conn.socket,
        maxHeadBytes: config.maxHeadBytes,
        maxPipelined: MAX_PIPELINED,
        headTimeoutMs: config.handshakeTimeoutMs,
        keepAliveMs: HTTP_KEEP_ALIVE_MS,
        choose: (head) => {
          const verdict = this.#route(state, head.rawHeaders);
          if ('status' in verdict) return null;
          return { key: laneKey(verdict), open: () => this.#counted(verdict.channel.name, verdict.session.open(this.#meta(state, verdict))) };
        },
        handOver: (pending) => this.#serveGeneral(state, pending, done),
      },
      first,
    );
    conn.socket.once('close', () => !state.general && done());
  }

  /** The general router: every request through Node's http.Server and a lane per channel and client. */
  #serveGeneral(state: Routed, first: Buffer, done: () => void): void {
    const socket = state.conn.socket as RoutedSocket;
    state.general = true;
    socket[ROUTED] = state;
    socket.once('close', () => {
      for (const lane of state.lanes.values()) lane.destroy();
      state.lanes.clear();
      done();
    });
    this.#server.emit('connection', socket);
    if (first.length) socket.unshift(first);
    socket.resume();
  }

  close(): void {
    this.#server.close(() => {});
    this.#server.closeAllConnections?.();
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const state = (req.socket as RoutedSocket)[ROUTED];
    if (!state) return void res.destroy();
    const verdict = this.#route(state, req.rawHeaders);
    if ('status' in verdict) return page(res, verdict.status, verdict.message);
    if (state.inflight >= MAX_PIPELINED) return page(res, 503, `more than ${MAX_PIPELINED} requests in flight on one connection`, {}, true);
    state.inflight++;
    res.once('close', () => state.inflight--);
    try {
      const headers = endToEnd(req.rawHeaders);
      // HTTP/1.0 may omit Host; the lane speaks 1.1, which requires one: the address the user connected to.
      if (req.headers.host === undefined) headers.push('Host', formatAddress(state.conn.raw.localAddress ?? '127.0.0.1', state.conn.raw.localPort ?? 0));
      forward(req, res, { agent: this.#lane(state, verdict), headers, failure: 'the service behind this tunnel failed the request' });
    } catch (err) {
      page(res, 503, (err as Error).message);
    }
  }

  /** An Upgrade (WebSocket and the like): the connection becomes bytes between the user and the channel it names. */
  #onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const state = (socket as RoutedSocket)[ROUTED];
    if (!state) return void socket.destroy();
    const verdict = this.#route(state, req.rawHeaders);
    const refuse = (status: number, message: string): void => void socket.end(buildHttpError(status, message), () => socket.destroy());
    if ('status' in verdict) return refuse(verdict.status, verdict.message);
    let stream: Stream;
    try {
      stream = verdict.session.open(this.#meta(state, verdict));
    } catch (err) {
      return refuse(503, (err as Error).message);
    }
    stream.write(requestHead(req, req.rawHeaders), 'latin1');
    if (head.length) stream.write(head);
    this.#counted(verdict.channel.name, stream);
    join(socket, stream);
  }

  #onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (!socket.writable) return void socket.destroy();
    const [status, what] = clientErrorPage(err, this.#c.config.maxHeadBytes);
    socket.end(buildHttpError(status, what), () => socket.destroy());
  }

  /** Where a request goes: the checks of its Host, the routes, the channel's server and policy. */
  #route(state: Routed, rawHeaders: string[]): Verdict {
    let hostValue: string | undefined;
    let forwardedFor: string | undefined;
    let forwardedProto: string | undefined;
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!;
      const value = rawHeaders[i + 1]!;
      if (name.length === 4 && name.toLowerCase() === 'host') {
        if (hostValue !== undefined) return { status: 400, message: 'the request has two Host headers' };
        hostValue = value;
      } else if (name.length === 15 && name.toLowerCase() === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
      else if (name.length === 17 && name.toLowerCase() === 'x-forwarded-proto') forwardedProto ??= value;
    }
    let route = null;
    if (hostValue !== undefined) {
      const host = parseHost(hostValue);
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
    const named = anonymous ? forwardedClient(forwardedFor, conn.ip, this.#c.trusted) : conn.ip;
    const ip = anonymous && named === conn.ip ? null : named;
    if (channel.policy.restricts && !channel.policy.admits(ip)) return { status: 403, message: 'this address may not reach this site' };
    const tls = conn.tls || (anonymous && forwardedProto === 'https');
    return { channel, session, ip, tls };
  }

  #meta(state: Routed, to: Extract<Verdict, { session: Session }>): OpenMeta {
    const { conn } = state;
    return { channel: to.channel.name, remoteAddress: to.ip ?? '', remotePort: to.ip === conn.ip ? conn.port : 0, tls: to.tls };
  }

  /** The lane of this connection to the channel, for this client: reused while idle, opened as needed. */
  #lane(state: Routed, to: Extract<Verdict, { session: Session }>): Lane {
    const key = laneKey(to);
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
