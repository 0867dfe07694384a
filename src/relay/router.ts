import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { RhostError } from '../errors.js';
import { describeEnd, logsAt, TrafficSummary, type Logger } from '../log.js';
import type { Session } from '../mux/session.js';
import type { IncomingStream } from '../mux/incoming-stream.js';
import { relayStream } from '../mux/relay.js';
import { resetSocket, type SpliceEnd } from '../mux/splice.js';
import type { SharedBudget } from '../mux/window.js';
import { buildHttpError, looksLikeHttp, PeerError, WireError, wireCodeOf, type AddressSet } from '../protocol/index.js';
import type { Channel, ChannelTable } from './channels.js';
import type { ResolvedTunnelConfig } from './config.js';
import type { Connection, Emit } from './connection.js';
import { SERVICE_DOWN } from '../transport/http-forward.js';
import { HttpRouter } from './http-router.js';
import type { Route, RouteTable } from './routes.js';
import { UserTable, type UserTicket } from './users.js';

function answerHttpUser(err: PeerError, socket: Duplex): boolean {
  const page = SERVICE_DOWN[err.wireCode];
  if (!page) return false;
  socket.end(buildHttpError(page[0], page[1]), () => socket.destroy());
  return true;
}

/** What a TLS user whose server name serves nothing gets: an unrecognized_name alert (RFC 6066 §3), the same for every such name. */
const UNRECOGNIZED_NAME = Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70]);

/**
 * Anonymous users may fill only this share of `maxBufferedBytes`: the rest
 * is kept for client agents' streams, which strangers must not starve.
 */
const PUBLIC_BUFFER_SHARE = 0.75;

/** What the router needs from its tunnel. */
export interface RouterContext {
  config: ResolvedTunnelConfig;
  log: Logger;
  channels: ChannelTable;
  shared: SharedBudget;
  emit: Emit;
  routes: RouteTable;
  trusted: AddressSet;
}

/**
 * Where users go: it picks the server agent that carries a user (the
 * public port's users go to channel `/`, or under routing to the channel
 * their Host or SNI names; a client agent's streams to its channel), checks
 * the channel's policy, admits the user against the limits, splices the
 * two, and answers HTTP users whose channel has no server, or whose service
 * is down, with a page. Pools and a cluster plug in here: each is a way of
 * choosing `serverFor` a user.
 */
export class Router {
  readonly users: UserTable;
  /** The info-level log of users: a line per channel per interval; each user's own lines are at debug. */
  readonly traffic: TrafficSummary;
  readonly #c: RouterContext;
  readonly #http: HttpRouter;

  constructor(context: RouterContext) {
    this.#c = context;
    this.users = new UserTable(context.config, context.config.now);
    this.traffic = new TrafficSummary(context.log, 'users', context.config.summaryIntervalMs);
    this.#http = new HttpRouter({ ...context, traffic: this.traffic, serverFor: (channel) => this.serverFor(channel) });
  }

  close(): void {
    this.users.close();
    this.traffic.close();
    this.#http.close();
  }

  /** The session that serves new users of `channel` now, or null. */
  serverFor(channel: Channel | undefined): Session | null {
    const server = channel?.server;
    return server && !server.goingAway ? server : null;
  }

