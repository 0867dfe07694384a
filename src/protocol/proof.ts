import { createHash, createHmac, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * How agents prove a key or a token without sending it (docs/protocol.md
 * §3.2): the construction of SCRAM-SHA-256 (RFC 5802, RFC 7677), over
 * nonces from both sides. Pure computation: no sockets, no state but a
 * small cache of derived secrets.
 *
 * A secret is stretched with PBKDF2 over a salt the tunnel chooses per
 * channel. From that come a ClientKey, known only to whoever knows the
 * secret; a StoredKey = SHA-256(ClientKey), enough to check a proof but
 * not to make one; and a ServerKey, with which the checking side proves in
 * turn that it holds the verifier. The agent sends
 * ClientKey XOR HMAC(StoredKey, message); the tunnel answers with
 * HMAC(ServerKey, message). The message names the purpose, the role, the
 * channel, both nonces and the session, so a proof is good for one
 * handshake only.
 */

/** Bytes of every key, proof and signature: SHA-256's output. */
export const PROOF_BYTES = 32;

/** Bytes of a nonce (each side's): 128 bits, never reused. */
export const NONCE_BYTES = 16;

/** Bytes of the salt the tunnel chooses per channel. */
export const SALT_BYTES = 16;

/** PBKDF2 iterations a tunnel asks for by default: about 12 ms on one core of this machine's kind. */
export const DEFAULT_ITERATIONS = 50_000;

/** Iterations an agent agrees to compute: fewer would make offline guessing cheap, more a way to stall it. */
export const MIN_ITERATIONS = 1000;
export const MAX_ITERATIONS = 1_000_000;

/** What a secret proves: a channel's key (server agents), or its token (client agents). */
export type ProofPurpose = 'key' | 'token';

/** What a tunnel keeps to check proofs of one secret, and to prove itself. */
export interface Verifier {
  salt: Buffer;
  iterations: number;
  storedKey: Buffer;
  serverKey: Buffer;
}

/** Everything derived from a secret: its verifier, and the ClientKey only its owner has. */
export interface DerivedSecret extends Verifier {
  clientKey: Buffer;
}

/** What one handshake's proofs are bound to. */
export interface ProofContext {
  role: 'server' | 'client';
  channel: string;
  /** Both nonces and the session id, exactly as they appeared in the headers. */
  agentNonce: string;
  tunnelNonce: string;
  sessionId: string;
  /** Version 3: the digest of the server agent's policy (policyDigest); absent in version 2. */
  policy?: string | undefined;
}

const hmac = (key: Buffer, data: Buffer | string): Buffer => createHmac('sha256', key).update(data).digest();
const sha256 = (data: Buffer): Buffer => createHash('sha256').update(data).digest();

/** A fresh nonce, as the text a header carries (base64url, no padding). */
export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString('base64url');
}

/** True for what a handshake may carry as a nonce: base64url of 16 to 48 bytes. */
export function isNonce(text: string | undefined): text is string {
  return text !== undefined && /^[A-Za-z0-9_-]{22,64}$/.test(text);
}

/** The purpose is part of PBKDF2's salt: a key and a token that happen to be equal still derive apart. */
function saltFor(purpose: ProofPurpose, salt: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`rhost-${purpose}:`, 'latin1'), salt]);
}

