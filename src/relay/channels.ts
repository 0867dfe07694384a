import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Session } from '../mux/session.js';
import { deriveSecret, newNonce, SALT_BYTES, type Challenge, type Verifier } from '../protocol/index.js';
import { ChannelPolicy, type OperatorPolicy } from './policy.js';

/** One channel: how its key is checked, the server agent holding it, and the client agents on it. */
export interface Channel {
  readonly name: string;
  /** The key, for version 1 agents (`allowLegacyAuth`); null for a channel the operator opened explicitly. */
  readonly key: string | null;
  /** What a key proof is checked against; null for an open channel. */
  keyVerifier: Verifier | null;
  server: Session | null;
  /** A server agent's registration is under way (checking the holder, answering). */
  registering: boolean;
  /**
   * The verifier the current (or last) server agent registered for client
   * agents' tokens; undefined: none may subscribe. The tunnel never learns
   * the token itself.
   */
  tokenVerifier: Verifier | undefined;
  readonly clients: Set<Session>;
  /** Who may come in: what the server agent declared (protocol 3) and what the operator set. */
  readonly policy: ChannelPolicy;
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

/**
 * The tunnel's channels: only those the operator configured exist. It
 * also makes every challenge: a fresh nonce, and a salt per channel name
 * derived from a secret of this process, so a name that exists and one
 * that does not get salts alike, and a name keeps its salt while the
 * process lives (a server agent re-registering the same token then
 * registers the very same verifier).
 */
export class ChannelTable {
  readonly iterations: number;
  readonly #channels = new Map<string, Channel>();
  readonly #saltSecret = randomBytes(32);
  /** Checked for names with no key, so a refusal costs the same work either way. */
  readonly #decoy: Verifier;

  constructor(keys: Record<string, string>, openChannels: readonly string[], iterations: number, policies: Readonly<Record<string, OperatorPolicy>> = {}) {
    this.iterations = iterations;
    for (const [name, key] of Object.entries(keys)) this.#add(name, key, policies[name]);
    for (const name of openChannels) this.#add(name, null, policies[name]);
    this.#decoy = { salt: Buffer.alloc(SALT_BYTES), iterations, storedKey: randomBytes(32), serverKey: randomBytes(32) };
  }

  /** Derives the key verifiers (PBKDF2, off the event loop); call before serving. */
  async prepare(): Promise<void> {
    await Promise.all(
      [...this.#channels.values()].map(async (c) => {
        if (c.key !== null && c.keyVerifier === null) c.keyVerifier = await deriveSecret(c.key, 'key', this.salt(c.name), this.iterations);
      }),
    );
  }

  get(name: string): Channel | undefined {
    return this.#channels.get(name);
  }

  /** All channels, for stats and shutdown. */
  all(): IterableIterator<Channel> {
    return this.#channels.values();
  }

  /** The salt of a channel name, existing or not. */
  salt(name: string): Buffer {
    return createHmac('sha256', this.#saltSecret).update(name, 'utf8').digest().subarray(0, SALT_BYTES);
  }

  /** A fresh challenge for a handshake on `name`. */
  challenge(name: string): Challenge {
    return { nonce: newNonce(), salt: this.salt(name), iterations: this.iterations };
  }

  /** What a key proof for `name` is checked against: its verifier, or a decoy that matches nothing. */
  keyVerifierOf(name: string): Verifier {
    return this.#channels.get(name)?.keyVerifier ?? this.#decoy;
  }

  #add(name: string, key: string | null, policy: OperatorPolicy | undefined): void {
    this.#channels.set(name, { name, key, keyVerifier: null, server: null, registering: false, tokenVerifier: undefined, clients: new Set(), policy: new ChannelPolicy(policy) });
  }
}
