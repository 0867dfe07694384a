import { createHash, timingSafeEqual } from 'node:crypto';
import type { RhostErrorCode } from '../errors.js';
import type { Session } from '../mux/session.js';

/** One channel: its configured key, the server agent holding it, and the client agents on it. */
export interface Channel {
  readonly name: string;
  /** The key server agents must present; null for a channel the operator opened explicitly. */
  readonly key: string | null;
  server: Session | null;
  /** A server agent's registration is under way (checking the holder, answering 101). */
  registering: boolean;
  /** The token the current (or last) server agent set for client agents; undefined: none may subscribe. */
  token: string | undefined;
  readonly clients: Set<Session>;
}

/**
 * Compares two secrets in constant time. Both are hashed first, so neither
 * the content nor the length of the configured secret leaks through timing.
 */
export function secretsEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** The tunnel's channels: only those the operator configured exist. */
export class ChannelTable {
  readonly #channels = new Map<string, Channel>();

  constructor(keys: Record<string, string>, openChannels: readonly string[]) {
    for (const [name, key] of Object.entries(keys)) this.#add(name, key);
    for (const name of openChannels) this.#add(name, null);
  }

  get(name: string): Channel | undefined {
    return this.#channels.get(name);
  }

  /** All channels, for stats and shutdown. */
  all(): IterableIterator<Channel> {
    return this.#channels.values();
  }

  /** Why a server agent may not register `name` with `key`, or null if it may. */
  checkServer(name: string, key: string | undefined): { code: RhostErrorCode; reason: string } | null {
    const channel = this.#channels.get(name);
    if (!channel) return { code: 'ERR_RHOST_UNKNOWN_CHANNEL', reason: `no channel ${name} on this tunnel` };
    if (channel.key === null) return null;
    if (key === undefined) return { code: 'ERR_RHOST_UNAUTHORIZED', reason: `a key is required for ${name}` };
    if (!secretsEqual(key, channel.key)) return { code: 'ERR_RHOST_BAD_KEY', reason: `bad key for ${name}` };
    return null;
  }

  /** Why a client agent may not subscribe to `name` with `token`, or null if it may. */
  checkClient(name: string, token: string | undefined): { code: RhostErrorCode; reason: string } | null {
    const channel = this.#channels.get(name);
    if (!channel) return { code: 'ERR_RHOST_UNKNOWN_CHANNEL', reason: `no channel ${name} on this tunnel` };
    if (!channel.server && channel.token === undefined) {
      return { code: 'ERR_RHOST_NO_SERVER', reason: `no server agent is registered on ${name}` };
    }
    if (channel.token === undefined) return { code: 'ERR_RHOST_NO_CLIENTS', reason: `the server agent on ${name} accepts no client agents (it set no token)` };
    if (token === undefined) return { code: 'ERR_RHOST_UNAUTHORIZED', reason: `a token is required for ${name}` };
    if (!secretsEqual(token, channel.token)) return { code: 'ERR_RHOST_BAD_TOKEN', reason: `bad token for ${name}` };
    return null;
  }

  #add(name: string, key: string | null): void {
    this.#channels.set(name, { name, key, server: null, registering: false, token: undefined, clients: new Set() });
  }
}
