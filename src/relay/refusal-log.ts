import { formatDuration, type LogFields, type Logger } from '../log.js';

/** Addresses whose refusals one summary names; the rest are summed up in one line. */
const NAMED_PER_SUMMARY = 20;
/** Addresses remembered between summaries. */
const MAX_ADDRESSES = 4096;

interface Tally {
  count: number;
  codes: Map<string, number>;
}

/**
 * Refused handshakes in the log without letting a stranger write it: the
 * first refusal from an address in each interval is logged as it happens,
 * and the rest are counted and summed up, per address and code, when the
 * interval ends (`flush`). A loop of bad handshakes from one address then
 * costs one line a minute, not one per attempt.
 */
export class RefusalLog {
  readonly #log: Logger;
  readonly #tallies = new Map<string, Tally>();
  #overflow = 0;

  constructor(log: Logger) {
    this.#log = log;
  }

  /**
   * An agent from `ip` was refused; logs it (at `level`) unless that
   * address was refused already this interval.
   */
  refused(ip: string, code: string, message: string, fields: LogFields, level: 'info' | 'warn' = 'warn'): void {
    const tally = this.#tallies.get(ip);
    if (tally === undefined) {
      if (this.#tallies.size >= MAX_ADDRESSES) {
        this.#overflow++;
        return;
      }
      this.#tallies.set(ip, { count: 0, codes: new Map() });
      this.#log[level](message, fields);
      return;
    }
    tally.count++;
    tally.codes.set(code, (tally.codes.get(code) ?? 0) + 1);
  }

  /** Sums up what was not logged in the interval of `intervalMs` that ends, and starts a new one. */
  flush(intervalMs: number): void {
    const interval = formatDuration(intervalMs);
    const loud = [...this.#tallies].filter(([, t]) => t.count > 0).sort((a, b) => b[1].count - a[1].count);
    for (const [ip, t] of loud.slice(0, NAMED_PER_SUMMARY)) {
      const codes = [...t.codes].map(([code, n]) => `${n} ${code}`).join(', ');
      this.#log.warn(`refused ${t.count} more handshakes from ${ip} in the last ${interval} (${codes})`, { remote: ip, refused: t.count });
    }
    const rest = loud.slice(NAMED_PER_SUMMARY).reduce((n, [, t]) => n + t.count, 0) + this.#overflow;
    if (rest > 0) this.#log.warn(`refused ${rest} more handshakes from other addresses in the last ${interval}`, { refused: rest });
    this.#tallies.clear();
    this.#overflow = 0;
  }
}
