import http from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * A lane: one keep-alive HTTP/1.1 connection that requests go through one
 * at a time, made by `open` (a mux stream to a server agent, for the
 * tunnel's host routing; a socket to the local service, for a server
 * agent's `--http`). Node's http.Agent does the queueing and the reuse; a
 * lane only makes its connection, again when one closes, for as long as
 * the lane lives.
 */
export class Lane extends http.Agent {
  readonly #open: () => Duplex;
  /** When the lane last started a request: the least recently used is closed first. */
  usedAt = 0;

  constructor(open: () => Duplex) {
    super({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1, scheduling: 'lifo' });
    this.#open = open;
  }

  /** Requests waiting for the lane's connection, and the one on it. */
  get busy(): boolean {
    return Object.values(this.sockets).some((list) => list?.some((s) => (s as unknown as { _httpMessage?: unknown })._httpMessage)) || Object.keys(this.requests).length > 0;
  }

  override createConnection(): Duplex {
    const connection = this.#open() as Duplex & { ref?: () => void };
    // A mux stream holds no handle to (un)ref; the Agent's reuseSocket calls ref() after it drops its free-socket listener.
    connection.ref ??= () => {};
    return connection;
  }

  // A mux stream has no TCP options to set: the default's socket calls (keep-alive probes, unref, timeout) are skipped.
  override keepSocketAlive(): boolean {
    return true;
  }
}
