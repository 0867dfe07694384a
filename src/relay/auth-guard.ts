import { limitKey } from './client-address.js';

/** Channel names start with `/`, so a space cannot occur in them: `1.2.3.4 /ssh`, `1.2.3.4 ?` for no such channel. */
function tableKey(ip: string, channel: string | null): string {
  return `${limitKey(ip)} ${channel ?? '?'}`;
}

/**
 * Slows down key and token guessing. Every failed attempt locks its source
 * address out of the channel it tried for a delay that doubles with each
 * failure (1 s, 2 s, 4 s, ... up to 5 min by default); attempts during the
 * lockout are refused with 429 before any credential is looked at. A
 * success does not reset the count (one valid credential, such as an open
 * channel, must not buy a guesser a fresh 1 s lockout per guess); an address
 * that has not failed for the longest lockout starts again from the
 * shortest.
 *
 * The lockout is per channel so that where many agents share one address (a
 * NAT, or a proxy the tunnel was not told to trust) a stale key for one
 * channel does not lock out the agents of the others. Attempts on channels
 * that do not exist share one bucket per address, so probing names buys no
 * extra guesses. The table is bounded: past `maxTracked` entries, the oldest
 * is forgotten. Addresses are counted by `limitKey`: IPv6 by its /64.
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

  /** Address and channel pairs currently remembered. */
  get tracked(): number {
    return this.#table.size;
  }

  /**
   * Milliseconds `ip` must still wait before trying `channel` again, or 0.
   * `channel` is null for a channel that does not exist. Counts a refusal
   * when it must wait.
   */
  lockedFor(ip: string, channel: string | null, now = Date.now()): number {
    const entry = this.#table.get(tableKey(ip, channel));
    if (!entry || entry.until <= now) return 0;
    this.refused++;
    return entry.until - now;
  }

  /** Records a failure; returns how long `ip` is now locked out of `channel`. */
  failed(ip: string, channel: string | null, now = Date.now()): number {
    this.failures++;
    const key = tableKey(ip, channel);
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
