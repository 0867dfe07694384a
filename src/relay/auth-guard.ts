import { limitKey } from './client-address.js';

/** Settings of an {@link AuthGuard}. */
export interface GuardSettings {
  /** First lockout after a failure, doubling per failure... */
  baseDelayMs: number;
  /** ...up to this. An entry quiet for this long is forgiven. */
  maxDelayMs: number;
  /** Entries remembered at most; past it, the least-failed is forgotten. */
  maxTracked: number;
  /** Distinct names an address may fail on before its address-wide lockout starts. */
  freeNames: number;
  /** Failures the whole tunnel absorbs in a burst before strangers must wait... */
  stormBurst: number;
  /** ...refilled at this many per second. */
  stormPerSecond: number;
  /** While the storm lasts, how long an address the tunnel has not seen succeed waits. */
  stormRetryMs: number;
}

export const DEFAULT_GUARD_SETTINGS: Readonly<GuardSettings> = Object.freeze({
  baseDelayMs: 1000,
  maxDelayMs: 300_000,
  maxTracked: 10_000,
  freeNames: 8,
  stormBurst: 120,
  stormPerSecond: 2,
  stormRetryMs: 10_000,
});

/** Names start with `/`: `*` cannot be one, so it keys the address-wide entry. */
const ADDRESS_WIDE = '*';
/** Names an address-wide entry remembers, to tell a new name from the same one again. */
const RECENT_NAMES = 4;
/** Addresses remembered as having authenticated, and for how long. */
const KNOWN_GOOD_MAX = 4096;
const KNOWN_GOOD_MS = 24 * 3600_000;
/** Failure counts past this share one eviction bucket: the lockout has long reached its maximum. */
const MAX_BUCKET = 32;

interface Entry {
  failures: number;
  until: number;
  /** Address-wide entries: the names that failed lately. */
  names?: string[];
}

/**
 * Slows down guessing. Every failed attempt locks its source address out
 * of the name it tried, for a delay that doubles with each failure (1 s,
 * 2 s, 4 s, ... up to 5 min); attempts during the lockout are refused with
 * 429 before any credential is looked at. Every name is treated alike,
 * whether a channel or not, so the answers cannot tell which exist.
 *
 * Failures on many names from one address also count against the address
 * as a whole (after `freeNames` distinct names, the same doubling), and an
 * attempt waits for the larger of the two lockouts: a stale key for one
 * channel behind a shared NAT does not lock out the agents of the others,
 * while probing many names does not buy a fresh lockout per name.
 *
 * Guessing spread over many addresses meets a tunnel-wide brake: past
 * `stormBurst` failures (refilled at `stormPerSecond`), addresses the
 * tunnel has not seen authenticate in the last day wait `stormRetryMs`
 * per attempt. Addresses it has seen succeed are never held up by it, so
 * strangers cannot lock out the real agents.
 *
 * A success does not reset the count (one valid credential, such as an open
 * channel, must not buy a guesser a fresh 1 s lockout per guess); an entry
 * quiet for the longest lockout starts again from the shortest. The table
 * is bounded: past `maxTracked` entries, the least-failed one goes, so a
 * flood of single failures cannot push a real guesser's lockout out.
 * Addresses are counted by `limitKey`: IPv6 by its /64.
 */
export class AuthGuard {
  readonly #s: GuardSettings;
  readonly #table = new Map<string, Entry>();
  /** Entries by failure count, each in order of last activity: the eviction order. */
  readonly #buckets: Array<Map<string, Entry>> = [];
  readonly #knownGood = new Map<string, number>();
  #storm: { tokens: number; at: number };
  /** Failed attempts since start. */
  failures = 0;
  /** Attempts refused because their address was locked out. */
  refused = 0;

  readonly #now: () => number;

  /** `clock` is what the times default to; a number is the start time of a clock the caller passes on every call. */
  constructor(settings: Partial<GuardSettings> = {}, clock: number | (() => number) = Date.now) {
    this.#s = { ...DEFAULT_GUARD_SETTINGS, ...settings };
    this.#now = typeof clock === 'function' ? clock : Date.now;
    this.#storm = { tokens: this.#s.stormBurst, at: typeof clock === 'function' ? clock() : clock };
  }

  /** Entries currently remembered. */
  get tracked(): number {
    return this.#table.size;
  }

