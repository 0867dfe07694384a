import { AddressSet, OPEN_POLICY, type ServicePolicy } from '../protocol/index.js';

/** Allow and deny lists the operator sets for a channel on the tunnel. */
export interface OperatorPolicy {
  allow?: string[];
  deny?: string[];
}

interface Lists {
  allow: AddressSet | null;
  deny: AddressSet | null;
}

function compile(allow: readonly string[] | undefined, deny: readonly string[] | undefined): Lists {
  return { allow: allow?.length ? new AddressSet(allow) : null, deny: deny?.length ? new AddressSet(deny) : null };
}

/** `ip` null: the tunnel does not know the client (a trusted proxy that did not say): an allow list cannot admit it. */
function passes(lists: Lists, ip: string | null): boolean {
  if (lists.allow && (ip === null || !lists.allow.has(ip))) return false;
  return !(lists.deny && ip !== null && lists.deny.has(ip));
}

/**
 * Who may reach one channel: what its server agent declared (protocol 3:
 * public by name, allow and deny lists) and what the operator set on the
 * tunnel. The two combine as the stricter: a client must pass both. The
 * tunnel checks it before any byte of the user reaches the agent.
 */
export class ChannelPolicy {
  readonly #operator: Lists;
  #agent: Lists = { allow: null, deny: null };
  #declared: ServicePolicy = OPEN_POLICY;

  /** Throws TypeError for a bad operator entry. */
  constructor(operator: OperatorPolicy | undefined) {
    this.#operator = compile(operator?.allow, operator?.deny);
  }

  /** The current server agent's declaration; the open policy when it leaves. */
  declare(policy: ServicePolicy): void {
    this.#declared = policy;
    this.#agent = compile(policy.allow, policy.deny);
  }

  /** The channel's server agent asked to be reachable by name. */
  get public(): boolean {
    return this.#declared.public;
  }

  /** May a client from `ip` (null: unknown) come in? */
  admits(ip: string | null): boolean {
    return passes(this.#operator, ip) && passes(this.#agent, ip);
  }

  /** True when either side restricts anyone: a check is needed at all. */
  get restricts(): boolean {
    return !!(this.#operator.allow || this.#operator.deny || this.#agent.allow || this.#agent.deny);
  }
}
