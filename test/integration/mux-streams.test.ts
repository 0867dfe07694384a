import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import net from 'node:net';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { digest, KINDS, readAll, sessionPair, sha256 } from '../helpers/mux.js';

for (const kind of KINDS) {
  describe(`mux streams over ${kind}`, () => {
    test('100 concurrent streams of random sizes arrive sha256-equal in both directions', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      const seenByTunnel = new Map<number, Promise<{ length: number; sha: string }>>();
      const sentByTunnel = new Map<number, Buffer>();
      tunnel.on('stream', (stream) => {
        seenByTunnel.set(stream.id, digest(stream));
        const reply = randomBytes(randomInt(0, 300_000));
        sentByTunnel.set(stream.id, reply);
        stream.end(reply);
      });
      const runs = Array.from({ length: 100 }, async () => {
        const payload = randomBytes(randomInt(0, 300_000));
        const stream = agent.open({ channel: '/', remoteAddress: '198.51.100.1', remotePort: 4000 });
        const received = digest(stream);
        for (let at = 0; at < payload.length; at += 17_000) stream.write(payload.subarray(at, at + 17_000));
        stream.end();
        const got = await received;
        assert.equal(got.sha, sha256(sentByTunnel.get(stream.id)!), `reply on stream ${stream.id}`);
        const seen = await seenByTunnel.get(stream.id)!;
        assert.deepEqual(seen, { length: payload.length, sha: sha256(payload) }, `request on stream ${stream.id}`);
      });
      await Promise.all(runs);
      assert.equal(agent.stats().streams, 0);
      assert.equal(tunnel.stats().streams, 0);
      assert.equal(tunnel.stats().bufferedBytes, 0);
      await close();
    });

    test('the open metadata reaches the peer', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      const incoming = once(tunnel, 'stream');
      const stream = agent.open({ channel: '/db', remoteAddress: '2001:db8::7', remotePort: 61000 });
      const [peer] = await incoming;
      peer.on('error', () => {});
      assert.deepEqual(peer.meta, { channel: '/db', remoteAddress: '2001:db8::7', remotePort: 61000 });
      assert.equal(stream.id % 2, 1, 'agent streams are odd');
      agent.on('stream', (s) => s.on('error', () => {}));
      const back = tunnel.open({ channel: '/db' });
      assert.equal(back.id % 2, 0, 'tunnel streams are even');
      back.destroy();
      stream.destroy();
      await close();
    });

    test('pipeline(stream, socket, stream) carries a real TCP echo service', async () => {
      const echo = net.createServer((socket) => socket.pipe(socket));
      echo.listen(0, '127.0.0.1');
      await once(echo, 'listening');
      const { port } = echo.address() as net.AddressInfo;
      const { agent, tunnel, close } = await sessionPair(kind);
      agent.on('stream', (stream) => {
        const socket = net.connect(port, '127.0.0.1', () => stream.accept());
        pipeline(stream, socket, stream).catch(() => {});
      });
      const payload = randomBytes(3 * 1024 * 1024);
      const stream = tunnel.open();
      const accepted = once(stream, 'accept');
      const result = readAll(stream);
      stream.end(payload);
      await accepted;
      assert.ok((await result).equals(payload));
      await close();
      echo.close();
    });
  });
}

test('frames that came in the same read as the handshake are handled after the owner subscribes: an OPEN among them is accepted', async () => {
  const { encodeFrame, FrameType, Role } = await import('../../src/protocol/index.js');
  const { Session } = await import('../../src/mux/session.js');
  const { memoryPair } = await import('../helpers/pairs.js');
  const [a, b] = memoryPair();
  const head = Buffer.concat([
    encodeFrame({ type: FrameType.Open, streamId: 1, meta: { channel: '/', remoteAddress: '', remotePort: 0 } }),
    encodeFrame({ type: FrameType.Data, streamId: 1, payload: Buffer.from('early') }),
    encodeFrame({ type: FrameType.Fin, streamId: 1 }),
  ]);
  const session = new Session(a, { role: Role.Acceptor, head });
  const received = new Promise<Buffer>((resolve) => session.on('stream', (s) => resolve(readAll(s)))); // subscribed after construction
  assert.equal((await received).toString(), 'early');
  b.destroy();
  await session.destroy();
});
