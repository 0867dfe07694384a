import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { FrameType, WireError, type Frame } from '../../src/protocol/index.js';
import { Session } from '../../src/mux/session.js';
import type { Stream } from '../../src/mux/stream.js';
import { closed, KINDS, rawPeer, readAll, sessionPair } from '../helpers/mux.js';
import { until } from '../helpers/wait.js';

type Err = Error & { code?: string; wireCode?: number };

for (const kind of KINDS) {
  describe(`GOAWAY and limits over ${kind}`, () => {
    test('close() drains: no new streams, open ones finish, both sessions end cleanly', async () => {
      const { agent, tunnel } = await sessionPair(kind);
      const peers: Stream[] = [];
      tunnel.on('stream', (s: Stream) => peers.push(s));
      const payloads = [randomBytes(500_000), randomBytes(10), randomBytes(2_000_000)];
      const streams = payloads.map(() => agent.open());
      await new Promise<void>((resolve) => tunnel.on('stream', () => peers.length === 3 && resolve()));
      const goaway = once(agent, 'goaway');
      const tunnelClosed = tunnel.close();
      const [code] = await goaway;
      assert.equal(code, WireError.NoError);
      assert.throws(() => agent.open(), (err: Err) => err.code === 'ERR_RHOST_GOING_AWAY');
      const reads = peers.map((p) => readAll(p));
      streams.forEach((s, i) => s.end(payloads[i]));
      const got = await Promise.all(reads);
      got.forEach((g, i) => assert.ok(g.equals(payloads[i]!), `stream ${i} finished intact`));
      peers.forEach((p) => p.end('done'));
      await Promise.all(streams.map((s) => readAll(s)));
      await tunnelClosed;
      assert.equal(await closed(agent), undefined, 'the agent session ended cleanly');
    });

    test('close() resets the streams still open after the drain timeout', async () => {
      const { agent, tunnel } = await sessionPair(kind, {}, { drainTimeoutMs: 200 });
      tunnel.on('stream', (s: Stream) => s.on('error', () => {}));
      const stream = agent.open();
      stream.write('never finished');
      await once(tunnel, 'stream');
      const failure = once(stream, 'error') as Promise<[Err]>;
      await tunnel.close();
      const [err] = await failure;
      assert.equal(err.code, 'ERR_RHOST_SESSION_CLOSED');
      await closed(agent);
    });

    test('opening past maxStreams throws here and is refused by the peer', async () => {
      const { agent, tunnel, close } = await sessionPair(kind, { maxStreams: 3 }, { maxStreams: 2 });
      tunnel.on('stream', (s: Stream) => {
        s.on('error', () => {});
        s.accept();
      });
      const [s1, s2, s3] = [agent.open(), agent.open(), agent.open()];
      assert.throws(() => agent.open(), (err: Err) => err.code === 'ERR_RHOST_TOO_MANY_STREAMS');
      const [err] = (await once(s3, 'error')) as [Err];
      assert.equal(err.wireCode, WireError.RefusedStream);
      await until(() => s1.accepted && s2.accepted, 'both accepted');
      s1.destroy();
      s2.destroy();
      await close();
    });

    test('opens past maxPendingOpens wait until the peer accepts one', async () => {
      const { agent, tunnel, close } = await sessionPair(kind, { maxPendingOpens: 2 });
      const peers: Stream[] = [];
      tunnel.on('stream', (s: Stream) => {
        s.on('error', () => {});
        peers.push(s);
      });
      const a = agent.open();
      agent.open().on('error', () => {});
      assert.throws(() => agent.open(), (err: Err) => err.code === 'ERR_RHOST_TOO_MANY_PENDING');
      while (peers.length < 2) await once(tunnel, 'stream');
      peers[0]!.accept();
      await until(() => a.accepted, 'the first stream accepted');
      agent.open().on('error', () => {});
      assert.equal(agent.stats().pendingOpens, 2);
      await close();
    });

    test('an OPEN with the wrong id parity ends the session with PROTOCOL_ERROR', async () => {
      const peer = await rawPeer(kind);
      peer.session.on('stream', () => {});
      const ended = closed(peer.session);
      peer.send({ type: FrameType.Open, streamId: 3, meta: { channel: '/', remoteAddress: '', remotePort: 0 } });
      const goaway = await peer.next((f): f is Frame & { type: FrameType.GoAway; code: number } => f.type === FrameType.GoAway);
      assert.equal(goaway.code, WireError.ProtocolError);
      assert.equal(((await ended) as Err).code, 'ERR_RHOST_PROTOCOL');
    });

    test('frames for unknown streams are ignored and the session lives on', async () => {
      const peer = await rawPeer(kind);
      peer.send(
        { type: FrameType.Data, streamId: 99, payload: Buffer.from('stray') },
        { type: FrameType.Window, streamId: 77, increment: 5 },
        { type: FrameType.Fin, streamId: 55 },
        { type: FrameType.Rst, streamId: 33, code: 1, reason: '' },
        { type: FrameType.Ping, streamId: 0, opaque: Buffer.from('12345678') },
      );
      const pong = await peer.next((f): f is Frame & { type: FrameType.Pong; opaque: Buffer } => f.type === FrameType.Pong);
      assert.equal(pong.opaque.toString(), '12345678');
      assert.equal(peer.session.closed, false);
      await peer.session.destroy();
    });
  });
}

describe('bad input on one session', () => {
  test('garbage ends that session only', async () => {
    const victim = await rawPeer('tcp');
    const healthy = await sessionPair('tcp');
    healthy.tunnel.on('stream', (s: Stream) => s.pipe(s));
    const ended = closed(victim.session);
    victim.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.ok(((await ended) as Err).code?.startsWith('ERR_RHOST_'));
    const s = healthy.agent.open();
    s.end('still here');
    assert.equal((await readAll(s)).toString(), 'still here');
    await healthy.close();
    void Session;
  });
});
