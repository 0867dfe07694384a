import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { FrameType, Role, WireError } from '../../src/protocol/index.js';
import type { Stream } from '../../src/mux/stream.js';
import { KINDS, rawPeer, readAll, sessionPair, streamClosed } from '../helpers/mux.js';

async function errorOf(stream: Stream): Promise<Error & { code?: string; wireCode?: number }> {
  const [err] = await once(stream, 'error');
  return err;
}

for (const kind of KINDS) {
  describe(`reset over ${kind}`, () => {
    test('destroying a stream mid-transfer resets the peer’s stream with CANCEL and nothing else', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      const streams: Stream[] = [];
      tunnel.on('stream', (s: Stream) => {
        s.on('error', () => {});
        streams.push(s);
      });
      const victim = agent.open();
      const bystander = agent.open();
      victim.write(randomBytes(100_000));
      bystander.write('before');
      while (streams.length < 2) await once(tunnel, 'stream');
      const [peerVictim, peerBystander] = streams as [Stream, Stream];
      const failure = errorOf(peerVictim);
      victim.destroy();
      const err = await failure;
      assert.equal(err.code, 'ERR_RHOST_STREAM_RESET');
      assert.equal(err.wireCode, WireError.Cancel);
      bystander.end(' and after');
      assert.equal((await readAll(peerBystander)).toString(), 'before and after');
      peerBystander.end();
      bystander.resume();
      await streamClosed(bystander);
      await close();
    });

    test('reset(code) carries the code to the peer', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      tunnel.on('stream', (s: Stream) => s.reset(WireError.ConnectRefused));
      const stream = agent.open();
      const err = await errorOf(stream);
      assert.equal(err.wireCode, WireError.ConnectRefused);
      assert.match(err.message, /CONNECT_REFUSED/);
      await close();
    });

    test('a socket error maps to its wire code (ECONNRESET → CONNECTION_RESET)', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      tunnel.on('stream', (s: Stream) => {
        s.on('error', () => {});
        s.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
      });
      const stream = agent.open();
      const err = await errorOf(stream);
      assert.equal(err.wireCode, WireError.ConnectionReset);
      await close();
    });

    test('writing to a stream the peer reset fails that stream only', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      tunnel.on('stream', (s: Stream) => s.destroy());
      const stream = agent.open();
      const err = await errorOf(stream);
      assert.equal(err.code, 'ERR_RHOST_STREAM_RESET');
      stream.write('late', () => {});
      const other = agent.open();
      await once(other, 'error'); // refused the same way, session still alive
      assert.equal(agent.closed, false);
      await close();
    });
  });
}

describe('acceptance', () => {
  test('DATA from the acceptor before its ACK counts as acceptance, as FIN does: the stream stops counting as pending', async () => {
    const peer = await rawPeer('memory', { role: Role.Initiator });
    const stream = peer.session.open({ channel: '/' });
    const accepted = once(stream, 'accept');
    const open = await peer.next((f): f is Extract<typeof f, { type: FrameType.Open }> => f.type === FrameType.Open);
    assert.equal(peer.session.stats().pendingOpens, 1);
    peer.send({ type: FrameType.Data, streamId: open.streamId, payload: Buffer.from('first, no ACK') });
    await accepted;
    assert.equal(peer.session.stats().pendingOpens, 0, 'accepted by its DATA');
    assert.equal((await new Promise<Buffer>((resolve) => stream.once('data', resolve))).toString(), 'first, no ACK');
    await peer.session.destroy();
  });
});