  /**
   * Carries a user of the public port, whose first bytes are `first`: under
   * routing, an HTTP user request by request (`sni`: the name a decrypted
   * connection was made for); anyone else to the server agent of `/`.
   */
  carryUser(conn: Connection, first: Buffer, sni: string | null): void {
    const http = looksLikeHttp(first);
    if (!http || !this.#c.routes.enabled) return this.#carry(conn, first, '/', http);
    let ticket: UserTicket;
    try {
      ticket = this.#admit('public', '/', conn.limitIp, conn.socket);
    } catch (err) {
      return void conn.socket.end(buildHttpError(503, (err as Error).message), () => conn.socket.destroy());
    }
    this.#http.serve(conn, first, sni, () => this.users.release(ticket));
  }

  /**
   * A TLS user whose server name is routed and whose certificate the tunnel
   * does not hold: its bytes, ClientHello first, go untouched to the
   * channel's agent, and the service's own certificate reaches the user.
   * A name that serves nothing gets the same alert as any other.
   */
  passThrough(conn: Connection, hello: Buffer, route: Route): void {
    const channel = route.channel === null ? undefined : this.#c.channels.get(route.channel);
    const served = channel && this.serverFor(channel) && (route.by === 'route' || channel.name === '/' || channel.policy.public);
    if (!served) return void conn.socket.end(UNRECOGNIZED_NAME, () => conn.socket.destroy());
    this.#carry(conn, hello, channel.name, false);
  }

  /** Carries a user, whose first bytes are `first`, as bytes to the server agent of `channelName`. */
  #carry(conn: Connection, first: Buffer, channelName: string, http: boolean): void {
    const { socket, remote } = conn;
    const log = this.#c.log;
    const logUsers = logsAt(log, 'debug');
    let streamId = 0;
    let ticket: UserTicket | null = null;
    const ended = (end: SpliceEnd): void => {
      if (ticket) this.users.release(ticket);
      this.traffic.closed(channelName, end);
      if (logUsers) log.debug(`user ${remote} disconnected ${describeEnd(end)}`, { event: 'user-close', remote, channel: channelName, stream: streamId, ...end });
      this.#c.emit('user-close', { remote, channel: channelName, ...end });
    };
    try {
      const channel = this.#c.channels.get(channelName);
      const server = this.serverFor(channel);
      if (!server) throw new RhostError('ERR_RHOST_NO_SERVER', 'no server agent is connected to this tunnel');
      if (channel!.policy.restricts && !channel!.policy.admits(conn.limitIp || null)) {
        if (http) socket.end(buildHttpError(403, 'this address may not reach this site'), () => socket.destroy());
        else resetSocket(socket);
        return;
      }
      ticket = this.#admit('public', channelName, conn.limitIp, socket);
      const meta = { channel: channelName, remoteAddress: conn.ip, remotePort: conn.port, tls: conn.tls };
      streamId = server.openSocket(meta, socket, ended, { head: first, ...(http ? { answerReset: answerHttpUser } : {}) });
    } catch (err) {
      if (ticket) this.users.release(ticket);
      const why = (err as Error).message;
      log.debug(`user ${remote} turned away: ${why}`);
      if (http) socket.end(buildHttpError(503, why), () => socket.destroy());
      else resetSocket(socket);
      return;
    }
    this.traffic.opened(channelName);
    if (logUsers) log.debug(`user ${remote} connected to ${channelName}`, { remote, channel: channelName, stream: streamId });
    if (this.#c.config.userIdleTimeoutMs > 0) socket.setTimeout(this.#c.config.userIdleTimeoutMs, () => resetSocket(socket));
  }

  /**
   * Carries a stream a client agent opened on `channel` to the channel's
   * server agent, under an OPEN of the tunnel's own: the server agent sees
   * the client agent's address as the tunnel knows it, never what the client
   * agent's OPEN said.
   */
  carryClientStream(channel: Channel, conn: Connection, stream: IncomingStream, log: Logger): void {
    const { remote } = conn;
    const logUsers = logsAt(log, 'debug');
    let ticket: UserTicket | null = null;
    try {
      const server = this.serverFor(channel);
      if (!server) throw new RhostError('ERR_RHOST_NO_SERVER', `no server agent on ${channel.name}`);
      if (channel.policy.restricts && !channel.policy.admits(conn.limitIp || null)) throw new RhostError('ERR_RHOST_FORBIDDEN', `${channel.name} does not admit ${conn.ip}`);
      ticket = this.#admit('client', channel.name, conn.limitIp, null);
      const taken = ticket;
      relayStream(stream, server, { channel: channel.name, remoteAddress: conn.ip, remotePort: conn.port }, (end) => {
        this.users.release(taken);
        this.traffic.closed(channel.name, end);
        if (logUsers) log.debug(`user ${remote} disconnected from ${channel.name} ${describeEnd(end)}`, { event: 'user-close', remote, channel: channel.name, stream: stream.id, ...end });
        this.#c.emit('user-close', { remote, channel: channel.name, ...end });
      });
    } catch (err) {
      if (ticket) this.users.release(ticket);
      stream.reset(err instanceof RhostError ? wireCodeOf(err) : WireError.RefusedStream);
      log.debug(`client stream ${stream.id} refused: ${(err as Error).message}`);
      return;
    }
    this.traffic.opened(channel.name);
    if (logUsers) log.debug(`user ${remote} connected to ${channel.name} through a client agent`, { stream: stream.id });
  }

  /** Takes a user slot, or throws ERR_RHOST_BUSY saying why not. */
  #admit(kind: 'public' | 'client', channel: string, ip: string, socket: net.Socket | null): UserTicket {
    const { maxBufferedBytes } = this.#c.config;
    const limit = kind === 'public' ? maxBufferedBytes * PUBLIC_BUFFER_SHARE : maxBufferedBytes;
    if (this.#c.shared.buffered >= limit) {
      this.users.counts.usersRefused++;
      throw new RhostError('ERR_RHOST_BUSY', 'the tunnel is holding its maximum of data for slow readers: try again later');
    }
    const ticket = this.users.admit(kind, channel, ip, socket);
    if (typeof ticket === 'string') throw new RhostError('ERR_RHOST_BUSY', ticket);
    return ticket;
  }
}
