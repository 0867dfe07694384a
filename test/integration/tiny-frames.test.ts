import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { FrameType, Role, encodeFrame } from '../../src/protocol/index.js';
import { Cleanup, listening } from '../helpers/rig.js';
import { rawPeer } from '../helpers/mux.js';
import { until } from '../helpers/wait.js';

/** Counts the writes a socket hands to the kernel: one per `_write`, one per `_writev` (however many chunks). */
function countWrites(socket: net.Socket): { calls: number } {
  const counter = { calls: 0 };
  const s = socket as unknown as Record<'_write' | '_writev', (...args: unknown[]) => void>;
  for (const name of ['_write', '_writev'] as const) {
    const original = s[name]!.bind(socket);
    s[name] = (...args: unknown[]) => {
      counter.calls++;
      return original(...args);
    };
  }
  return counter;
}

describe('tiny frames', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('many tiny DATA frames in one read leave for the socket in a couple of writes, not one each', async () => {
    const received: Buffer[] = [];
    const sink = net.createServer((s) => s.on('data', (d: Buffer) => received.push(d)));
    const sinkPort = await listening(sink, cleanup);
    const peer = await rawPeer('tcp', { role: Role.Acceptor });
    cleanup.add(() => peer.session.destroy());
    const user = net.connect(sinkPort, '127.0.0.1');
    await once(user, 'connect');
    const writes = countWrites(user);
    const id = peer.session.openSocket({ channel: '/' }, user, () => {});
    await peer.next((f): f is Extract<typeof f, { type: FrameType.Open }> => f.type === FrameType.Open);
    // 1,000 one-byte DATA frames from the agent in one write: what 1 MB/s of them looks like to the tunnel.
    const frames = Buffer.concat(Array.from({ length: 1000 }, (_, i) => encodeFrame({ type: FrameType.Data, streamId: id, payload: Buffer.from([i & 0xff]) })));
    peer.send(encodeFrame({ type: FrameType.Ack, streamId: id }), frames);
    await until(() => Buffer.concat(received).length === 1000, 'all 1,000 bytes at the user');
    assert.deepEqual([...Buffer.concat(received)], Array.from({ length: 1000 }, (_, i) => i & 0xff), 'in order');
    assert.ok(writes.calls <= 10, `${writes.calls} writes to the socket for 1,000 frames`);
    user.destroy();
  });
});
