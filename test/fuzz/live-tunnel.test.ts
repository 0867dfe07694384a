import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { Session } from '../../src/mux/session.js';
import { AuthTag, buildAgentRequest, encodeControl, encodeFrame, encodeHeader, FrameType, MAX_DATA_PAYLOAD_BYTES, newNonce, Role, takeControlFrame, type Frame } from '../../src/protocol/index.js';
import { errorFacts } from '../../src/errors.js';
import { rawRequest } from '../helpers/handshake.js';
import { dialTunnel } from '../../src/transport/dial.js';
import { parseTunnelAddress } from '../../src/transport/address.js';
import type { ClientAgent, ServerAgent, Tunnel } from '../../src/index.js';
import { Cleanup, listening, request, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';
import { until } from '../helpers/wait.js';
import { connectFakeAgent, writeAndSettle } from '../helpers/fuzz-agent.js';
import { usedMemory } from '../helpers/system.js';

/**
 * Fuzzes a running tunnel from the outside: as a stranger, as a misbehaving
 * server agent and as a misbehaving client agent. Time-boxed: a few seconds
 * in `npm test`; `npm run fuzz` sets FUZZ_SECONDS for a long run.
 */
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 4);
const PROPERTY_MS = (SECONDS * 1000) / 4;
/** Bound on the tunnel answering a PING or ending a session: reaching it is a hang, and fails the run. */
const SETTLE_BOUND_MS = 5000;

/**
 * Runs a property for a quarter of the time box. When time is up fast-check
 * stops waiting for the run in flight but does not stop it: it is awaited
 * here, and its failure reported, so that no run outlives its test.
 */
async function fuzz<T>(arbitrary: fc.Arbitrary<T>, run: (value: T) => Promise<void>): Promise<void> {
  let inFlight: Promise<void> = Promise.resolve();
  await fc.assert(fc.asyncProperty(arbitrary, (value) => (inFlight = run(value))), { interruptAfterTimeLimit: PROPERTY_MS, numRuns: 1_000_000, includeErrorInReport: true });
  await inFlight;
}

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const problems: string[] = [];
const onRejection = (err: unknown): void => void problems.push(`unhandled rejection: ${String(err)}`);
const onException = (err: unknown): void => void problems.push(`uncaught exception: ${String(err)}`);

/** First bytes the tunnel takes for an agent (docs/protocol.md §2); it answers those within its handshake timeout. */
const AGENT_MARKER = /^GET \/\.rhost[ ?]/;

/**
 * Sends bytes on a fresh connection and returns what came back. A would-be
 * agent waits for the tunnel's answer (or close); a user gets 150 ms, since
 * the app may wait for the rest of a request forever.
 */
async function poke(port: number, chunks: Buffer[], end: boolean): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  const agentLike = AGENT_MARKER.test(Buffer.concat(chunks).toString('latin1'));
  for (const c of chunks) socket.write(c);
  if (end) socket.end();
  await new Promise<void>((resolve, reject) => {
    const timer = agentLike ? setTimeout(() => reject(new Error(`the tunnel left a handshake unanswered for ${SETTLE_BOUND_MS} ms`)), SETTLE_BOUND_MS) : setTimeout(resolve, 150);
    const done = (): void => (clearTimeout(timer), resolve());
    socket.once('close', done);
    if (agentLike) socket.on('data', () => Buffer.concat(got).includes('\r\n\r\n') && done());
  });
  socket.destroy();
  return Buffer.concat(got);
}

const VALID_HEAD = buildAgentRequest({ role: 'server', channel: '/f', versions: [2], nonce: newNonce() }, { host: 'x', userAgent: 'fuzz' });

