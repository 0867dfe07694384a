import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { INITIAL_WINDOW_BYTES } from '../../src/index.js';
import { Cleanup, connect, listening, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';
import { randomSource } from '../helpers/mux.js';
import { until } from '../helpers/wait.js';

const MiB = 1024 * 1024;

/** A local service that reads nothing until released, then hashes all it got. */
function stalledSink(): { server: net.Server; release: () => void; result: Promise<{ length: number; sha: string }> } {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let resolveResult!: (r: { length: number; sha: string }) => void;
  const result = new Promise<{ length: number; sha: string }>((resolve) => (resolveResult = resolve));
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.pause();
    const hash = createHash('sha256');
    let length = 0;
    released.then(() => {
      socket.on('data', (d: Buffer) => {
        hash.update(d);
        length += d.length;
      });
      socket.on('end', () => {
        if (length > 0) resolveResult({ length, sha: hash.digest('hex') }); // not the agent's probe at start, which sends nothing
        socket.end();
      });
      socket.resume();
    });
  });
  return { server, release, result };
}

describe('backpressure through the tunnel', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  for (const path of ['a user on /', 'a client agent'] as const) {
    test(`${path} sending 256 MiB to a service that does not read: the tunnel holds a bounded amount, then all of it arrives`, async () => {
      const sink = stalledSink();
      const sinkPort = await listening(sink.server, cleanup);
      const window = 1 * MiB; // the most a stream's window may grow to: the bound on what the tunnel holds per stream
      const { port, address, tunnel } = await startTunnel(cleanup, { keys: { '/': 'k' }, session: { maxStreamWindowBytes: window } });
      const agent = await startServerAgent(cleanup, { tunnel: address, target: String(sinkPort), key: 'k', token: 't', session: { maxStreamWindowBytes: window } });
      const userPort = path === 'a client agent' ? (await startClientAgent(cleanup, { tunnel: address, channel: '/', token: 't', session: { maxStreamWindowBytes: window } })).port : port;
      const source = randomSource(256 * MiB);
      const socket = await connect(userPort);
      source.stream.pipe(socket);
      // The sender stalls once every buffer on the way is full; watch it settle.
      let last = -1;
      await until(() => {
        const settled = source.produced() === last;
        last = source.produced();
        return settled && last > 0;
      }, 'the sender to stall');
      const held = tunnel.stats().bufferedBytes;
      assert.ok(held <= window + INITIAL_WINDOW_BYTES, `the tunnel holds ${held} bytes for the stalled stream`);
      assert.ok(agent.session!.stats().bufferedBytes <= agent.config.session.maxStreamWindowBytes! , 'the agent holds at most a window');
      assert.ok(source.produced() < 32 * MiB, `only ${source.produced()} bytes left the sender: the rest waits in it`);
      sink.release();
      await once(source.stream, 'end');
      const got = await sink.result;
      assert.deepEqual(got, { length: 256 * MiB, sha: source.sha() });
      socket.destroy();
    });
  }
});