/** The verifier parts of a salted secret. */
function fromSalted(salted: Buffer, salt: Buffer, iterations: number): DerivedSecret {
  const clientKey = hmac(salted, 'Client Key');
  return { salt, iterations, clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

/** Bounded memo of derivations: agents derive once per tunnel salt, not once per reconnect. */
const derived = new Map<string, Promise<DerivedSecret>>();
const MAX_CACHED = 64;

/**
 * Stretches `secret` for `purpose` over `salt` (PBKDF2-HMAC-SHA-256, off
 * the event loop) and derives its keys. Results are remembered per
 * secret, purpose, salt and iteration count.
 */
export function deriveSecret(secret: string, purpose: ProofPurpose, salt: Buffer, iterations: number): Promise<DerivedSecret> {
  const id = sha256(Buffer.from(`${purpose}\0${iterations}\0${salt.toString('hex')}\0${secret}`, 'utf8')).toString('hex');
  let hit = derived.get(id);
  if (!hit) {
    hit = new Promise<DerivedSecret>((resolve, reject) => {
      pbkdf2(secret, saltFor(purpose, salt), iterations, PROOF_BYTES, 'sha256', (err, salted) => {
        if (err) reject(err);
        else resolve(fromSalted(salted, salt, iterations));
      });
    });
    hit.catch(() => derived.delete(id));
    if (derived.size >= MAX_CACHED) derived.delete(derived.keys().next().value!);
    derived.set(id, hit);
  }
  return hit;
}

/**
 * The message both proofs sign: `rhost-proof/2`, the purpose, role,
 * channel, agent nonce, tunnel nonce and session id, joined by commas
 * (none of them can contain one). Version 3 is `rhost-proof/3` with the
 * policy digest last.
 */
export function proofMessage(purpose: ProofPurpose, context: ProofContext): Buffer {
  const { role, channel, agentNonce, tunnelNonce, sessionId, policy } = context;
  const parts = [policy === undefined ? 'rhost-proof/2' : 'rhost-proof/3', purpose, role, channel, agentNonce, tunnelNonce, sessionId];
  if (policy !== undefined) parts.push(policy);
  return Buffer.from(parts.join(','), 'utf8');
}

/** The agent's proof: ClientKey XOR HMAC(StoredKey, message). */
export function clientProof(secret: DerivedSecret, message: Buffer): Buffer {
  const signature = hmac(secret.storedKey, message);
  const proof = Buffer.allocUnsafe(PROOF_BYTES);
  for (let i = 0; i < PROOF_BYTES; i++) proof[i] = secret.clientKey[i]! ^ signature[i]!;
  return proof;
}

/**
 * Checks an agent's proof against a verifier, in constant time: recovers
 * the ClientKey the proof implies and compares its hash with StoredKey.
 */
export function checkClientProof(verifier: Verifier, message: Buffer, proof: Buffer | undefined): boolean {
  if (proof === undefined || proof.length !== PROOF_BYTES) return false;
  const signature = hmac(verifier.storedKey, message);
  const clientKey = Buffer.allocUnsafe(PROOF_BYTES);
  for (let i = 0; i < PROOF_BYTES; i++) clientKey[i] = proof[i]! ^ signature[i]!;
  return timingSafeEqual(sha256(clientKey), verifier.storedKey);
}

/** The tunnel's proof that it holds the verifier: HMAC(ServerKey, message). */
export function serverSignature(verifier: Verifier, message: Buffer): Buffer {
  return hmac(verifier.serverKey, message);
}

/** Checks the tunnel's signature, in constant time. */
export function checkServerSignature(secret: Verifier, message: Buffer, signature: Buffer | undefined): boolean {
  return signature !== undefined && signature.length === PROOF_BYTES && timingSafeEqual(serverSignature(secret, message), signature);
}

/** A verifier as the TokenVerifier field carries it: u8 salt length, salt, u32 iterations, StoredKey, ServerKey. */
export function encodeVerifier(v: Verifier): Buffer {
  const out = Buffer.allocUnsafe(1 + v.salt.length + 4 + 2 * PROOF_BYTES);
  out[0] = v.salt.length;
  v.salt.copy(out, 1);
  out.writeUInt32BE(v.iterations, 1 + v.salt.length);
  v.storedKey.copy(out, 5 + v.salt.length);
  v.serverKey.copy(out, 5 + v.salt.length + PROOF_BYTES);
  return out;
}

/** Parses a TokenVerifier field; null when it is malformed. */
export function decodeVerifier(field: Buffer): Verifier | null {
  const saltLength = field[0];
  if (saltLength === undefined || field.length !== 1 + saltLength + 4 + 2 * PROOF_BYTES) return null;
  const iterations = field.readUInt32BE(1 + saltLength);
  const keys = 5 + saltLength;
  return {
    salt: Buffer.from(field.subarray(1, 1 + saltLength)),
    iterations,
    storedKey: Buffer.from(field.subarray(keys, keys + PROOF_BYTES)),
    serverKey: Buffer.from(field.subarray(keys + PROOF_BYTES)),
  };
}

/** True when two verifiers check the same secret (the StoredKeys match, compared in constant time). */
export function sameVerifier(a: Verifier, b: Verifier): boolean {
  return a.iterations === b.iterations && a.salt.equals(b.salt) && timingSafeEqual(a.storedKey, b.storedKey);
}