/** Mutations of a byte string: flips, cuts, duplications, insertions. */
const mutated = (base: Buffer): fc.Arbitrary<Buffer> =>
  fc
    .array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 3 }), fc.uint8Array({ minLength: 1, maxLength: 8 })), { maxLength: 6 })
    .map((edits) => {
      let b = Buffer.from(base);
      for (const [at, kind, bytes] of edits) {
        const i = b.length ? at % b.length : 0;
        if (kind === 0) b[i] = bytes[0]!;
        else if (kind === 1) b = b.subarray(0, i);
        else if (kind === 2) b = Buffer.concat([b.subarray(0, i), Buffer.from(bytes), b.subarray(i)]);
        else b = Buffer.concat([b, b.subarray(i, i + 64)]);
      }
      return b;
    });

const HTTP_GET = Buffer.from('GET /index.html HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n');

const userBytes = fc.oneof(
  fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a)),
  mutated(HTTP_GET),
  mutated(Buffer.from('GET /.rhost HTTP/1.1\r\n')),
  mutated(Buffer.from(VALID_HEAD)),
  mutated(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')),
);

/** Stream ids: mostly the first few of either side (agents open odd ones, the tunnel even ones), then others, 0 and the extremes. */
const streamId = fc.oneof({ arbitrary: fc.integer({ min: 1, max: 7 }), weight: 4 }, fc.integer({ min: 0, max: 16 }), fc.constantFrom(2 ** 31, 2 ** 32 - 1));
const errorCode = fc.oneof(fc.nat(20), fc.constantFrom(2 ** 31, 2 ** 32 - 1));
/** A window may not pass 2^31 − 1: the large increments overflow the 64 KiB a stream starts with; 0 is a PROTOCOL_ERROR. */
const increment = fc.oneof(fc.integer({ min: 1, max: 1 << 20 }), fc.constantFrom(0, 2 ** 31 - 65_536, 2 ** 31 - 1, 2 ** 32 - 1));
/** Payloads: noise, a request the app answers, and sizes around the 64 KiB initial window. */
const payload = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  fc.constant(HTTP_GET),
  fc.tuple(fc.integer({ min: 60_000, max: 70_000 }), fc.nat(255)).map(([n, fill]) => Buffer.alloc(n, fill)),
);
const reason = fc.string({ maxLength: 20 });
const meta = fc.record({ channel: fc.constantFrom('/', '/c', '/f', ''), remoteAddress: fc.string({ maxLength: 8 }), remotePort: fc.nat(65535) });

/** Frames of every type with hostile values. GOAWAY is rare, so that most runs get past their first one. */
const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  { arbitrary: fc.record({ type: fc.constant(FrameType.Data as const), streamId, payload }), weight: 6 },
  { arbitrary: fc.record({ type: fc.constant(FrameType.Open as const), streamId, meta }), weight: 4 },
  { arbitrary: fc.record({ type: fc.constantFrom(FrameType.Ack as const, FrameType.Fin as const), streamId }) as fc.Arbitrary<Frame>, weight: 3 },
  { arbitrary: fc.record({ type: fc.constant(FrameType.Window as const), streamId, increment }), weight: 3 },
  { arbitrary: fc.record({ type: fc.constant(FrameType.Rst as const), streamId, code: errorCode, reason }), weight: 2 },
  fc.record({ type: fc.constantFrom(FrameType.Ping as const, FrameType.Pong as const), streamId: fc.constant(0 as const), opaque: fc.uint8Array({ minLength: 8, maxLength: 8 }).map((a) => Buffer.from(a)) }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.GoAway as const), streamId: fc.constant(0 as const), code: fc.oneof(fc.constant(0), errorCode), reason }),
);

/** A frame of a type version 1 does not know: ignored with up to 1 KiB of payload, a FRAME_SIZE_ERROR beyond. */
const unknownFrame = fc
  .tuple(fc.integer({ min: 9, max: 255 }), streamId, fc.nat(1100))
  .map(([type, id, length]) => Buffer.concat([encodeHeader(type, id, length), Buffer.alloc(length, type)]));

