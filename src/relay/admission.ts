import type net from 'node:net';

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
 * per source address.
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
    if (ip && (this.#pendingPerIp.get(ip) ?? 0) >= this.#limits.maxPendingHandshakesPerIp) {
      this.counts.pendingRefused++;
      return false;
    }
    while (this.#pending.size >= this.#limits.maxPendingHandshakes) {
      const [oldest] = this.#pending.keys();
      this.leavePending(oldest!);
      this.counts.pendingDropped++;
      oldest!.destroy();
    }
    this.#pending.set(socket, ip);
    if (ip) bump(this.#pendingPerIp, ip, 1);
    return true;
  }

  /** The connection is classified, admitted, refused or gone. Safe to call twice. */
  leavePending(socket: net.Socket): void {
    const ip = this.#pending.get(socket);
    if (ip === undefined) return;
    this.#pending.delete(socket);
    if (ip) bump(this.#pendingPerIp, ip, -1);
  }

  /** Takes a user slot for `ip`; returns why not, or null when admitted. */
  admitUser(ip: string): string | null {
    if (this.users >= this.#limits.maxUsers) {
      this.counts.usersRefused++;
      return `the tunnel carries its maximum of ${this.#limits.maxUsers} connections`;
    }
    if ((this.#usersPerIp.get(ip) ?? 0) >= this.#limits.maxUsersPerIp) {
      this.counts.usersRefused++;
      return `too many connections from ${ip}`;
    }
    this.users++;
    bump(this.#usersPerIp, ip, 1);
    return null;
  }

  releaseUser(ip: string): void {
    this.users--;
    bump(this.#usersPerIp, ip, -1);
  }
}
