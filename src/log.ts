/**
 * The library never logs by itself: it takes an optional Logger. The CLI
 * supplies one (pretty lines for humans, or JSON with `--log json`). Child
 * loggers carry context such as `{ channel, session, stream }`.
 */
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
  /**
   * Optional: whether a level is written at all. The per-connection lines
   * are only formatted when it says yes; a logger without it gets them all.
   */
  enabled?(level: LogLevel): boolean;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** True when `logger` writes `level`: callers skip building lines nobody reads. */
export function logsAt(logger: Logger, level: LogLevel): boolean {
  return logger.enabled ? logger.enabled(level) : true;
}

/** A logger that drops everything: the library default. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
  enabled() {
    return false;
  },
};

/** Byte counts for log lines: `950 B`, `1.5 MB`. */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = -1;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** Durations for log lines: `850 ms`, `12.3 s`. */
export function formatDuration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** `after 1.2 s, 300 B in, 1.5 MB out (closed)`: how a carried connection ended. */
export function describeEnd(end: { bytesIn: number; bytesOut: number; durationMs: number; reason: string }): string {
  return `after ${formatDuration(end.durationMs)}, ${formatBytes(end.bytesIn)} in, ${formatBytes(end.bytesOut)} out (${end.reason})`;
}

/**
 * Peer-supplied text as it may appear in a log line: every control
 * character, escape sequence, line or paragraph separator and bidi override
 * written as `\uXXXX`, so a peer can neither fake a log line nor drive a
 * terminal.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Peer-supplied text in double quotes, escaped as by {@link printable} (and `"`, `\\`): it cannot pass for our own words. */
export function quote(text: string): string {
  return `"${printable(text.replace(/["\\]/g, (c) => `\\${c}`))}"`;
}

/** What one carried connection contributes to a summary. */
interface Carried {
  bytesIn: number;
  bytesOut: number;
  reason: string;
}

/**
 * The default log of a busy tunnel or agent: one line per channel per
 * interval that had traffic (users opened and ended, now open, bytes each
 * way, how many ended other than cleanly), instead of a line for every
 * connection. A `pgbench -C` run that wrote 5,300 lines writes one a
 * minute. The per-connection lines are at debug level, for when they are
 * wanted.
 */
export class TrafficSummary {
  readonly #log: Logger;
  readonly #noun: string;
  readonly #intervalMs: number;
  readonly #channels = new Map<string, { opened: number; ended: number; open: number; bytesIn: number; bytesOut: number; cut: number }>();
  #timer: NodeJS.Timeout | null = null;

  /** `noun` names what is counted: `users`. */
  constructor(log: Logger, noun: string, intervalMs: number) {
    this.#log = log;
    this.#noun = noun;
    this.#intervalMs = intervalMs;
  }

  opened(channel: string): void {
    const c = this.#entry(channel);
    c.opened++;
    c.open++;
    this.#timer ??= setInterval(() => this.flush(), this.#intervalMs).unref();
  }

  closed(channel: string, end: Carried): void {
    const c = this.#entry(channel);
    c.ended++;
    c.open--;
    c.bytesIn += end.bytesIn;
    c.bytesOut += end.bytesOut;
    if (end.reason !== 'closed') c.cut++;
  }

  /** Writes the lines of the interval that ends, and starts the next. */
  flush(): void {
    if (!logsAt(this.#log, 'info')) return;
    const interval = formatDuration(this.#intervalMs);
    for (const [channel, c] of this.#channels) {
      if (c.opened === 0 && c.ended === 0) {
        if (c.open === 0) this.#channels.delete(channel);
        continue;
      }
      const cut = c.cut ? `, ${c.cut} cut short` : '';
      this.#log.info(
        `${channel}: ${c.opened} ${this.#noun} came and ${c.ended} left in the last ${interval}, ${c.open} now; ${formatBytes(c.bytesIn)} in, ${formatBytes(c.bytesOut)} out${cut}`,
        { event: 'traffic', channel, opened: c.opened, ended: c.ended, open: c.open, bytesIn: c.bytesIn, bytesOut: c.bytesOut, cut: c.cut },
      );
      Object.assign(c, { opened: 0, ended: 0, bytesIn: 0, bytesOut: 0, cut: 0 });
    }
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  #entry(channel: string) {
    let c = this.#channels.get(channel);
    if (!c) this.#channels.set(channel, (c = { opened: 0, ended: 0, open: 0, bytesIn: 0, bytesOut: 0, cut: 0 }));
    return c;
  }
}
