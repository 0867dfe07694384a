import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AuthTag,
  checkClientProof,
  clientProof,
  decodeVerifier,
  deriveSecret,
  encodeControl,
  encodeVerifier,
  FrameType,
  proofMessage,
  sameVerifier,
  serverSignature,
  takeControlFrame,
  type ProofContext,
} from '../../src/protocol/index.js';
import { answerChallenge, checkTunnelProofs } from '../../src/transport/agent-proof.js';

/** docs/protocol.md §11.2 lists the same vector. */
const VECTOR = {
  key: 'correct horse battery staple',
  salt: Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex'),
  iterations: 4096,
  context: {
    role: 'server',
    channel: '/ssh',
    agentNonce: 'AAECAwQFBgcICQoLDA0ODw',
    tunnelNonce: 'EBESExQVFhcYGRobHB0eHw',
    sessionId: '6f1c0e3a9b2d4c5e8f7a6b5c4d3e2f10',
  } satisfies ProofContext,
  storedKey: 'ea3ebb096d1d7185891e84251837868872540440d3d756070c067b89f57bce91',
  serverKey: '3efa7a8cc64d9e8cc74d9cbce100d95e418f4ca76b41abcd353521fc0687befb',
  proof: 'f8ade5d78e203d284544ddc2a2f8edf6484e8f31516288772c1e1ded25a89f4e',
  signature: '0848375c4e9ec159955f4ad3fb46eba97ef9d8099bb7d452ab207208f3a89a36',
};

describe('proofs of a key or token', () => {
  test('the spec’s vector: derived keys, the agent’s proof and the tunnel’s signature', async () => {
    const secret = await deriveSecret(VECTOR.key, 'key', VECTOR.salt, VECTOR.iterations);
    const message = proofMessage('key', VECTOR.context);
    assert.equal(message.toString(), 'rhost-proof/2,key,server,/ssh,AAECAwQFBgcICQoLDA0ODw,EBESExQVFhcYGRobHB0eHw,6f1c0e3a9b2d4c5e8f7a6b5c4d3e2f10');
    assert.equal(secret.storedKey.toString('hex'), VECTOR.storedKey);
    assert.equal(secret.serverKey.toString('hex'), VECTOR.serverKey);
    assert.equal(clientProof(secret, message).toString('hex'), VECTOR.proof);
    assert.equal(serverSignature(secret, message).toString('hex'), VECTOR.signature);
  });

  test('a proof checks against the verifier alone, and against nothing else', async () => {
    const secret = await deriveSecret(VECTOR.key, 'key', VECTOR.salt, VECTOR.iterations);
    const verifier = { salt: secret.salt, iterations: secret.iterations, storedKey: secret.storedKey, serverKey: secret.serverKey };
    const message = proofMessage('key', VECTOR.context);
    const proof = clientProof(secret, message);
    assert.ok(checkClientProof(verifier, message, proof));
    const wrong = await deriveSecret('correct horse battery stapl', 'key', VECTOR.salt, VECTOR.iterations);
    assert.ok(!checkClientProof(verifier, message, clientProof(wrong, message)), 'a wrong key');
    // A recorded proof is good for its own handshake only: any other nonce, session, channel, role or purpose refuses it.
    for (const change of [{ tunnelNonce: 'EBESExQVFhcYGRobHB0eHx' }, { agentNonce: 'AAECAwQFBgcICQoLDA0ODx' }, { sessionId: '0'.repeat(32) }, { channel: '/db' }, { role: 'client' as const }]) {
      assert.ok(!checkClientProof(verifier, proofMessage('key', { ...VECTOR.context, ...change }), proof), `replayed with ${JSON.stringify(change)}`);
    }
    assert.ok(!checkClientProof(verifier, proofMessage('token', VECTOR.context), proof), 'a key proof is no token proof');
    assert.ok(!checkClientProof(verifier, message, proof.subarray(0, 31)), 'a short proof');
    assert.ok(!checkClientProof(verifier, message, undefined));
  });

  test('the same secret as a key and as a token derives apart', async () => {
    const asKey = await deriveSecret('same', 'key', VECTOR.salt, 1000);
    const asToken = await deriveSecret('same', 'token', VECTOR.salt, 1000);
    assert.notDeepEqual(asKey.storedKey, asToken.storedKey);
  });

  test('a verifier crosses the wire without its ClientKey and comes back the same', async () => {
    const secret = await deriveSecret('t0ken', 'token', VECTOR.salt, 1000);
    const field = encodeVerifier(secret);
    assert.ok(!field.includes(secret.clientKey), 'the ClientKey never leaves the agent');
    const back = decodeVerifier(field)!;
    assert.ok(sameVerifier(back, secret));
    assert.equal(decodeVerifier(field.subarray(1)), null);
    assert.equal(decodeVerifier(Buffer.alloc(0)), null);
  });
});

