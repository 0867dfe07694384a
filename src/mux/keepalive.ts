import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { PING_PAYLOAD_BYTES } from '../protocol/index.js';

/**
 * Window auto-tuning measures against the smallest RTT seen in this long.
 * The latest RTT includes the queueing that bulk streams cause; growing
 * windows on it would feed the queue (bufferbloat) and, with 100 streams,
 * skewed throughput 3.5:1 between them.
 */
const MIN_RTT_WINDOW_MS = 30_000;

/** While streams are granting credit, the RTT is re-measured at least this often. */
const RTT_REFRESH_MS = 1000;

export interface KeepaliveHooks {
  /** Write a PING frame with these 8 bytes. */
  sendPing(opaque: Buffer): void;
  /** Nothing arrived for the keepalive timeout: the peer is dead. */
  dead(silentForMs: number): void;
}

/**
 * A session's PINGs: keepalive every `pingIntervalMs`, dead-peer detection
 * when nothing at all arrives for `keepaliveTimeoutMs`, and round-trip
 * measurement. At most one PING is in flight; callers of `ping()` share it.
 */
export class Keepalive {
  readonly #hooks: KeepaliveHooks;
  readonly #timeoutMs: number;
  #rttMs = 0;
  #minRttMs = 0;
  #minRttSetAt = 0;
  #opaque: Buffer | null = null;
  #sentAt = 0;
  #waiters: Array<(rtt: number) => void> = [];
  #lastReceiveAt = performance.now();
  #interval: NodeJS.Timeout | null = null;
  #deadline: NodeJS.Timeout | null = null;
  #stopped = false;

  constructor(pingIntervalMs: number, keepaliveTimeoutMs: number, hooks: KeepaliveHooks) {
    this.#hooks = hooks;
    this.#timeoutMs = keepaliveTimeoutMs;
    if (pingIntervalMs > 0) {
      this.#interval = setInterval(() => this.#send(), pingIntervalMs);
      this.#send(); // measure the RTT from the start: window auto-tuning needs it
    }
    if (keepaliveTimeoutMs > 0) this.#arm(keepaliveTimeoutMs);
  }

  /** Last measured round trip in ms; 0 before the first PONG. */
  get rtt(): number {
    return this.#rttMs;
  }

  /** Smallest recent round trip: the path's own delay, without the queueing load adds. */
  get minRtt(): number {
    return this.#minRttMs;
  }

  /** Something arrived from the peer. */
  received(): void {
    this.#lastReceiveAt = performance.now();
  }

  /** Sends a PING unless one is in flight; resolves with the round trip. */
  ping(): Promise<number> {
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#send();
    });
  }

  /** Re-measures the RTT if the last PING is older than a second (called while data flows). */
  refresh(nowMs: number): void {
    if (nowMs - this.#sentAt > RTT_REFRESH_MS) this.#send();
  }

  /** A PONG arrived. */
  pong(opaque: Buffer): void {
    if (this.#opaque === null || !opaque.equals(this.#opaque)) return;
    this.#opaque = null;
    const now = performance.now();
    this.#rttMs = Math.max(now - this.#sentAt, 0.001);
    if (this.#minRttMs === 0 || this.#rttMs <= this.#minRttMs || now - this.#minRttSetAt > MIN_RTT_WINDOW_MS) {
      this.#minRttMs = this.#rttMs;
      this.#minRttSetAt = now;
    }
    this.#settle(this.#rttMs);
  }

  /** Stops the timers; pending ping() calls resolve with 0. */
  stop(): void {
    this.#stopped = true;
    if (this.#interval) clearInterval(this.#interval);
    if (this.#deadline) clearTimeout(this.#deadline);
    this.#settle(0);
  }

  #settle(rtt: number): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve(rtt);
  }

  #send(): void {
    if (this.#opaque !== null || this.#stopped) return;
    this.#opaque = randomBytes(PING_PAYLOAD_BYTES);
    this.#sentAt = performance.now();
    this.#hooks.sendPing(this.#opaque);
  }

  #arm(delayMs: number): void {
    this.#deadline = setTimeout(() => {
      const silentFor = performance.now() - this.#lastReceiveAt;
      if (silentFor >= this.#timeoutMs) this.#hooks.dead(silentFor);
      else this.#arm(this.#timeoutMs - silentFor);
    }, Math.max(1, Math.ceil(delayMs)));
  }
}
