import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import fc from 'fast-check';
import { Session } from '../../src/mux/session.js';
import { buildAgentRequest, encodeFrame, FrameType, REFUSAL_STATUS, Role, type Frame } from '../../src/protocol/index.js';
import type { RhostErrorCode } from '../../src/errors.js';
import { dialTunnel } from '../../src/transport/dial.js';
import { parseTunnelAddress } from '../../src/transport/address.js';
import type { Tunnel } from '../../src/index.js';
import { Cleanup, listening, request, startServerAgent, startTunnel } from '../helpers/rig.js';
import { until } from '../helpers/mux.js';
import { usedMemory } from '../helpers/system.js';

/**
 * Fuzzes a running tunnel from the outside, as a stranger and as a
 * misbehaving agent. Time-boxed: a few seconds in `npm test`;
 * `npm run fuzz` sets FUZZ_SECONDS for a long run.
 */
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 4);

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const problems: string[] = [];
const onRejection = (err: unknown): void => void problems.push(`unhandled rejection: ${String(err)}`);
const onException = (err: unknown): void => void problems.push(`uncaught exception: ${String(err)}`);

/** Sends bytes on a fresh connection, then waits for the tunnel to answer, close, or 300 ms to pass. */
async function poke(port: number, chunks: Buffer[], end: boolean): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  for (const c of chunks) socket.write(c);
  if (end) socket.end();
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 150);
    socket.once('close', () => (clearTimeout(timer), resolve()));
  });
  socket.destroy();
  return Buffer.concat(got);
}

const VALID_HEAD = buildAgentRequest({ role: 'server', channel: '/f', versions: [1], key: 'f', token: 'tf' }, { host: 'x', userAgent: 'fuzz' });

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

const userBytes = fc.oneof(
  fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a)),
  mutated(Buffer.from('GET /index.html HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n')),
  mutated(Buffer.from('GET /.rhost HTTP/1.1\r\n')),
  mutated(Buffer.from(VALID_HEAD)),
  mutated(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')),
);

const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({ type: fc.constant(FrameType.Data as const), streamId: fc.integer({ min: 0, max: 8 }), payload: fc.uint8Array({ maxLength: 70_000 }).map((a) => Buffer.from(a)) }),
  fc.record({ type: fc.constant(FrameType.Open as const), streamId: fc.integer({ min: 1, max: 12 }), meta: fc.record({ channel: fc.string({ maxLength: 8 }), remoteAddress: fc.string({ maxLength: 8 }), remotePort: fc.nat(65535) }) }),
  fc.record({ type: fc.constantFrom(FrameType.Ack as const, FrameType.Fin as const), streamId: fc.integer({ min: 1, max: 8 }) }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.Rst as const), streamId: fc.integer({ min: 1, max: 8 }), code: fc.nat(20), reason: fc.string({ maxLength: 20 }) }),
  fc.record({ type: fc.constant(FrameType.Window as const), streamId: fc.integer({ min: 1, max: 8 }), increment: fc.integer({ min: 1, max: 2 ** 31 - 1 }) }),
  fc.record({ type: fc.constantFrom(FrameType.Ping as const, FrameType.Pong as const), streamId: fc.constant(0 as const), opaque: fc.uint8Array({ minLength: 8, maxLength: 8 }).map((a) => Buffer.from(a)) }) as fc.Arbitrary<Frame>,
  fc.record({ type: fc.constant(FrameType.GoAway as const), streamId: fc.constant(0 as const), code: fc.nat(20), reason: fc.string({ maxLength: 20 }) }),
);

const frameStream = fc
  .tuple(fc.array(frameArb, { maxLength: 12 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }))
  .map(([frames, flips]) => {
    const wire = Buffer.from(Buffer.concat(frames.map(encodeFrame)));
    for (const [at, v] of flips) if (wire.length) wire[at % wire.length] = v;
    return wire;
  });

