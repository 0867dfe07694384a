import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from '../../src/index.js';
import { Cleanup, listening, request, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';
import { startNginx } from '../helpers/nginx.js';
import { makePki } from '../helpers/certs.js';
import { sshOptions, startSshd } from '../helpers/sshd.js';
import { requireBinaries } from '../helpers/system.js';
import { recordingRouter, upgradeOf } from '../helpers/transport-router.js';

const run = promisify(execFile);

function recordingLogger(lines: string[]): Logger {
  const log: Logger = { debug: () => {}, info: (m) => void lines.push(m), warn: (m) => void lines.push(`WARN ${m}`), error: (m) => void lines.push(`ERROR ${m}`), child: () => log };
  return log;
}

/** nginx that lets through only WebSocket upgrades, as Cloudflare-style fronts do: anything else asking to upgrade gets 403. */
function websocketOnlyRouter(upstream: number): string {
  return `
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:PORT;
    location / {
      if ($http_upgrade ~* "^(?!websocket$).+") { return 403 "only WebSocket upgrades pass here\\n"; }
      proxy_pass http://127.0.0.1:${upstream};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 1h;
    }
  }`;
}

describe('behind a router that passes WebSocket upgrades only', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('an agent in auto mode falls back to WebSocket and serves HTTP users and an SSH channel', async (t) => {
    if (!requireBinaries(t, 'nginx', 'sshd', 'ssh', 'ssh-keygen')) return;
    const dir = mkdtempSync(join(tmpdir(), 'rhost-ws-'));
    cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
    const sshd = await startSshd(dir, cleanup);
    const app = http.createServer((req, res) => res.end(`app saw ${req.url}`));
    const appPort = await listening(app, cleanup);
    const { port: tunnelPort } = await startTunnel(cleanup, { keys: { '/': 'k', '/ssh': 's' } });
    const { port: routerPort } = await startNginx(cleanup, websocketOnlyRouter(tunnelPort));
    // The router refuses the raw upgrade, as it should for this test to mean anything.
    const raw = await request(routerPort, { path: '/.rhost', headers: { Upgrade: 'rhost', Connection: 'Upgrade' } });
    assert.equal(raw.status, 403);

    const via = `http://127.0.0.1:${routerPort}`;
    const lines: string[] = [];
    await startServerAgent(cleanup, { tunnel: via, target: String(appPort), key: 'k', logger: recordingLogger(lines) });
    assert.ok(lines.some((l) => l.startsWith('WARN') && /uses WebSocket from now on/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /over WebSocket/.test(l)), 'it says which transport it uses');
    assert.equal((await request(routerPort, { path: '/through-the-router' })).body.toString(), 'app saw /through-the-router');

    await startServerAgent(cleanup, { tunnel: via, target: String(sshd.port), channel: '/ssh', key: 's', token: 'ssh-token' });
    const { port: clientPort } = await startClientAgent(cleanup, { tunnel: via, channel: '/ssh', token: 'ssh-token' });
    const { stdout } = await run('ssh', [...sshOptions(sshd.key), '-p', String(clientPort), `${userInfo().username}@127.0.0.1`, 'echo over-websocket'], { timeout: 30_000 });
    assert.equal(stdout, 'over-websocket\n');
  });

  test('the fallback is remembered: when the session drops, the agent comes back over WebSocket with no raw attempt', async (t) => {
    if (!requireBinaries(t, 'nginx')) return;
    const app = http.createServer((req, res) => res.end(`app saw ${req.url}`));
    const appPort = await listening(app, cleanup);
    const { port: tunnelPort } = await startTunnel(cleanup, { keys: { '/': 'k' } });
    const { port: nginxPort } = await startNginx(cleanup, websocketOnlyRouter(tunnelPort));
    // A TCP balancer in front of nginx: it sees the first request of every connection the agent makes, and can drop them all.
    const balancer = await recordingRouter(cleanup, nginxPort);
    const lines: string[] = [];
    const agent = await startServerAgent(cleanup, { tunnel: `http://127.0.0.1:${balancer.port}`, target: String(appPort), key: 'k', logger: recordingLogger(lines) });
    assert.deepEqual(balancer.heads.map(upgradeOf), ['rhost', 'websocket'], 'nginx refused the raw upgrade, then passed WebSocket');
    assert.ok(lines.some((l) => /^connected to the tunnel at 127\.0\.0\.1:\d+ over WebSocket$/.test(l)), lines.join('\n'));

    const lost = once(agent, 'disconnected');
    const back = once(agent, 'connected');
    const before = balancer.heads.length;
    balancer.dropAll();
    await lost;
    await back;
    const reconnects = balancer.heads.slice(before).map((head) => `${head.split('\r\n', 1)[0]} (Upgrade: ${upgradeOf(head)})`);
    assert.ok(reconnects.length >= 1, 'the balancer saw the reconnect');
    assert.deepEqual(reconnects, reconnects.map(() => 'GET /.rhost HTTP/1.1 (Upgrade: websocket)'), 'the first reconnect, and any after it, asked for WebSocket');
    assert.equal(lines.filter((l) => /uses WebSocket from now on/.test(l)).length, 1, 'no second raw attempt to fall back from');
    assert.equal((await request(nginxPort, { path: '/after-the-drop' })).body.toString(), 'app saw /after-the-drop');
  });
});

describe('behind an HTTPS router', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('nginx terminates TLS in front of a plain tunnel; the agent uses https://', async (t) => {
    if (!requireBinaries(t, 'nginx', 'openssl')) return;
    const pki = makePki(cleanup);
    const { cert, key } = pki.issue('router');
    const app = http.createServer((req, res) => res.end(`app saw ${req.url}`));
    const appPort = await listening(app, cleanup);
    const { port: tunnelPort } = await startTunnel(cleanup, { keys: { '/': 'k' } });
    const { port: routerPort } = await startNginx(
      cleanup,
      `map $http_upgrade $connection_upgrade { default upgrade; '' close; }
      server {
        listen 127.0.0.1:PORT ssl;
        ssl_certificate ${cert};
        ssl_certificate_key ${key};
        location / {
          proxy_pass http://127.0.0.1:${tunnelPort};
          proxy_http_version 1.1;
          proxy_set_header Upgrade $http_upgrade;
          proxy_set_header Connection $connection_upgrade;
          proxy_set_header Host $host;
        }
      }`,
    );
    const lines: string[] = [];
    await startServerAgent(cleanup, { tunnel: `https://localhost:${routerPort}`, ca: pki.caCert, target: String(appPort), key: 'k', logger: recordingLogger(lines) });
    assert.ok(lines.some((l) => /over the raw upgrade with TLS/.test(l)), lines.join('\n'));
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port: routerPort, path: '/paas', servername: 'localhost', ca: readFileSync(pki.caCert), agent: false }, (res) => {
          let text = '';
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    assert.equal(body, 'app saw /paas');
  });
});
