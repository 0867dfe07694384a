import type net from 'node:net';
import { addressGroup, limitKey } from './client-address.js';

/** The limits Admission enforces (see TunnelConfig). */
export interface AdmissionLimits {
  maxPendingHandshakes: number;
  maxPendingHandshakesPerIp: number;
  /** New connections per second from one address; 0: no limit. */
  maxConnRatePerIp: number;
  /** How many above the rate one address may open in a burst. */
  connBurstPerIp: number;
}

function bump(map: Map<string, number>, key: string, delta: number): void {
  const n = (map.get(key) ?? 0) + delta;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

/** Addresses whose connection rate is remembered; past it the least recently seen is forgotten (its bucket refills). */
const MAX_RATE_ENTRIES = 65_536;

/**
 * Who may take the tunnel's attention before it knows what a connection is.
 *
 * New connections from one address are held to a rate (a token bucket):
 * one over it is closed at once, before any byte is read. Connections not
 * yet classified or still in their handshake are "pending": per source
 * address, past the limit, new ones are refused; overall, past the limit,
 * one is dropped to make room, in the manner of OpenSSH's MaxStartups, from
 * the address group (IPv4 /24, IPv6 /64) that holds the most pending, its
 * oldest first. A crowd from a few networks then pays for itself: it cannot
 * evict a real user from another network, however slowly that user's first
 * bytes come (a TLS handshake over a long path, a server-speaks-first
 * protocol). Addresses are counted by `limitKey`: IPv6 by its /64.
 */
export class Admission {
  readonly #limits: AdmissionLimits;
  /** Pending sockets, with the address and group they count under. */
  readonly #pending = new Map<net.Socket, { key: string; group: string }>();
  readonly #perIp = new Map<string, number>();
  /** Each group's pending sockets, oldest first. */
  readonly #groups = new Map<string, Set<net.Socket>>();
  /** Groups by how many they hold: `#bySize[n]` has every group of n; `#largest` the top n in use. */
  readonly #bySize: Array<Set<string>> = [];
  #largest = 0;
  readonly #rates = new Map<string, { tokens: number; at: number }>();
  /** Connections refused or dropped by a limit, since start. */
  readonly counts = { pendingRefused: 0, pendingDropped: 0, rateRefused: 0 };

  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
  }

  get pending(): number {
    return this.#pending.size;
  }

  /**
   * A new connection from `ip` within its rate? Costs a map lookup and a
   * little arithmetic: it runs before anything else is spent on the socket.
   */
  allowConnection(ip: string, now = performance.now()): boolean {
    const rate = this.#limits.maxConnRatePerIp;
    if (rate <= 0 || !ip) return true;
    const key = ip.includes(':') ? limitKey(ip) : ip;
    const burst = this.#limits.connBurstPerIp;
    const entry = this.#rates.get(key);
    let tokens = burst;
    if (entry) {
      tokens = Math.min(burst, entry.tokens + ((now - entry.at) / 1000) * rate);
      this.#rates.delete(key); // re-inserted below: the map's order is then least recently seen first
    } else if (this.#rates.size >= MAX_RATE_ENTRIES) {
      this.#rates.delete(this.#rates.keys().next().value!);
    }
    const allowed = tokens >= 1;
    this.#rates.set(key, { tokens: allowed ? tokens - 1 : tokens, at: now });
    if (!allowed) this.counts.rateRefused++;
    return allowed;
  }

  /**
   * A connection starts its classification. Returns false when its address
   * already has too many pending (refuse it). `ip` may be empty when the
   * real address is not known yet (behind a PROXY-protocol proxy): then only
   * the overall limit applies.
   */
  enterPending(socket: net.Socket, ip: string): boolean {
    const key = ip && limitKey(ip);
    if (!this.#roomFor(key)) return false;
    while (this.#pending.size >= this.#limits.maxPendingHandshakes) {
      const victim = this.#oldestOfLargestGroup();
      this.leavePending(victim);
      this.counts.pendingDropped++;
      victim.destroy();
    }
    this.#add(socket, key, ip);
    return true;
  }

  /**
   * The real address of a pending connection became known (a PROXY
   * header): from now on it counts under that address. Returns false when
   * that address already has too many pending (refuse the connection).
   */
  assignPending(socket: net.Socket, ip: string): boolean {
    const current = this.#pending.get(socket);
    const key = ip && limitKey(ip);
    if (current === undefined || current.key === key) return true;
    if (!this.#roomFor(key)) return false;
    this.leavePending(socket);
    this.#add(socket, key, ip);
    return true;
  }

  /** The connection is classified, admitted, refused or gone. Safe to call twice. */
  leavePending(socket: net.Socket): void {
    const entry = this.#pending.get(socket);
    if (entry === undefined) return;
    this.#pending.delete(socket);
    if (entry.key) bump(this.#perIp, entry.key, -1);
    const members = this.#groups.get(entry.group)!;
    this.#resize(entry.group, members.size, members.size - 1);
    members.delete(socket);
    if (members.size === 0) this.#groups.delete(entry.group);
  }

  #add(socket: net.Socket, key: string, ip: string): void {
    const group = ip ? addressGroup(ip) : '';
    this.#pending.set(socket, { key, group });
    if (key) bump(this.#perIp, key, 1);
    let members = this.#groups.get(group);
    if (!members) this.#groups.set(group, (members = new Set()));
    this.#resize(group, members.size, members.size + 1);
    members.add(socket);
  }

  /** Moves `group` from the size-`from` set to the size-`to` set. */
  #resize(group: string, from: number, to: number): void {
    if (from > 0) this.#bySize[from]!.delete(group);
    if (to > 0) (this.#bySize[to] ??= new Set()).add(group);
    if (to > this.#largest) this.#largest = to;
    while (this.#largest > 0 && !this.#bySize[this.#largest]?.size) this.#largest--;
  }

  #oldestOfLargestGroup(): net.Socket {
    const group = this.#bySize[this.#largest]!.values().next().value!;
    return this.#groups.get(group)!.values().next().value!;
  }

  #roomFor(key: string): boolean {
    if (key && (this.#perIp.get(key) ?? 0) >= this.#limits.maxPendingHandshakesPerIp) {
      this.counts.pendingRefused++;
      return false;
    }
    return true;
  }
}
