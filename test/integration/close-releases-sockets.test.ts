import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createClientAgent } from '../../src/index.js';
import { Cleanup, connect, listening, request, startServerAgent, startTunnel } from '../helpers/rig.js';
import { until } from '../helpers/wait.js';

// In a file of its own: it counts the process's sockets, so no other test may hold any.
test('close() resolves only when every socket is gone', async () => {
  const before = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap').length;
  const local = new Cleanup();
  const app = http.createServer((_req, res) => res.end('x'));
  const appPort = await listening(app, local);
  const { port, address } = await startTunnel(local, { keys: { '/': 'k', '/echo': 'e' } });
  await startServerAgent(local, { tunnel: address, target: String(appPort), key: 'k', token: 't' });
  const client = createClientAgent({ tunnel: address, channel: '/', token: 't', listen: 0 });
  local.add(() => client.close({ drainTimeoutMs: 0 }));
  const { port: clientPort } = await client.listen();
  await client.ready();
  await request(port, { path: '/' });
  const idle = await connect(clientPort); // left open on purpose
  idle.on('error', () => {});
  const idleClosed = new Promise((resolve) => idle.on('close', resolve));
  const started = Date.now();
  await local.run();
  assert.ok(Date.now() - started < 5000, 'closing did not wait out a drain for the idle connection');
  idle.destroy();
  await idleClosed;
  // libuv releases a closed handle a loop turn after its 'close' event
  const count = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPServerWrap').length;
  await until(() => count() <= before, 'handles to be released', 1000).catch(() => {});
  assert.equal(count(), before, 'no socket or server of the tunnel or the agents is left');
});
