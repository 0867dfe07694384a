import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { FrameType, INITIAL_WINDOW_BYTES, Role, WireError, type Frame } from '../../src/protocol/index.js';
import { Session } from '../../src/mux/session.js';
import type { Stream } from '../../src/mux/stream.js';
import { closed, delayedPair, digest, KINDS, randomSource, rawPeer, sessionPair } from '../helpers/mux.js';
import { until } from '../helpers/wait.js';
import { usedMemory } from '../helpers/system.js';

const MiB = 1024 * 1024;

for (const kind of KINDS) {
  describe(`flow control over ${kind}`, () => {
    test('a peer that overruns the window gets GOAWAY FLOW_CONTROL_ERROR', async () => {
      const peer = await rawPeer(kind);
      peer.session.on('stream', (s) => s.on('error', () => {}));
      const ended = closed(peer.session);
      peer.send(
        { type: FrameType.Open, streamId: 2, meta: { channel: '/', remoteAddress: '', remotePort: 0 } },
        { type: FrameType.Data, streamId: 2, payload: Buffer.alloc(INITIAL_WINDOW_BYTES) },
        { type: FrameType.Data, streamId: 2, payload: Buffer.alloc(1) },
      );
      const goaway = await peer.next((f): f is Frame & { type: FrameType.GoAway; code: number } => f.type === FrameType.GoAway);
      assert.equal(goaway.code, WireError.FlowControlError);
      const err = (await ended) as Error & { code?: string };
      assert.equal(err.code, 'ERR_RHOST_FLOW_CONTROL');
    });

    test('a reader that does not read holds the sender to one window', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      const incoming = once(tunnel, 'stream') as Promise<[Stream]>;
      const source = randomSource(8 * MiB);
      const stream = agent.open();
      const sent = pipeline(source.stream, stream);
      const [peer] = await incoming;
      await until(() => tunnel.stats().bufferedBytes >= INITIAL_WINDOW_BYTES, 'the window to fill');
      // A PING round trip each way as a barrier: any DATA past the window would have been sent, and read, before its PONG.
      await agent.ping();
      await tunnel.ping();
      assert.equal(tunnel.stats().bufferedBytes, INITIAL_WINDOW_BYTES, 'exactly one window is buffered');
      assert.ok(source.produced() < INITIAL_WINDOW_BYTES + 4 * 64 * 1024, `sender produced ${source.produced()} bytes`);
      assert.equal(peer.receiveWindow, INITIAL_WINDOW_BYTES, 'a stalled stream does not grow its window');
      const got = digest(peer);
      await sent;
      assert.deepEqual(await got, { length: 8 * MiB, sha: source.sha() });
      peer.end();
      await close();
    });

    test('a stalled reader does not hold up other streams; memory stays bounded while 1 GiB waits behind it', async () => {
      const budget = 4 * MiB;
      const { agent, tunnel, close } = await sessionPair(kind, {}, { maxSessionWindowBytes: budget });
      const streams = new Map<number, Stream>();
      tunnel.on('stream', (s: Stream) => {
        s.on('error', () => {});
        streams.set(s.id, s);
      });
      const stalledSource = randomSource(1024 * MiB);
      const stalled = agent.open();
      stalled.on('error', () => {});
      pipeline(stalledSource.stream, stalled).catch(() => {});
      const heapBefore = usedMemory();
      let maxBuffered = 0;
      const others = Array.from({ length: 20 }, async () => {
        const source = randomSource(2 * MiB);
        const s = agent.open();
        const sending = pipeline(source.stream, s);
        await until(() => streams.has(s.id), 'the peer stream');
        const peerStream = streams.get(s.id)!;
        peerStream.on('data', () => (maxBuffered = Math.max(maxBuffered, tunnel.stats().bufferedBytes)));
        const got = await digest(peerStream);
        await sending;
        assert.deepEqual(got, { length: 2 * MiB, sha: source.sha() });
      });
      await Promise.all(others);
      const bound = 21 * INITIAL_WINDOW_BYTES + budget; // every window, at most
      assert.ok(maxBuffered <= bound, `buffered ${maxBuffered} bytes, bound ${bound}`);
      assert.ok(stalledSource.produced() < 1 * MiB, `the stalled stream moved only ${stalledSource.produced()} bytes of 1 GiB`);
      assert.ok(usedMemory() - heapBefore < 64 * MiB, 'heap stayed bounded');
      stalled.destroy();
      await close();
    });
  });
}

describe('window auto-tuning', () => {
  test('a stream on a 20 ms round trip grows its window, within the stream maximum', async () => {
    const [a, b] = delayedPair(10);
    const agent = new Session(a, { role: Role.Initiator, maxStreamWindowBytes: 4 * MiB });
    const tunnel = new Session(b, { role: Role.Acceptor });
    await agent.ping();
    const incoming = once(agent, 'stream') as Promise<[Stream]>;
    const source = randomSource(24 * MiB);
    const stream = tunnel.open();
    const sending = pipeline(source.stream, stream);
    const [peer] = await incoming;
    let maxBuffered = 0;
    peer.on('data', () => (maxBuffered = Math.max(maxBuffered, agent.stats().bufferedBytes)));
    const got = await digest(peer);
    await sending;
    assert.deepEqual(got, { length: 24 * MiB, sha: source.sha() });
    assert.ok(peer.receiveWindow > 1 * MiB, `window grew to ${peer.receiveWindow}`);
    assert.ok(peer.receiveWindow <= 4 * MiB, `window stayed within its maximum: ${peer.receiveWindow}`);
    assert.ok(maxBuffered <= 4 * MiB);
    await Promise.all([agent.destroy(), tunnel.destroy()]);
  });

  test('the session budget caps the growth of all windows together', async () => {
    const [a, b] = delayedPair(10);
    const agent = new Session(a, { role: Role.Initiator, maxSessionWindowBytes: 512 * 1024 });
    const tunnel = new Session(b, { role: Role.Acceptor });
    await agent.ping();
    const peers: Stream[] = [];
    agent.on('stream', (s: Stream) => peers.push(s));
    const transfers = Array.from({ length: 4 }, async () => {
      const source = randomSource(8 * MiB);
      const stream = tunnel.open();
      await pipeline(source.stream, stream);
    });
    await until(() => peers.length === 4, 'four streams');
    const reads = peers.map((p) => digest(p));
    await Promise.all(transfers);
    await Promise.all(reads);
    const growth = peers.reduce((sum, p) => sum + p.receiveWindow - INITIAL_WINDOW_BYTES, 0);
    assert.ok(growth <= 512 * 1024, `windows grew by ${growth} bytes in total`);
    await Promise.all([agent.destroy(), tunnel.destroy()]);
  });
});
