import {
  AuthTag,
  checkClientProof,
  decodeVerifier,
  deriveSecret,
  HandshakeError,
  proofMessage,
  serverSignature,
  type AuthFields,
  type ProofContext,
  type Verifier,
} from '../protocol/index.js';
import { secretsEqual, type ChannelTable } from './channels.js';

/**
 * The tunnel's side of the proofs (docs/protocol.md §3.2): whether an
 * agent's AUTH proves what its channel requires, and the tunnel's
 * answering proofs. A name that is not a channel is answered exactly as a
 * channel whose key the agent got wrong, so names cannot be listed.
 */

/** The outcome of checking an agent's credentials. */
export type Verdict =
  | { ok: false; refusal: HandshakeError }
  | {
      ok: true;
      /** The fields of the tunnel's AUTH answer. */
      reply: AuthFields;
      /** Server agents: the verifier they registered for client agents' tokens, if any. */
      tokenVerifier: Verifier | undefined;
    };

const refuse = (code: 'ERR_RHOST_BAD_KEY' | 'ERR_RHOST_BAD_TOKEN' | 'ERR_RHOST_UNAUTHORIZED' | 'ERR_RHOST_BAD_HANDSHAKE', reason: string): Verdict => ({
  ok: false,
  refusal: new HandshakeError(code, reason),
});

const badKey = (name: string): Verdict => refuse('ERR_RHOST_BAD_KEY', `bad key for ${name} (or the tunnel has no channel ${name})`);

/** A server agent's version 2 AUTH: the key proof its channel needs, and the verifier of its token. */
export function checkServerAuth(channels: ChannelTable, context: ProofContext, fields: AuthFields): Verdict {
  const { channel: name } = context;
  const channel = channels.get(name);
  const reply: AuthFields = new Map();
  if (!channel || channel.key !== null) {
    const proof = fields.get(AuthTag.KeyProof);
    if (proof === undefined) return refuse('ERR_RHOST_UNAUTHORIZED', `a key is required for ${name}`);
    const verifier = channels.keyVerifierOf(name);
    const message = proofMessage('key', context);
    // The proof is checked even for a name with no channel (against a decoy): a refusal costs the same either way.
    if (!checkClientProof(verifier, message, proof) || !channel) return badKey(name);
    reply.set(AuthTag.KeySignature, serverSignature(verifier, message));
  }
  const field = fields.get(AuthTag.TokenVerifier);
  let tokenVerifier: Verifier | undefined;
  if (field !== undefined) {
    const v = decodeVerifier(field);
    if (!v || !v.salt.equals(channels.salt(name)) || v.iterations !== channels.iterations) {
      return refuse('ERR_RHOST_BAD_HANDSHAKE', `the token verifier for ${name} does not use the salt and iterations the tunnel gave`);
    }
    tokenVerifier = v;
  }
  return { ok: true, reply, tokenVerifier };
}

/** A client agent's version 2 AUTH: the proof of the token its channel's server agent registered. */
export function checkClientAuth(verifier: Verifier, context: ProofContext, fields: AuthFields): Verdict {
  const proof = fields.get(AuthTag.TokenProof);
  if (proof === undefined) return refuse('ERR_RHOST_UNAUTHORIZED', `a token is required for ${context.channel}`);
  const message = proofMessage('token', context);
  if (!checkClientProof(verifier, message, proof)) return refuse('ERR_RHOST_BAD_TOKEN', `bad token for ${context.channel}`);
  return { ok: true, reply: new Map([[AuthTag.TokenSignature, serverSignature(verifier, message)]]), tokenVerifier: undefined };
}

/**
 * A version 1 server agent (`allowLegacyAuth`): its key compared in
 * constant time, its token turned into a verifier here, so that version 2
 * client agents can subscribe to its channel.
 */
export async function checkLegacyServer(channels: ChannelTable, name: string, key: string | undefined, token: string | undefined): Promise<Verdict> {
  const channel = channels.get(name);
  if (!channel || channel.key !== null) {
    if (key === undefined) return refuse('ERR_RHOST_UNAUTHORIZED', `a key is required for ${name}`);
    if (!secretsEqual(key, channel?.key ?? '\0no channel') || !channel) return badKey(name);
  }
  const tokenVerifier = token === undefined ? undefined : await deriveSecret(token, 'token', channels.salt(name), channels.iterations);
  return { ok: true, reply: new Map(), tokenVerifier };
}

/** A version 1 client agent (`allowLegacyAuth`): its token checked against the registered verifier. */
export async function checkLegacyClient(verifier: Verifier, name: string, token: string | undefined): Promise<Verdict> {
  if (token === undefined) return refuse('ERR_RHOST_UNAUTHORIZED', `a token is required for ${name}`);
  const derived = await deriveSecret(token, 'token', verifier.salt, verifier.iterations);
  if (!secretsEqual(derived.storedKey.toString('hex'), verifier.storedKey.toString('hex'))) return refuse('ERR_RHOST_BAD_TOKEN', `bad token for ${name}`);
  return { ok: true, reply: new Map(), tokenVerifier: undefined };
}
