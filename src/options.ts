import { RhostError } from './errors.js';

/**
 * Options are a `Partial<Config>` merged over documented defaults, then
 * verified. A bad option throws ERR_RHOST_BAD_OPTION naming the option.
 */

/** Throws ERR_RHOST_BAD_OPTION for `name`. */
export function badOption(name: string, message: string): never {
  throw new RhostError('ERR_RHOST_BAD_OPTION', `option ${name} ${message}`);
}

/** Checks that `value` is an integer in [min, max]. */
export function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    badOption(name, `must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Merges `partial` over `defaults`, ignoring keys whose value is undefined. */
export function mergeOptions<T extends object>(defaults: T, partial: Partial<T> | undefined): T {
  const out = { ...defaults };
  if (partial) {
    for (const [key, value] of Object.entries(partial)) {
      if (value !== undefined) (out as Record<string, unknown>)[key] = value;
    }
  }
  return out;
}
