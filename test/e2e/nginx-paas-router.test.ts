import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { createServerAgent, type ServerAgent } from '../../src/index.js';
import { Cleanup, connect, listening, readToEnd, request, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';
import { paasRouter, startNginx } from '../helpers/nginx.js';
import { requireBinaries, which } from '../helpers/system.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('a real nginx in front of the tunnel, as a PaaS router', () => {
  const cleanup = new Cleanup();
  let routerPort = 0;
  const agents: ServerAgent[] = [];
  let disconnects = 0;

  before(async () => {
    if (which('nginx') === null) return; // each test says what is missing
    const app = http.createServer((req, res) => {
      if (req.method === 'POST') {
        const h = createHash('sha256');
        req.on('data', (d: Buffer) => h.update(d));
        req.on('end', () => res.end(h.digest('hex')));
        return;
      }
      res.end(`app saw ${req.url}`);
    });
    const appPort = await listening(app, cleanup);
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
    const echoPort = await listening(echo, cleanup);
    const { port } = await startTunnel(cleanup, { keys: { '/': 'k', '/echo': 'e' } });
    ({ port: routerPort } = await startNginx(cleanup, paasRouter(port, 'proxy_read_timeout 2s; client_max_body_size 64m;')));
    // The agents reach the tunnel only through the router, as on a PaaS.
    const via = `http://127.0.0.1:${routerPort}`;
    agents.push(await startServerAgent(cleanup, { tunnel: via, target: String(appPort), key: 'k', pingIntervalMs: 500 }));
    agents.push(await startServerAgent(cleanup, { tunnel: via, target: String(echoPort), channel: '/echo', key: 'e', token: 't', pingIntervalMs: 500 }));
    for (const agent of agents) agent.on('disconnected', () => disconnects++);
  });
  after(() => cleanup.run());

  test('users reach the local site through nginx', async (t) => {
    if (!requireBinaries(t, 'nginx')) return;
    const res = await request(routerPort, { path: '/through/nginx' });
    assert.equal(res.status, 200);
    assert.equal(res.body.toString(), 'app saw /through/nginx');
    const body = randomBytes(3 * 1024 * 1024);
    const post = await request(routerPort, { path: '/upload', method: 'POST', body });
    assert.equal(post.body.toString(), sha256(body));
  });

  test('a client agent reaches its channel through nginx', async (t) => {
    if (!requireBinaries(t, 'nginx')) return;
    const { port } = await startClientAgent(cleanup, { tunnel: `http://127.0.0.1:${routerPort}`, channel: '/echo', token: 't', pingIntervalMs: 500 });
    const payload = randomBytes(2 * 1024 * 1024);
    const socket = await connect(port);
    socket.end(payload);
    assert.equal(sha256(await readToEnd(socket)), sha256(payload));
  });

  test('keepalive pings hold the sessions open past the router’s 2 s idle timeout', async (t) => {
    if (!requireBinaries(t, 'nginx')) return;
    const agent = createServerAgent({ tunnel: `http://127.0.0.1:${routerPort}`, target: '1', channel: '/idle', key: 'x' });
    await assert.rejects(agent.start(), (err: Error & { code?: string }) => err.code === 'ERR_RHOST_BAD_KEY', 'refusals pass through nginx with their reason');
    await agent.close();
    // Real time has to pass here: the point is what an idle router does after 2 s.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    assert.equal(disconnects, 0, 'no session was cut while idle');
    const res = await request(routerPort, { path: '/still-there' });
    assert.equal(res.body.toString(), 'app saw /still-there');
  });
});