/** A bare header of any type and length (past the window, past 256 KiB, 4 GiB), then a few bytes. */
const rawHeader = fc
  .tuple(fc.oneof(fc.nat(2048), fc.constantFrom(65_537, MAX_DATA_PAYLOAD_BYTES, MAX_DATA_PAYLOAD_BYTES + 1, 2 ** 32 - 1)), fc.nat(255), streamId, fc.uint8Array({ maxLength: 32 }))
  .map(([length, type, id, rest]) => Buffer.concat([encodeHeader(type, id, length), rest]));

/**
 * One to three bursts of whole frames: the tunnel reads them all, so they
 * reach its session logic. In an orderly run the OPENs are renumbered 1, 3,
 * 5... as an agent must number them, so that later frames meet streams the
 * tunnel took.
 */
const wholeBursts = fc
  .tuple(fc.array(fc.array(fc.oneof({ arbitrary: frameArb, weight: 8 }, unknownFrame), { maxLength: 8 }), { minLength: 1, maxLength: 3 }), fc.boolean())
  .map(([bursts, orderly]) => {
    let next = 1;
    const encode = (f: Frame | Buffer): Buffer => {
      if (Buffer.isBuffer(f)) return f;
      if (!orderly || f.type !== FrameType.Open) return encodeFrame(f);
      const id = next;
      next += 2;
      return encodeFrame({ ...f, streamId: id });
    };
    return bursts.map((frames) => Buffer.concat(frames.map(encode)));
  });