  /**
   * Milliseconds `ip` must still wait before trying `name` again, or 0:
   * the larger of its lockout on that name and its address-wide one, or
   * the storm brake's wait for a stranger. Counts a refusal when it must
   * wait.
   */
  lockedFor(ip: string, name: string, now = this.#now()): number {
    const key = limitKey(ip);
    let wait = Math.max(this.#waitOf(`${key} ${name}`, now), this.#waitOf(`${key} ${ADDRESS_WIDE}`, now));
    if (wait === 0 && this.#stormTokens(now) < 1 && !this.#isKnownGood(key, now)) wait = this.#s.stormRetryMs;
    if (wait > 0) this.refused++;
    return wait;
  }

  /** A failed credential (or a missing one) on `name`; returns how long `ip` is now locked out of it. */
  failed(ip: string, name: string, now = this.#now()): number {
    this.failures++;
    this.#spendStorm(now);
    const key = limitKey(ip);
    const base = this.#s.baseDelayMs;
    const own = this.#bump(`${key} ${name}`, now, (n) => base * 2 ** Math.min(n - 1, 30));
    return Math.max(own, this.#countName(key, name, now));
  }

  /**
   * An attempt that tested no credential but learned whether `name` takes
   * agents (a client agent asking for a channel nobody serves): counted
   * against the address only when the name is new for it, so an agent
   * waiting for its server agent is never held up, but walking through
   * names is.
   */
  probed(ip: string, name: string, now = this.#now()): void {
    this.#countName(limitKey(ip), name, now);
  }

  /** `ip` proved a credential: the storm brake spares it from now on. */
  succeeded(ip: string, now = this.#now()): void {
    const key = limitKey(ip);
    this.#knownGood.delete(key);
    this.#knownGood.set(key, now);
    if (this.#knownGood.size > KNOWN_GOOD_MAX) this.#knownGood.delete(this.#knownGood.keys().next().value!);
  }

  #waitOf(key: string, now: number): number {
    const entry = this.#table.get(key);
    return entry && entry.until > now ? entry.until - now : 0;
  }

  /** Counts `name` against the address-wide entry if it is new there; returns that entry's lockout. */
  #countName(key: string, name: string, now: number): number {
    const wideKey = `${key} ${ADDRESS_WIDE}`;
    if (this.#table.get(wideKey)?.names?.includes(name)) return this.#waitOf(wideKey, now);
    const { freeNames, baseDelayMs } = this.#s;
    const lockout = this.#bump(wideKey, now, (n) => (n <= freeNames ? 0 : baseDelayMs * 2 ** Math.min(n - freeNames - 1, 30)));
    const entry = this.#table.get(wideKey);
    if (entry) entry.names = [name, ...(entry.names ?? [])].slice(0, RECENT_NAMES);
    return lockout;
  }

  /**
   * One more failure on `key`, locked out for `delayOf(failures)` (capped);
   * an entry quiet for the longest lockout starts over. Returns the lockout.
   */
  #bump(key: string, now: number, delayOf: (failures: number) => number): number {
    const entry = this.#table.get(key) ?? { failures: 0, until: 0 };
    this.#unfile(key, entry);
    if (entry.failures > 0 && now - entry.until > this.#s.maxDelayMs) {
      entry.failures = 0; // quiet for long enough: forgiven
      entry.names = [];
    }
    entry.failures++;
    const delay = Math.min(this.#s.maxDelayMs, delayOf(entry.failures));
    entry.until = Math.max(entry.until, now + delay);
    this.#table.delete(key);
    this.#table.set(key, entry);
    this.#file(key, entry);
    while (this.#table.size > this.#s.maxTracked) this.#evictOne();
    return delay;
  }

  #file(key: string, entry: Entry): void {
    const b = Math.min(entry.failures, MAX_BUCKET);
    (this.#buckets[b] ??= new Map()).set(key, entry);
  }

  #unfile(key: string, entry: Entry): void {
    if (entry.failures > 0) this.#buckets[Math.min(entry.failures, MAX_BUCKET)]?.delete(key);
  }

  /** Forgets the least-failed entry, the least recently active of those. */
  #evictOne(): void {
    for (const bucket of this.#buckets) {
      if (!bucket || bucket.size === 0) continue;
      const key = bucket.keys().next().value!;
      bucket.delete(key);
      this.#table.delete(key);
      return;
    }
  }

  #stormTokens(now: number): number {
    const s = this.#storm;
    s.tokens = Math.min(this.#s.stormBurst, s.tokens + ((now - s.at) / 1000) * this.#s.stormPerSecond);
    s.at = now;
    return s.tokens;
  }

  #spendStorm(now: number): void {
    this.#storm.tokens = Math.max(0, this.#stormTokens(now) - 1);
  }

  #isKnownGood(key: string, now: number): boolean {
    const at = this.#knownGood.get(key);
    return at !== undefined && now - at < KNOWN_GOOD_MS;
  }
}