describe(`fuzzing a live tunnel for ${SECONDS} s`, () => {
  const cleanup = new Cleanup();
  let tunnel: Tunnel;
  let port = 0;
  let baselineHeap = 0;
  const runs = { users: 0, agents: 0 };

  before(async () => {
    process.on('unhandledRejection', onRejection);
    process.on('uncaughtException', onException);
    const app = http.createServer((_req, res) => res.end('real'));
    const appPort = await listening(app, cleanup);
    ({ tunnel, port } = await startTunnel(cleanup, { keys: { '/': 'k', '/f': 'f' }, sniffTimeoutMs: 100, handshakeTimeoutMs: 300, authLockoutMs: 0 }));
    await startServerAgent(cleanup, { tunnel: `127.0.0.1:${port}`, target: String(appPort), key: 'k' });
    await request(port, { path: '/' });
    gc();
    baselineHeap = usedMemory();
  });
  after(async () => {
    await cleanup.run();
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  });

  async function settle(): Promise<void> {
    await until(() => {
      const s = tunnel.stats();
      return s.users === 0 && s.pending === 0 && s.servers === 1 && s.clients === 0;
    }, 'the tunnel to settle', 10_000);
  }

  test('random and mutated bytes from users and would-be agents', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(userBytes, { minLength: 1, maxLength: 3 }), fc.boolean(), async (chunks, end) => {
        runs.users++;
        const answer = (await poke(port, chunks, end)).toString('latin1');
        // A refusal from the tunnel itself names a known code, with that code's status; the rest came from the app.
        const code = /\r\nRhost-Error: ([^\r]*)\r\n/i.exec(answer)?.[1];
        if (code !== undefined) {
          const status = REFUSAL_STATUS[code as RhostErrorCode];
          assert.ok(status !== undefined, `the tunnel refused with an unknown code ${JSON.stringify(code)}`);
          assert.ok(answer.startsWith(`HTTP/1.1 ${status} `), `${code} came with ${answer.slice(0, 12)}, not ${status}`);
        }
        assert.deepEqual(problems, [], 'nothing unhandled');
      }),
      { interruptAfterTimeLimit: (SECONDS * 1000) / 2, numRuns: 1_000_000 },
    );
    await settle();
  });

  test('a registered agent that sends random and mutated frames ends only its own session', async () => {
    const address = parseTunnelAddress(`127.0.0.1:${port}`);
    await fc.assert(
      fc.asyncProperty(fc.array(frameStream, { minLength: 1, maxLength: 3 }), async (bursts) => {
        runs.agents++;
        const agent = await dialTunnel({ address, hello: { role: 'server', channel: '/f', key: 'f', token: 'tf' }, userAgent: 'fuzz', timeoutMs: 5000 });
        agent.transport.on('error', () => {});
        agent.transport.resume();
        // A real client agent opens streams, so that frames meet streams that exist.
        const client = await dialTunnel({ address, hello: { role: 'client', channel: '/f', token: 'tf' }, userAgent: 'fuzz', timeoutMs: 5000 });
        const session = new Session(client.transport, { role: Role.Initiator, head: client.head });
        for (let i = 0; i < 3; i++) {
          const s = session.open({ channel: '/f' });
          s.on('error', () => {});
          s.write(Buffer.alloc(100 * i, i));
        }
        for (const burst of bursts) agent.transport.write(burst);
        await new Promise((resolve) => setTimeout(resolve, 20));
        agent.transport.destroy();
        await session.destroy();
        await until(() => !tunnel.stats().channels.find((c) => c.name === '/f')!.server && tunnel.stats().clients === 0, 'the fake agents to be gone', 5000);
      }),
      { interruptAfterTimeLimit: (SECONDS * 1000) / 2, numRuns: 1_000_000 },
    );
    await settle();
  });

  test('afterwards the tunnel still serves, with memory back near its baseline and nothing unhandled', async () => {
    assert.equal((await request(port, { path: '/' })).body.toString(), 'real');
    gc();
    const grownMiB = (usedMemory() - baselineHeap) / 1024 / 1024;
    console.log(`fuzzed ${runs.users} user connections and ${runs.agents} agent sessions; heap ${grownMiB.toFixed(1)} MiB over baseline`);
    assert.ok(grownMiB < 16, `heap grew by ${grownMiB.toFixed(1)} MiB`);
    assert.equal(tunnel.stats().bufferedBytes, 0);
    assert.deepEqual(problems, []);
  });
});
