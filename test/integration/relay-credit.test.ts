import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../../src/mux/session.js';
import type { Stream } from '../../src/mux/stream.js';
import { INITIAL_WINDOW_BYTES, Role } from '../../src/protocol/index.js';
import { dialTunnel } from '../../src/transport/dial.js';
import { parseTunnelAddress } from '../../src/transport/address.js';
import { Cleanup, startTunnel } from '../helpers/rig.js';
import { until } from '../helpers/wait.js';

/**
 * A stream the tunnel relays from a server agent to a client agent: credit
 * goes back to the server agent only for bytes the client agent's side
 * took, so a client agent that reads nothing holds the server agent to
 * its own window plus one of the tunnel's.
 */
describe('credit on relayed streams', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('a client agent that grants nothing holds the server agent to its window plus one window of the tunnel’s', async () => {
    const key = 'relay-key-0123456789';
    const token = 'relay-token-0123456789';
    const { port, tunnel } = await startTunnel(cleanup, { keys: { '/r': key } });
    const address = parseTunnelAddress(`127.0.0.1:${port}`);
    const dial = async (hello: Parameters<typeof dialTunnel>[0]['hello']): Promise<Session> => {
      const d = await dialTunnel({ address, hello, userAgent: 'test', timeoutMs: 5000 });
      const session = new Session(d.transport, { role: Role.Initiator, id: d.sessionId, head: d.head });
      cleanup.add(() => session.destroy());
      return session;
    };
    const server = await dial({ role: 'server', channel: '/r', key, token });
    let sending: Stream | null = null;
    server.on('stream', (stream) => {
      sending = stream;
      stream.on('error', () => {});
      const chunk = Buffer.alloc(16 * 1024, 7);
      const pump = (): void => {
        while (stream.bytesOut < 8 * 1024 * 1024 && stream.write(chunk));
      };
      stream.on('drain', pump);
      pump();
    });
    const client = await dial({ role: 'client', channel: '/r', token });
    const reading = client.open({ channel: '/r' }); // never read: the client agent grants no credit
    reading.on('error', () => {});
    reading.write('go');
    await until(() => sending !== null && sending.bytesOut > 0, 'the server agent to start sending');
    // Settled once two round trips through the tunnel see no more progress.
    let last = -1;
    await until(() => {
      const now = sending!.bytesOut;
      const still = now === last;
      last = now;
      return still;
    }, 'the server agent to be held', 10_000);
    await server.ping();
    await client.ping();
    const sent = sending!.bytesOut;
    const held = tunnel.stats().bufferedBytes;
    console.log(`relay: the server agent sent ${sent} bytes; the client agent, which granted ${INITIAL_WINDOW_BYTES}, got ${reading.bytesIn}; the tunnel holds ${held}`);
    assert.ok(reading.bytesIn <= INITIAL_WINDOW_BYTES, 'the client agent got no more than its window');
    assert.equal(sent, reading.bytesIn + held, 'every byte the server agent sent is at the client agent or counted in the tunnel: none hides in buffers');
    // The tunnel's window for the stream grew once, while the client agent still took bytes; then it stopped granting.
    assert.ok(held <= 2 * INITIAL_WINDOW_BYTES, `the tunnel holds ${held} bytes: more than one window of its own`);
  });
});
