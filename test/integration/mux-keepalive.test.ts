import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { FrameType, Role } from '../../src/protocol/index.js';
import { Session } from '../../src/mux/session.js';
import { closed, KINDS, randomSource, rawPeer, sessionPair } from '../helpers/mux.js';
import { cuttablePair } from '../helpers/pairs.js';
import { pipeline } from 'node:stream/promises';

for (const kind of KINDS) {
  describe(`keepalive over ${kind}`, () => {
    test('PING/PONG measures the round trip', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      const rtt = await agent.ping();
      assert.ok(rtt > 0 && rtt < 5000, `rtt ${rtt}`);
      assert.equal(agent.stats().rttMs, rtt);
      assert.ok((await tunnel.ping()) > 0);
      await close();
    });

    test('a peer that never answers is declared dead within the keepalive timeout', async () => {
      const peer = await rawPeer(kind, { pingIntervalMs: 50, keepaliveTimeoutMs: 300 });
      const started = performance.now();
      const err = (await closed(peer.session)) as Error & { code?: string };
      const elapsed = performance.now() - started;
      assert.equal(err.code, 'ERR_RHOST_KEEPALIVE_TIMEOUT');
      assert.ok(elapsed >= 290, `declared dead after ${elapsed} ms, before the timeout`);
      assert.ok(elapsed < 300 + 700, `declared dead after ${elapsed} ms`);
      assert.ok(peer.frames.some((f) => f.type === FrameType.Ping), 'it pinged first');
    });

    test('a peer that stops reading trips the write timeout', async () => {
      const peer = await rawPeer(kind, { writeTimeoutMs: 300, sendBufferBytes: 64 * 1024, pingIntervalMs: 0 });
      const stream = peer.session.open();
      stream.on('error', () => {});
      peer.send({ type: FrameType.Window, streamId: stream.id, increment: 2 ** 31 - 1 - 65536 });
      await new Promise((resolve) => peer.raw.once('data', resolve));
      peer.raw.pause();
      pipeline(randomSource(1024 * 1024 * 1024).stream, stream).catch(() => {});
      const err = (await closed(peer.session)) as Error & { code?: string };
      assert.equal(err.code, 'ERR_RHOST_WRITE_TIMEOUT');
      peer.raw.destroy();
    });
  });
}

describe('dead links', () => {
  test('a link that silently drops everything is detected by both sides', async () => {
    const { a, b, cut } = cuttablePair();
    const options = { pingIntervalMs: 50, keepaliveTimeoutMs: 250 };
    const agent = new Session(a, { ...options, role: Role.Initiator });
    const tunnel = new Session(b, { ...options, role: Role.Acceptor });
    await agent.ping();
    cut();
    const started = performance.now();
    const [agentErr, tunnelErr] = (await Promise.all([closed(agent), closed(tunnel)])) as Array<Error & { code?: string }>;
    const elapsed = performance.now() - started;
    assert.equal(agentErr!.code, 'ERR_RHOST_KEEPALIVE_TIMEOUT');
    assert.equal(tunnelErr!.code, 'ERR_RHOST_KEEPALIVE_TIMEOUT');
    assert.ok(elapsed < 250 + 700, `detected after ${elapsed} ms`);
  });
});
