import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import type { AgentInfo } from '../../src/index.js';
import { Cleanup, listening, request, startServerAgent, startTunnel } from '../helpers/rig.js';
import { blackholeRelay } from '../helpers/blackhole.js';

describe('a link that goes silent', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('both sides notice within the keepalive timeout; the agent reconnects and users are served again', async () => {
    const app = http.createServer((_req, res) => res.end('served'));
    const appPort = await listening(app, cleanup);
    const ping = 200;
    const timeout = 3 * ping; // the default: a small multiple of --ping
    const { port, tunnel } = await startTunnel(cleanup, { keys: { '/': 'k' }, session: { pingIntervalMs: ping } });
    const relay = await blackholeRelay(cleanup, port);
    const agent = await startServerAgent(cleanup, { tunnel: `127.0.0.1:${relay.port}`, target: String(appPort), key: 'k', pingIntervalMs: ping });
    assert.equal((await request(port, { path: '/' })).body.toString(), 'served');

    const tunnelSide = once(tunnel, 'agent-close') as Promise<[AgentInfo, Error & { code?: string }]>;
    const agentSide = once(agent, 'disconnected') as Promise<[string]>;
    const back = once(agent, 'connected');
    const cutAt = performance.now();
    relay.blackhole();
    const [[, tunnelErr], [agentReason]] = await Promise.all([tunnelSide, agentSide]);
    const noticed = performance.now() - cutAt;
    assert.equal(tunnelErr.code, 'ERR_RHOST_KEEPALIVE_TIMEOUT', 'the tunnel freed the channel');
    assert.match(agentReason, /nothing received from the peer/);
    assert.ok(noticed < timeout + ping + 500, `noticed after ${Math.round(noticed)} ms (timeout ${timeout} ms)`);
    await back;
    assert.ok(relay.carried() >= 2, 'the agent dialled again');
    assert.equal((await request(port, { path: '/' })).body.toString(), 'served');
  });
});
