import http from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * A lane: one keep-alive HTTP/1.1 connection to a channel's service, over
 * one mux stream to its server agent, that a host-routed user connection
 * sends its requests for that channel through, one at a time. Node's
 * http.Agent does the queueing and the reuse; a lane only makes its
 * connections: streams, opened by `open`, for as long as the lane lives.
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
    return this.#open();
  }

  // A mux stream has no TCP options to set nor a handle to (un)ref: the defaults' socket calls are skipped.
  override keepSocketAlive(): boolean {
    return true;
  }

  override reuseSocket(): void {}
}
