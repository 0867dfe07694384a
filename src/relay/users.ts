import type net from 'node:net';
import { resetSocket } from '../mux/splice.js';
import { limitKey } from './client-address.js';

/** The limits a {@link UserTable} enforces (see TunnelConfig). */
export interface UserLimits {
  /** Anonymous users (the public port's) carried at once, over all channels. */
  maxUsers: number;
  /** Anonymous users of one channel. */
  maxUsersPerChannel: number;
  /** Anonymous users from one address. */
  maxUsersPerIp: number;
  /** Streams from client agents (authenticated), over all channels: a pool of their own. */
  maxClientStreams: number;
  /** A full pool evicts the anonymous user silent longest, if silent at least this long; 0 never evicts. */
  userEvictIdleMs: number;
}

/** How often silence is sampled: a user is judged silent to within this. */
const SWEEP_MS = 5000;

/** One admitted user: what to give back when it ends. */
export interface UserTicket {
  readonly kind: 'public' | 'client';
  readonly channel: string;
  /** The per-address key, or empty (only the overall limits apply). */
  readonly key: string;
  /** Public users: their socket, watched for silence and reset on eviction. */
  readonly socket: net.Socket | null;
  /** Bytes either way when last sampled, and since when that count has not moved. */
  seen: number;
  silentSince: number;
  released: boolean;
}

function bump(map: Map<string, number>, key: string, delta: number): void {
  const n = (map.get(key) ?? 0) + delta;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

/**
 * Who may take the tunnel's user slots. Anonymous users of the public port
 * are bounded overall, per channel and per address; streams that
 * authenticated client agents open draw on a pool of their own, so no crowd
 * of strangers can starve them. When an anonymous pool is full, the user
 * that has sent and received nothing for longest makes room, if it has
 * been silent for `userEvictIdleMs`: a crowd of sockets that send a byte
 * and go quiet cannot lock newcomers out, and users with traffic are never
 * touched. Silence is sampled every 5 s from the sockets' byte counters,
 * so the data path pays nothing for it.
 */
export class UserTable {
  readonly #limits: UserLimits;
  /** Anonymous users of each channel, longest silent first. */
  readonly #byChannel = new Map<string, Map<UserTicket, true>>();
  readonly #perIp = new Map<string, number>();
  #public = 0;
  #clients = 0;
  #sweeper: NodeJS.Timeout | null = null;
  readonly #now: () => number;
  /** Since start: users refused by a limit, and silent ones evicted to make room. */
  readonly counts = { usersRefused: 0, usersEvicted: 0 };

  constructor(limits: UserLimits, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  /** Anonymous users now. */
  get publicUsers(): number {
    return this.#public;
  }

  /** Client-agent streams now. */
  get clientStreams(): number {
    return this.#clients;
  }

  /**
   * Takes a slot: an anonymous user of `channel` from `ip` (empty: only the
   * overall limits apply) on `socket`, or a client agent's stream. Returns
   * the ticket, or why not.
   */
  admit(kind: 'public' | 'client', channel: string, ip: string, socket: net.Socket | null): UserTicket | string {
    const key = ip && limitKey(ip);
    const now = this.#now();
    if (kind === 'client') {
      if (this.#clients >= this.#limits.maxClientStreams) return this.#refuse(`the tunnel carries its maximum of ${this.#limits.maxClientStreams} client-agent streams`);
      this.#clients++;
      return { kind, channel, key, socket: null, seen: 0, silentSince: now, released: false };
    }
    if (key && (this.#perIp.get(key) ?? 0) >= this.#limits.maxUsersPerIp) {
      return this.#refuse(`too many connections from ${key === ip ? ip : `${ip} (counted by its ${key})`}`);
    }
    const users = this.#byChannel.get(channel);
    if ((users?.size ?? 0) >= this.#limits.maxUsersPerChannel && !this.#evictFrom(users!, now)) {
      return this.#refuse(`${channel} carries its maximum of ${this.#limits.maxUsersPerChannel} connections`);
    }
    if (this.#public >= this.#limits.maxUsers && !this.#evictAnywhere(now)) {
      return this.#refuse(`the tunnel carries its maximum of ${this.#limits.maxUsers} connections`);
    }
    const ticket: UserTicket = { kind, channel, key, socket, seen: socket ? socket.bytesRead + socket.bytesWritten : 0, silentSince: now, released: false };
    let table = this.#byChannel.get(channel);
    if (!table) this.#byChannel.set(channel, (table = new Map()));
    table.set(ticket, true);
    this.#public++;
    if (key) bump(this.#perIp, key, 1);
    this.#sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    return ticket;
  }

  /** Gives a slot back. Safe to call twice (an evicted user's end comes later). */
  release(ticket: UserTicket): void {
    if (ticket.released) return;
    ticket.released = true;
    if (ticket.kind === 'client') {
      this.#clients--;
      return;
    }
    const table = this.#byChannel.get(ticket.channel);
    table?.delete(ticket);
    if (table?.size === 0) this.#byChannel.delete(ticket.channel);
    this.#public--;
    if (ticket.key) bump(this.#perIp, ticket.key, -1);
    if (this.#public === 0 && this.#sweeper) {
      clearInterval(this.#sweeper);
      this.#sweeper = null;
    }
  }

  /** Samples every anonymous user's byte counters; one that moved goes to the back of the silence order. */
  sweep(now = this.#now()): void {
    for (const table of this.#byChannel.values()) {
      for (const ticket of [...table.keys()]) this.#sample(table, ticket, now);
    }
  }

  /** Stops the sampling timer (the tunnel closed). */
  close(): void {
    if (this.#sweeper) clearInterval(this.#sweeper);
    this.#sweeper = null;
  }

  /** True if the ticket's traffic moved since last seen (it is then re-filed as active). */
  #sample(table: Map<UserTicket, true>, ticket: UserTicket, now: number): boolean {
    const socket = ticket.socket;
    const bytes = socket ? socket.bytesRead + socket.bytesWritten : 0;
    if (bytes === ticket.seen) return false;
    ticket.seen = bytes;
    ticket.silentSince = now;
    table.delete(ticket);
    table.set(ticket, true);
    return true;
  }

  /** Evicts the longest-silent user of `table` if it has been silent long enough. */
  #evictFrom(table: Map<UserTicket, true>, now: number): boolean {
    const idle = this.#limits.userEvictIdleMs;
    if (idle <= 0) return false;
    // The head is the longest silent as of the last sweep; one that spoke since is re-filed, and the next is tried.
    for (let tries = 0; tries < 16; tries++) {
      const first = table.keys().next().value;
      if (first === undefined || now - first.silentSince < idle) return false;
      if (this.#sample(table, first, now)) continue;
      this.release(first);
      this.counts.usersEvicted++;
      if (first.socket) resetSocket(first.socket);
      return true;
    }
    return false;
  }

  /** Evicts the longest-silent anonymous user of any channel. */
  #evictAnywhere(now: number): boolean {
    let oldest: Map<UserTicket, true> | null = null;
    let since = Infinity;
    for (const table of this.#byChannel.values()) {
      const head = table.keys().next().value;
      if (head && head.silentSince < since) {
        since = head.silentSince;
        oldest = table;
      }
    }
    return oldest !== null && this.#evictFrom(oldest, now);
  }

  #refuse(why: string): string {
    this.counts.usersRefused++;
    return why;
  }
}