/** One to three bursts of frames, bare headers and noise, with a few bytes overwritten: mostly framing errors. */
const brokenBursts = fc.array(
  fc
    .tuple(
      fc.array(fc.oneof({ arbitrary: frameArb.map(encodeFrame), weight: 4 }, rawHeader, fc.uint8Array({ maxLength: 256 }).map((a) => Buffer.from(a))), { maxLength: 12 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
    )
    .map(([parts, flips]) => {
      const wire = Buffer.concat(parts);
      for (const [at, v] of flips) if (wire.length) wire[at % wire.length] = v;
      return wire;
    }),
  { minLength: 1, maxLength: 3 },
);

/** What a fake agent writes in one run. */
const bursts = fc.oneof(wholeBursts, brokenBursts);

describe(`fuzzing a live tunnel for ${SECONDS} s`, () => {
  const cleanup = new Cleanup();
  let tunnel: Tunnel;
  let port = 0;
  let clientPort = 0;
  let baselineHeap = 0;
  let real: Array<ServerAgent | ClientAgent> = [];
  let realSessions: Array<string | undefined> = [];
  let realDrops = 0;
  /** Sessions the tunnel reported ended ('agent-close'). */
  const gone = new Set<string>();
  const runs = { users: 0, auths: 0, servers: 0, serversClosed: 0, clients: 0, clientsClosed: 0 };

  before(async () => {
    process.on('unhandledRejection', onRejection);
    process.on('uncaughtException', onException);
    const app = http.createServer((_req, res) => res.end('real'));
    const appPort = await listening(app, cleanup);
    const keys = { '/': 'k', '/f': 'f', '/c': 'c' };
    ({ tunnel, port } = await startTunnel(cleanup, { keys, sniffTimeoutMs: 100, handshakeTimeoutMs: 300, authLockoutMs: 0, maxConnRatePerIp: 0 }));
    tunnel.on('agent-close', (info) => gone.add(info.sessionId));
    const tunnelAt = `127.0.0.1:${port}`;
    const root = await startServerAgent(cleanup, { tunnel: tunnelAt, target: String(appPort), key: 'k' });
    const channel = await startServerAgent(cleanup, { tunnel: tunnelAt, channel: '/c', target: String(appPort), key: 'c', token: 'tc' });
    const client = await startClientAgent(cleanup, { tunnel: tunnelAt, channel: '/c', token: 'tc' });
    clientPort = client.port;
    real = [root, channel, client.agent];
    realSessions = real.map((a) => a.session?.id);
    for (const agent of real) agent.on('disconnected', () => realDrops++);
    await realUsersServed();
    gc();
    baselineHeap = usedMemory();
  });
  after(async () => {
    await cleanup.run();
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  });

  /** Real users reach the app through `/` and through the client agent on /c. */
  async function realUsersServed(): Promise<void> {
    assert.equal((await request(port, { path: '/' })).body.toString(), 'real', 'a user of / is served');
    assert.equal((await request(clientPort, { path: '/' })).body.toString(), 'real', 'a user of /c is served');
  }

  /** The real agents still hold the very sessions they started with: none was ended and reconnected. */
  function realAgentsKeptTheirSessions(): void {
    assert.deepEqual(real.map((a) => a.session?.id), realSessions, 'the real agents kept their sessions');
    assert.equal(realDrops, 0, 'no real agent lost its session');
    assert.ok(!realSessions.some((id) => gone.has(id!)), 'the tunnel ended none of the real sessions');
  }

  async function released(sessionId: string): Promise<void> {
    await until(() => gone.has(sessionId), `the tunnel to end session ${sessionId.slice(0, 8)}`, SETTLE_BOUND_MS);
    gone.delete(sessionId);
  }

  async function settle(): Promise<void> {
    await until(() => {
      const s = tunnel.stats();
      return s.users === 0 && s.pending === 0 && s.servers === 2 && s.clients === 1;
    }, 'the tunnel to settle', 10_000);
    realAgentsKeptTheirSessions();
    gone.clear();
  }

  test('random and mutated bytes from users and would-be agents get the app or a known refusal', async () => {
    await fuzz(fc.tuple(fc.array(userBytes, { minLength: 1, maxLength: 3 }), fc.boolean()), async ([chunks, end]) => {
      runs.users++;
      const answer = (await poke(port, chunks, end)).toString('latin1');
      // A refusal from the tunnel itself names a known code, with that code's status; the rest came from the app.
      const code = /\r\nRhost-Error: ([^\r]*)\r\n/i.exec(answer)?.[1];
      if (code !== undefined) {
        const status = errorFacts(code)?.status;
        assert.ok(status !== undefined, `the tunnel refused with an unknown code ${JSON.stringify(code)}`);
        assert.ok(answer.startsWith(`HTTP/1.1 ${status} `), `${code} came with ${answer.slice(0, 12)}, not ${status}`);
      }
      assert.deepEqual(problems, [], 'nothing unhandled');
    });
    await settle();
  });

  test('hostile AUTH frames after a real 101 get a REFUSE or a close, and admit nobody', async () => {
    const field = fc.tuple(fc.integer({ min: 0, max: 8 }), fc.uint8Array({ maxLength: 80 })).map(([tag, v]) => [tag, Buffer.from(v)] as [number, Buffer]);
    const authArb = fc.oneof(
      fc.array(field, { maxLength: 5 }).map((fields) => encodeControl({ type: FrameType.Auth, streamId: 0, fields: new Map(fields) })),
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.concat([encodeHeader(FrameType.Auth, 0, a.length), Buffer.from(a)])),
      fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
      fc.constant(encodeControl({ type: FrameType.Auth, streamId: 0, fields: new Map([[AuthTag.KeyProof, Buffer.alloc(32)]]) })),
    );
    const agents = tunnel.stats().servers + tunnel.stats().clients;
    await fuzz(fc.tuple(fc.constantFrom('server', 'client'), fc.constantFrom('/f', '/c', '/nope'), authArb), async ([role, channel, auth]) => {
      runs.auths++;
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      await once(socket, 'connect');
      const got: Buffer[] = [];
      socket.on('data', (d: Buffer) => got.push(d));
      socket.write(rawRequest({ role: role as 'server' | 'client', channel }).head);
      await until(() => Buffer.concat(got).includes('\r\n\r\n'), 'the tunnel to answer the request', SETTLE_BOUND_MS);
      socket.write(auth);
      await until(() => socket.destroyed || socket.readableEnded, 'the tunnel to refuse or close', SETTLE_BOUND_MS);
      const all = Buffer.concat(got);
      const head = all.indexOf('\r\n\r\n');
      if (all.toString('latin1', 0, 12) === 'HTTP/1.1 101') {
        const after = all.subarray(head + 4);
        if (after.length > 0) {
          const taken = takeControlFrame(after);
          assert.ok(taken && taken.frame.type === FrameType.Refuse, 'after a 101, hostile AUTH gets a REFUSE, never AUTH or frames');
          assert.ok(errorFacts(taken.frame.type === FrameType.Refuse ? taken.frame.refusal.code : ''), 'the REFUSE names a known code');
        }
      }
      socket.destroy();
      assert.equal(tunnel.stats().servers + tunnel.stats().clients, agents, 'nobody was admitted');
      assert.deepEqual(problems, [], 'nothing unhandled');
    });
    realAgentsKeptTheirSessions();
    await realUsersServed();
    await settle();
  });

  test('a server agent that sends hostile frames ends at most its own session', async () => {
    await fuzz(bursts, async (written) => {
      runs.servers++;
      const fake = await connectFakeAgent(port, { role: 'server', channel: '/f', key: 'f', token: 'tf' });
      // A real client session opens streams, so that the fake agent's frames meet streams that exist.
      const client = await dialTunnel({ address: parseTunnelAddress(`127.0.0.1:${port}`), hello: { role: 'client', channel: '/f', token: 'tf' }, userAgent: 'fuzz', timeoutMs: 5000 });
      const session = new Session(client.transport, { role: Role.Initiator, id: client.sessionId, head: client.head });
      try {
        for (let i = 0; i < 3; i++) session.open({ channel: '/f' }).on('error', () => {}).write(Buffer.alloc(100 * i, i));
        await until(() => fake.opens === 3, 'the tunnel to open three streams on the fake agent', SETTLE_BOUND_MS);
        if (!(await writeAndSettle(fake, written, SETTLE_BOUND_MS))) runs.serversClosed++;
        await session.ping();
        assert.ok(!session.closed, 'whatever became of the fake server agent, the client session on its channel is still up');
      } finally {
        fake.socket.destroy();
        await session.destroy();
      }
      await Promise.all([released(fake.sessionId), released(session.id)]);
      realAgentsKeptTheirSessions();
      assert.equal((await request(port, { path: '/' })).body.toString(), 'real');
      assert.deepEqual(problems, [], 'nothing unhandled');
    });
    await settle();
  });

  test('a client agent that sends hostile frames ends at most its own session', async () => {
    await fuzz(bursts, async (written) => {
      runs.clients++;
      const fake = await connectFakeAgent(port, { role: 'client', channel: '/c', token: 'tc' });
      try {
        if (!(await writeAndSettle(fake, written, SETTLE_BOUND_MS))) runs.clientsClosed++;
      } finally {
        fake.socket.destroy();
      }
      await released(fake.sessionId);
      realAgentsKeptTheirSessions();
      await realUsersServed();
      assert.deepEqual(problems, [], 'nothing unhandled');
    });
    await settle();
  });

  test('afterwards the tunnel still serves, with memory back near its baseline and nothing unhandled', async () => {
    await realUsersServed();
    realAgentsKeptTheirSessions();
    gc();
    const grownMiB = (usedMemory() - baselineHeap) / 1024 / 1024;
    console.log(
      `fuzzed ${runs.users} user connections, ${runs.auths} AUTH frames, ${runs.servers} fake server-agent sessions (${runs.serversClosed} closed, ${runs.servers - runs.serversClosed} sane) ` +
        `and ${runs.clients} fake client-agent sessions (${runs.clientsClosed} closed, ${runs.clients - runs.clientsClosed} sane); heap ${grownMiB.toFixed(1)} MiB over baseline`,
    );
    assert.ok(grownMiB < 16, `heap grew by ${grownMiB.toFixed(1)} MiB`);
    assert.equal(tunnel.stats().bufferedBytes, 0);
    assert.deepEqual(problems, []);
  });
});
