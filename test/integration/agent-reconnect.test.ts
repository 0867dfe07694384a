import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import http from 'node:http';
import net from 'node:net';
import { createClientAgent, createServerAgent } from '../../src/index.js';
import { Cleanup, connect, listening, readToEnd, request, startServerAgent, startTunnel } from '../helpers/rig.js';
import { RhostProcess } from '../helpers/cli.js';

describe('agents and a tunnel that goes away', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('after the tunnel is killed and restarted, agents are back and serving within 2 s of it listening', async () => {
    const app = http.createServer((_req, res) => res.end('app answers'));
    const appPort = await listening(app, cleanup);
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
    const echoPort = await listening(echo, cleanup);
    const env = { KEYS: JSON.stringify({ '/': 'k', '/echo': 'e' }), LOG: 'json' };
    let tunnel = new RhostProcess(['tunnel', '--tunnel', '127.0.0.1:0'], env);
    cleanup.add(() => tunnel.stop('SIGKILL'));
    const port = await tunnel.listeningPort(); // the restart below takes the same port: that is the test
    const server = createServerAgent({ tunnel: `127.0.0.1:${port}`, target: String(appPort), key: 'k' });
    const echoServer = createServerAgent({ tunnel: `127.0.0.1:${port}`, target: String(echoPort), channel: '/echo', key: 'e', token: 't' });
    const client = createClientAgent({ tunnel: `127.0.0.1:${port}`, channel: '/echo', token: 't', listen: 0 });
    cleanup.add(() => Promise.all([server.close(), echoServer.close(), client.close()]));
    await Promise.all([server.start(), echoServer.start()]);
    const { port: clientPort } = await client.listen();
    await client.ready();

    const down = Promise.all([once(server, 'disconnected'), once(echoServer, 'disconnected'), once(client, 'disconnected')]);
    await tunnel.stop('SIGKILL');
    await down;
    const back = Promise.all([once(server, 'connected'), once(echoServer, 'connected'), once(client, 'connected')]);
    tunnel = new RhostProcess(['tunnel', '--tunnel', `127.0.0.1:${port}`], env);
    await tunnel.listeningPort();
    const listeningAt = performance.now();
    await back;
    const elapsed = performance.now() - listeningAt;
    assert.ok(elapsed < 2000, `agents came back ${Math.round(elapsed)} ms after the tunnel listened`);

    assert.equal((await request(port, { path: '/' })).body.toString(), 'app answers');
    const socket = await connect(clientPort);
    socket.end('through the client agent');
    assert.equal((await readToEnd(socket)).toString(), 'through the client agent');
  });

  test('a client agent keeps its port while the tunnel is unreachable, closing local connections at once', async () => {
    // A port a tunnel just had: nothing answers there now, and one comes back to it below.
    const first = await startTunnel(cleanup, { keys: { '/echo': 'e' } });
    const port = first.port;
    await first.tunnel.close();
    const client = createClientAgent({ tunnel: `127.0.0.1:${port}`, channel: '/echo', token: 't', listen: 0 });
    cleanup.add(() => client.close());
    const { port: clientPort } = await client.listen();
    for (let i = 0; i < 3; i++) {
      const socket = net.connect(clientPort, '127.0.0.1');
      const errors: string[] = [];
      socket.on('error', (err: Error & { code?: string }) => errors.push(err.code ?? ''));
      await new Promise((resolve) => socket.on('close', resolve)); // reset by the agent, not left hanging
      assert.deepEqual(errors, ['ECONNRESET']);
    }
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
    const echoPort = await listening(echo, cleanup);
    await startTunnel(cleanup, { port, keys: { '/echo': 'e' } });
    await startServerAgent(cleanup, { tunnel: `127.0.0.1:${port}`, target: String(echoPort), channel: '/echo', key: 'e', token: 't' });
    await client.ready();
    const socket = await connect(clientPort);
    socket.end('it is back');
    assert.equal((await readToEnd(socket)).toString(), 'it is back');
  });
});
