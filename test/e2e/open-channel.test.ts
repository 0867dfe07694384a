import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { createServerAgent, type Logger } from '../../src/index.js';
import { Cleanup, listening, request, startServerAgent, startTunnel } from '../helpers/rig.js';
import { paasRouter, startNginx } from '../helpers/nginx.js';
import { rawHandshake } from '../helpers/handshake.js';
import { requireBinaries } from '../helpers/system.js';

/**
 * A tunnel on loopback with no keys opens `/` to try rhost on one machine.
 * A reverse proxy on the same machine makes "loopback" mean "anyone": the
 * implicit open channel takes no agent whose handshake shows a proxy.
 */
describe('the implicit open channel of a keyless tunnel on loopback', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('refuses a keyless server agent whose handshake carries any sign of a proxy, and takes one that carries none', async () => {
    const lines: string[] = [];
    const logger: Logger = { debug: () => {}, info: (m) => void lines.push(m), warn: (m) => void lines.push(m), error: (m) => void lines.push(m), child: () => logger };
    const { port } = await startTunnel(cleanup, { logger });
    assert.ok(lines.some((l) => /open without a key, for trying rhost on this machine only/.test(l)), lines.join('\n'));
    for (const [name, value] of [
      ['X-Forwarded-For', '203.0.113.5'],
      ['X-Forwarded-Proto', 'https'],
      ['X-Forwarded-Host', 'tunnel.example.com'],
      ['Forwarded', 'for=203.0.113.5'],
      ['X-Real-IP', '203.0.113.5'],
      ['Via', '1.1 nginx'],
    ] as const) {
      const socket = net.connect(port, '127.0.0.1');
      await once(socket, 'connect');
      const answer = await rawHandshake(socket, { headers: { [name]: value } });
      assert.ok(!answer.ok && answer.code === 'ERR_RHOST_OPEN_VIA_PROXY' && answer.status === 403, `${name}: ${JSON.stringify(answer)}`);
      assert.match(!answer.ok ? answer.reason : '', /for trying rhost on one machine.*set a key/);
      socket.destroy();
    }
    const socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
    assert.ok((await rawHandshake(socket)).ok, 'straight from this machine it registers');
    socket.destroy();
  });

  test('behind the README’s nginx block, a keyless agent from outside cannot take /', async (t) => {
    if (!requireBinaries(t, 'nginx')) return;
    const app = http.createServer((_req, res) => res.end('mine'));
    const appPort = await listening(app, cleanup);
    const { address, tunnel } = await startTunnel(cleanup, {});
    const { port: router } = await startNginx(cleanup, paasRouter(tunnel.address()!.port));
    const intruder = createServerAgent({ tunnel: `http://127.0.0.1:${router}`, target: String(appPort) });
    cleanup.add(() => intruder.close());
    await assert.rejects(intruder.start(), (err: Error & { code?: string }) => err.code === 'ERR_RHOST_OPEN_VIA_PROXY');
    assert.equal(tunnel.stats().channels.find((c) => c.name === '/')?.server, false);
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort) });
    assert.equal((await request(router, { path: '/' })).body.toString(), 'mine', 'the owner’s agent, on this machine, serves through the proxy');
  });
});
