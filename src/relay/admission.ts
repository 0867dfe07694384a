import type net from 'node:net';
import { limitKey } from './client-address.js';

/** The limits Admission enforces (see TunnelConfig). */
export interface AdmissionLimits {
  maxPendingHandshakes: number;
  maxPendingHandshakesPerIp: number;
  maxUsers: number;
  maxUsersPerIp: number;
}

function bump(map: Map<string, number>, key: string, delta: number): void {
  const n = (map.get(key) ?? 0) + delta;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

/**
 * Who may take the tunnel's resources, in the manner of OpenSSH's
 * MaxStartups. Connections not yet classified or still in their handshake
 * are "pending": per source address, past the limit, new ones are refused;
 * overall, past the limit, the *oldest* pending one is dropped to make room,
 * so a crowd of slow connections cannot shut out a real user, whose
 * classification takes one read. User connections are bounded in total and
 * per source address. Addresses are counted by `limitKey`: IPv6 by its /64.
 */
export class Admission {
  readonly #limits: AdmissionLimits;
  /** Insertion order is age: the first is the oldest. */
  readonly #pending = new Map<net.Socket, string>();
  readonly #pendingPerIp = new Map<string, number>();
  readonly #usersPerIp = new Map<string, number>();
  users = 0;
  /** Connections refused or dropped by a limit, since start. */
  readonly counts = { pendingRefused: 0, pendingDropped: 0, usersRefused: 0 };

  constructor(limits: AdmissionLimits) {
    this.#limits = limits;
  }

  get pending(): number {
    return this.#pending.size;
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
      const [oldest] = this.#pending.keys();
      this.leavePending(oldest!);
      this.counts.pendingDropped++;
      oldest!.destroy();
    }
    this.#pending.set(socket, key);
    if (key) bump(this.#pendingPerIp, key, 1);
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
    if (current === undefined || current === key) return true;
    if (!this.#roomFor(key)) return false;
    if (current) bump(this.#pendingPerIp, current, -1);
    this.#pending.set(socket, key);
    if (key) bump(this.#pendingPerIp, key, 1);
    return true;
  }

  #roomFor(key: string): boolean {
    if (key && (this.#pendingPerIp.get(key) ?? 0) >= this.#limits.maxPendingHandshakesPerIp) {
      this.counts.pendingRefused++;
      return false;
    }
    return true;
  }

  /** The connection is classified, admitted, refused or gone. Safe to call twice. */
  leavePending(socket: net.Socket): void {
    const ip = this.#pending.get(socket);
    if (ip === undefined) return;
    this.#pending.delete(socket);
    if (ip) bump(this.#pendingPerIp, ip, -1);
  }

  /** Takes a user slot for `ip` (empty: only the overall limit applies); returns why not, or null when admitted. */
  admitUser(ip: string): string | null {
    if (this.users >= this.#limits.maxUsers) {
      this.counts.usersRefused++;
      return `the tunnel carries its maximum of ${this.#limits.maxUsers} connections`;
    }
    if (!ip) {
      this.users++;
      return null;
    }
    const key = limitKey(ip);
    if ((this.#usersPerIp.get(key) ?? 0) >= this.#limits.maxUsersPerIp) {
      this.counts.usersRefused++;
      return `too many connections from ${key === ip ? ip : `${ip} (counted by its ${key})`}`;
    }
    this.users++;
    bump(this.#usersPerIp, key, 1);
    return null;
  }

  releaseUser(ip: string): void {
    this.users--;
    if (ip) bump(this.#usersPerIp, limitKey(ip), -1);
  }
}
