import type net from 'node:net';
import type { Duplex } from 'node:stream';
import { RhostError } from '../errors.js';
import { describeEnd, logsAt, TrafficSummary, type Logger } from '../log.js';
import type { Session } from '../mux/session.js';
import type { IncomingStream } from '../mux/incoming-stream.js';
import { relayStream } from '../mux/relay.js';
import { resetSocket, type SpliceEnd } from '../mux/splice.js';
import type { SharedBudget } from '../mux/window.js';
import { buildHttpError, looksLikeHttp, PeerError, WireError, wireCodeOf } from '../protocol/index.js';
import type { Channel, ChannelTable } from './channels.js';
import type { ResolvedTunnelConfig } from './config.js';
import type { Connection, Emit } from './connection.js';
import { UserTable, type UserTicket } from './users.js';

/** Stream resets that mean "the service is down": an HTTP user gets a page saying so instead of a reset. */
const SERVICE_DOWN: Partial<Record<number, [number, string]>> = {
  [WireError.ConnectRefused]: [502, 'the local service behind this tunnel refused the connection: is it running?'],
  [WireError.ConnectFailed]: [502, 'the local service behind this tunnel could not be reached'],
  [WireError.NoServer]: [503, 'no server agent is connected to this tunnel'],
};

function answerHttpUser(err: PeerError, socket: Duplex): boolean {
  const page = SERVICE_DOWN[err.wireCode];
  if (!page) return false;
  socket.end(buildHttpError(page[0], page[1]), () => socket.destroy());
  return true;
}

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
}

/**
 * Where users go: it picks the server agent that carries a user (the
 * public port's users go to channel `/`; a client agent's streams to its
 * channel), admits the user against the limits, splices the two, and
 * answers HTTP users whose channel has no server, or whose service is down,
 * with a page. Host routing, pools and a cluster plug in here: each is a
 * way of choosing `serverFor` a user.
 */
export class Router {
  readonly users: UserTable;
  /** The info-level log of users: a line per channel per interval; each user's own lines are at debug. */
  readonly traffic: TrafficSummary;
  readonly #c: RouterContext;

  constructor(context: RouterContext) {
    this.#c = context;
    this.users = new UserTable(context.config, context.config.now);
    this.traffic = new TrafficSummary(context.log, 'users', context.config.summaryIntervalMs);
  }

  /** The session that serves new users of `channel` now, or null. */
  serverFor(channel: Channel | undefined): Session | null {
    const server = channel?.server;
    return server && !server.goingAway ? server : null;
  }

  /** Carries a user of the public port, whose first bytes are `first`, to the server agent of `/`. */
  carryUser(conn: Connection, first: Buffer): void {
    const { socket, remote } = conn;
    const http = looksLikeHttp(first);
    const log = this.#c.log;
    const logUsers = logsAt(log, 'debug');
    let streamId = 0;
    let ticket: UserTicket | null = null;
    const ended = (end: SpliceEnd): void => {
      if (ticket) this.users.release(ticket);
      this.traffic.closed('/', end);
      if (logUsers) log.debug(`user ${remote} disconnected ${describeEnd(end)}`, { event: 'user-close', remote, channel: '/', stream: streamId, ...end });
      this.#c.emit('user-close', { remote, channel: '/', ...end });
    };
    try {
      const server = this.serverFor(this.#c.channels.get('/'));
      if (!server) throw new RhostError('ERR_RHOST_NO_SERVER', 'no server agent is connected to this tunnel');
      ticket = this.#admit('public', '/', conn.limitIp, socket);
      const meta = { channel: '/', remoteAddress: conn.ip, remotePort: conn.port };
      streamId = server.openSocket(meta, socket, ended, { head: first, ...(http ? { answerReset: answerHttpUser } : {}) });
    } catch (err) {
      if (ticket) this.users.release(ticket);
      const why = (err as Error).message;
      log.debug(`user ${remote} turned away: ${why}`);
      if (http) socket.end(buildHttpError(503, why), () => socket.destroy());
      else resetSocket(socket);
      return;
    }
    this.traffic.opened('/');
    if (logUsers) log.debug(`user ${remote} connected to /`, { remote, channel: '/', stream: streamId });
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
