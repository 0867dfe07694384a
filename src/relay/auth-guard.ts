import { limitKey } from './client-address.js';

/**
 * Slows down key and token guessing. Every failed attempt locks its source
 * address out for a delay that doubles with each failure (1 s, 2 s, 4 s, ...
 * up to 5 min by default); attempts during the lockout are refused with 429
 * before any credential is looked at. A success does not reset the count
 * (one valid credential, such as an open channel, must not buy a guesser a
 * fresh 1 s lockout per guess); an address that has not failed for the
 * longest lockout starts again from the shortest. The table is bounded: past
 * `maxTracked` addresses, the oldest is forgotten. Addresses are counted by
 * `limitKey`: IPv6 by its /64.
 */
export class AuthGuard {
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #maxTracked: number;
  readonly #table = new Map<string, { failures: number; until: number }>();
  /** Failed attempts (bad or missing key or token, unknown channel) since start. */
  failures = 0;
  /** Attempts refused because their address was locked out. */
  refused = 0;

  constructor(baseDelayMs = 1000, maxDelayMs = 300_000, maxTracked = 10_000) {
    this.#baseDelayMs = baseDelayMs;
    this.#maxDelayMs = maxDelayMs;
    this.#maxTracked = maxTracked;
  }

  /** Addresses currently remembered. */
  get tracked(): number {
    return this.#table.size;
  }

  /** Milliseconds `ip` must still wait, or 0. Counts a refusal when it must wait. */
  lockedFor(ip: string, now = Date.now()): number {
    const entry = this.#table.get(limitKey(ip));
    if (!entry || entry.until <= now) return 0;
    this.refused++;
    return entry.until - now;
  }

  /** Records a failure; returns how long `ip` is now locked out. */
  failed(ip: string, now = Date.now()): number {
    this.failures++;
    const key = limitKey(ip);
    const entry = this.#table.get(key) ?? { failures: 0, until: 0 };
    if (now - entry.until > this.#maxDelayMs) entry.failures = 0; // quiet for long enough: forgiven
    entry.failures++;
    const delay = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** Math.min(entry.failures - 1, 30));
    entry.until = now + delay;
    this.#table.delete(key); // re-insert: the Map's order is then oldest activity first
    this.#table.set(key, entry);
    if (this.#table.size > this.#maxTracked) this.#table.delete(this.#table.keys().next().value!);
    return delay;
  }

}
