import { RhostError } from '../errors.js';
import {
  AuthTag,
  checkServerSignature,
  clientProof,
  deriveSecret,
  encodeVerifier,
  proofMessage,
  type AgentRole,
  type AuthFields,
  type Challenge,
  type ProofContext,
  type Verifier,
} from '../protocol/index.js';

/** The secrets an agent holds. They never leave the process: only proofs and a verifier do. */
export interface AgentSecrets {
  /** Server agents: the channel's key. */
  key?: string | undefined;
  /** Server agents: the token client agents must prove. Client agents: that token. */
  token?: string | undefined;
}

/** What the tunnel's AUTH answer must prove, with what to check it. */
interface Expected {
  tag: AuthTag;
  what: string;
  secret: Verifier;
  message: Buffer;
}

/** The agent's AUTH fields for one handshake, and what the tunnel must prove back. */
export interface AgentProofs {
  fields: AuthFields;
  expected: Expected[];
}

/**
 * Answers a version 2 challenge (docs/protocol.md §3.2). A server agent
 * proves its key, if it has one, and registers the verifier of its token,
 * if it has one; a client agent proves its token. Each proof it sends
 * expects a signature back.
 */
export async function answerChallenge(role: AgentRole, channel: string, secrets: AgentSecrets, context: Omit<ProofContext, 'role' | 'channel'>, challenge: Challenge): Promise<AgentProofs> {
  const full: ProofContext = { role, channel, ...context };
  const fields: AuthFields = new Map();
  const expected: Expected[] = [];
  const { salt, iterations } = challenge;
  if (role === 'server') {
    if (secrets.key !== undefined) {
      const key = await deriveSecret(secrets.key, 'key', salt, iterations);
      const message = proofMessage('key', full);
      fields.set(AuthTag.KeyProof, clientProof(key, message));
      expected.push({ tag: AuthTag.KeySignature, what: 'the key', secret: key, message });
    }
    if (secrets.token !== undefined) {
      const token = await deriveSecret(secrets.token, 'token', salt, iterations);
      fields.set(AuthTag.TokenVerifier, encodeVerifier(token));
    }
  } else if (secrets.token !== undefined) {
    const token = await deriveSecret(secrets.token, 'token', salt, iterations);
    const message = proofMessage('token', full);
    fields.set(AuthTag.TokenProof, clientProof(token, message));
    expected.push({ tag: AuthTag.TokenSignature, what: 'the token', secret: token, message });
  }
  return { fields, expected };
}

/**
 * Checks the tunnel's answering proofs: an agent never serves a tunnel
 * that cannot show it knows the key (or holds the token's verifier).
 */
export function checkTunnelProofs(proofs: AgentProofs, answer: AuthFields, channel: string): void {
  for (const { tag, what, secret, message } of proofs.expected) {
    if (checkServerSignature(secret, message, answer.get(tag))) continue;
    const open = tag === AuthTag.KeySignature && !answer.has(tag) ? ` (if ${channel} is open on the tunnel, without a key, drop this agent's key or give the tunnel the key)` : '';
    throw new RhostError('ERR_RHOST_TUNNEL_PROOF', `the tunnel accepted this agent but did not prove it knows ${what} of ${channel}: it is not the real tunnel${open}`);
  }
}
