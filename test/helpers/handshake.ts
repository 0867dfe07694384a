import type { Duplex } from 'node:stream';
import {
  buildAgentRequest,
  encodeControl,
  FrameType,
  HeadReader,
  newNonce,
  parseTunnelResponse,
  OPEN_POLICY,
  POLICY_VERSION,
  policyDigest,
  SUPPORTED_VERSIONS,
  type AgentRole,
  type ServicePolicy,
} from '../../src/protocol/index.js';
import { answerChallenge, checkTunnelProofs } from '../../src/transport/agent-proof.js';
import { readControlFrame } from '../../src/transport/preamble.js';

/** What a raw handshake came to: a session's start, or a refusal from before or after the upgrade. */
export type RawOutcome =
  | { ok: true; sessionId: string; rest: Buffer }
  | { ok: false; status: number; code: string; reason: string; retryAfterMs: number; inside: boolean };

export interface RawHello {
  role?: AgentRole;
  channel?: string;
  key?: string;
  token?: string;
  /** Extra request headers, e.g. X-Forwarded-For. */
  headers?: Record<string, string>;
  /** Protocol 3: the server agent's policy, sent in the request and signed. */
  policy?: ServicePolicy;
  /** Sign `policy` but leave its headers out of the request, as a meddler on the way would. */
  stripPolicy?: boolean;
  /** Offered versions; this code's by default. Version 1 sends `key` and `token` in Authorization (a legacy agent). */
  versions?: readonly number[];
  /** Bytes sent right after the request, in the same write (before any answer). */
  after?: Buffer;
  /** Write the request one byte per write. */
  byteByByte?: boolean;
  /** Frames sent in the same write as the AUTH frame, before the tunnel answered it. */
  afterAuth?: Buffer;
}

/** The request head of a raw handshake, and the nonce it carries. */
export function rawRequest(hello: RawHello): { head: string; nonce: string } {
  const nonce = newNonce();
  const versions = hello.versions ?? SUPPORTED_VERSIONS;
  const legacy = versions.includes(1) && !versions.some((v) => v >= 2) ? { legacy: { key: hello.key, token: hello.token } } : {};
  let head = buildAgentRequest(
    { role: hello.role ?? 'server', channel: hello.channel ?? '/', versions, ...(versions.some((v) => v >= 2) ? { nonce } : {}), ...legacy, policy: hello.stripPolicy ? undefined : hello.policy },
    { host: 'x', userAgent: 'test' },
  );
  for (const [k, v] of Object.entries(hello.headers ?? {})) head = head.replace('\r\n\r\n', `\r\n${k}: ${v}\r\n\r\n`);
  return { head, nonce };
}

/**
 * Does an agent's handshake by hand over `socket`, as another implementation
 * would from docs/protocol.md: the request, the 101 or an HTTP refusal, then
 * (protocol 2) the proofs each way or a REFUSE. The socket is paused and
 * handed back with the bytes after the handshake in `rest`.
 */
export async function rawHandshake(socket: Duplex, hello: RawHello = {}): Promise<RawOutcome> {
  const { head, nonce } = rawRequest(hello);
  const bytes = Buffer.concat([Buffer.from(head, 'latin1'), hello.after ?? Buffer.alloc(0)]);
  if (hello.byteByByte) {
    for (const byte of bytes) {
      socket.write(Buffer.from([byte]));
      await new Promise((resolve) => setImmediate(resolve));
    }
  } else {
    socket.write(bytes);
  }
  const answer = await readAnswer(socket);
  if (!answer.parsed.ok) return { ...answer.parsed, ok: false, inside: false };
  const { sessionId, challenge, version } = answer.parsed;
  if (!challenge) return { ok: true, sessionId, rest: answer.rest };
  const role = hello.role ?? 'server';
  const channel = hello.channel ?? '/';
  const policy = version >= POLICY_VERSION ? policyDigest(hello.policy ?? OPEN_POLICY) : undefined;
  const proofs = await answerChallenge(role, channel, hello, { agentNonce: nonce, tunnelNonce: challenge.nonce, sessionId, policy }, challenge);
  socket.write(Buffer.concat([encodeControl({ type: FrameType.Auth, streamId: 0, fields: proofs.fields }), hello.afterAuth ?? Buffer.alloc(0)]));
  const { frame, rest } = await readControlFrame(socket, answer.rest, Date.now() + 10_000, 'the tunnel’s AUTH');
  if (frame.type === FrameType.Refuse) {
    const { status, code, reason, retryAfterS } = frame.refusal;
    return { ok: false, status, code, reason, retryAfterMs: retryAfterS * 1000, inside: true };
  }
  if (frame.type !== FrameType.Auth) throw new Error(`the tunnel sent frame type ${frame.type} instead of AUTH`);
  checkTunnelProofs(proofs, frame.fields, channel);
  return { ok: true, sessionId, rest };
}

/** Reads the tunnel's answer head, and a refusal's one-line body. */
function readAnswer(socket: Duplex): Promise<{ parsed: ReturnType<typeof parseTunnelResponse>; rest: Buffer }> {
  const reader = new HeadReader();
  let head: { head: string; rest: Buffer } | null = null;
  let body: Buffer = Buffer.alloc(0);
  return new Promise((resolve, reject) => {
    const finish = (ended: boolean): void => {
      if (!head) return void (ended && reject(new Error('the tunnel closed before answering')));
      const parsed = parseTunnelResponse(head.head, body.toString());
      if (parsed.ok || ended || body.includes(0x0a)) {
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.pause();
        resolve({ parsed, rest: parsed.ok ? body : Buffer.alloc(0) });
      }
    };
    const onData = (chunk: Buffer): void => {
      if (!head) {
        head = reader.push(chunk);
        if (head) body = head.rest;
      } else {
        body = Buffer.concat([body, chunk]);
      }
      finish(false);
    };
    const onEnd = (): void => finish(true);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.resume();
  });
}