describe('the agent’s side of AUTH', () => {
  const context = { agentNonce: VECTOR.context.agentNonce, tunnelNonce: VECTOR.context.tunnelNonce, sessionId: VECTOR.context.sessionId };
  const challenge = { nonce: VECTOR.context.tunnelNonce, salt: VECTOR.salt, iterations: VECTOR.iterations };

  test('a server agent proves its key and registers its token’s verifier, and checks the tunnel’s signature', async () => {
    const proofs = await answerChallenge('server', '/ssh', { key: VECTOR.key, token: 't0ken' }, context, challenge);
    assert.equal(proofs.fields.get(AuthTag.KeyProof)!.toString('hex'), VECTOR.proof);
    assert.ok(proofs.fields.has(AuthTag.TokenVerifier));
    assert.ok(!proofs.fields.has(AuthTag.TokenProof));
    checkTunnelProofs(proofs, new Map([[AuthTag.KeySignature, Buffer.from(VECTOR.signature, 'hex')]]), '/ssh');
    assert.throws(() => checkTunnelProofs(proofs, new Map([[AuthTag.KeySignature, Buffer.alloc(32)]]), '/ssh'), { code: 'ERR_RHOST_TUNNEL_PROOF' });
    assert.throws(() => checkTunnelProofs(proofs, new Map(), '/ssh'), (err: Error & { code?: string }) => err.code === 'ERR_RHOST_TUNNEL_PROOF' && /open on the tunnel/.test(err.message));
  });

  test('a client agent proves its token; an agent with no secret sends no proof and expects none', async () => {
    const client = await answerChallenge('client', '/ssh', { token: 't0ken' }, context, challenge);
    assert.deepEqual([...client.fields.keys()], [AuthTag.TokenProof]);
    assert.equal(client.expected.length, 1);
    const bare = await answerChallenge('server', '/', {}, context, challenge);
    assert.equal(bare.fields.size, 0);
    checkTunnelProofs(bare, new Map(), '/');
  });

  test('AUTH and REFUSE frames are taken off a byte stream whole, at any split, with what follows', () => {
    const auth = encodeControl({ type: FrameType.Auth, streamId: 0, fields: new Map([[AuthTag.TokenProof, Buffer.alloc(32, 9)]]) });
    const after = Buffer.from([0, 0, 0, 0, 3, 0, 0, 0, 7]);
    const wire = Buffer.concat([auth, after]);
    for (let i = 0; i < wire.length; i++) {
      const taken = takeControlFrame(wire.subarray(0, i));
      if (i < auth.length) assert.equal(taken, null, `prefix ${i}`);
      else assert.deepEqual(taken!.rest, wire.subarray(auth.length, i));
    }
    const refuse = encodeControl({ type: FrameType.Refuse, streamId: 0, refusal: { status: 429, retryAfterS: 8, code: 'ERR_RHOST_RATE_LIMITED', reason: 'later\nplease' } });
    const taken = takeControlFrame(refuse)!;
    assert.deepEqual(taken.frame, { type: FrameType.Refuse, streamId: 0, refusal: { status: 429, retryAfterS: 8, code: 'ERR_RHOST_RATE_LIMITED', reason: 'later please' } });
    assert.throws(() => takeControlFrame(Buffer.from('000000020000000001ffff', 'hex')), /DATA before the session/);
    assert.throws(() => takeControlFrame(Buffer.from('000000007f00000000', 'hex')), /unknown type/);
  });
});
