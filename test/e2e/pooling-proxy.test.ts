import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createServerAgent, type Logger } from '../../src/index.js';
import { Cleanup, listening, request, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';
import { startNginx } from '../helpers/nginx.js';
import { until } from '../helpers/wait.js';
import { requireBinaries } from '../helpers/system.js';

/**
 * The deployment rhost exists for, with the reverse proxy most people put
 * in front of it: nginx pooling its connections to the tunnel (upstream
 * keepalive). A connection the tunnel gave to the app behind `/` then
 * carries the next request too, an agent's included: whatever an agent's
 * request holds reaches the app. It must hold no secret; and the README's
 * recipe must make agents work through such a proxy.
 */

const KEY = 'ECHOKEY-s3cr3t-0123456789';
const TOKEN = 'ECHOTOKEN-s3cr3t';

/** Every form a secret could take on the wire. */
function leaks(bytes: string, secret: string): boolean {
  return [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64'), Buffer.from(secret).toString('base64url')].some((s) => bytes.includes(s));
}

function recordingLogger(lines: string[]): Logger {
  const log: Logger = { debug: (m) => void lines.push(m), info: (m) => void lines.push(m), warn: (m) => void lines.push(m), error: (m) => void lines.push(m), child: () => log };
  return log;
}

/** nginx's usual upstream keepalive, with the usual map that keeps non-upgrade requests on pooled connections. */
const POOLED = (tunnelPort: number, rhostLocation = ''): string => `
  map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
  upstream tunnel { server 127.0.0.1:${tunnelPort}; keepalive 16; }
  server {
    listen 127.0.0.1:PORT;
    ${rhostLocation}
    location / {
      proxy_pass http://tunnel;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }`;

/** The README's fix: /.rhost has a location of its own, whose upstream keeps no connections. */
const RHOST_LOCATION = (tunnelPort: number): string => `
    location = /.rhost {
      proxy_pass http://127.0.0.1:${tunnelPort};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }`;

describe('behind a reverse proxy that pools its connections to the tunnel', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  /**
   * The app behind `/`: it records every byte it is sent, and answers every
   * request with a page on a connection it keeps open, as most apps do
   * (Node hands an Upgrade nobody listens for to the request handler).
   */
  async function recordingApp(): Promise<{ port: number; bytes: () => string; rhostRequests: () => number }> {
    const received: Buffer[] = [];
    let rhost = 0;
    const app = http.createServer((req, res) => {
      if (req.url?.startsWith('/.rhost')) rhost++;
      res.end(`app ${req.url}`);
    });
    app.on('connection', (socket: net.Socket) => socket.on('data', (d: Buffer) => received.push(Buffer.from(d))));
    const port = await listening(app, cleanup);
    return { port, bytes: () => Buffer.concat(received).toString('latin1'), rhostRequests: () => rhost };
  }

  test('an agent whose request lands on the app behind / gives the app nothing secret, and says what is wrong', async (t) => {
    if (!requireBinaries(t, 'nginx')) return;
    const app = await recordingApp();
    const { tunnel, address } = await startTunnel(cleanup, { keys: { '/': 'root-key-0123456789', '/echo': KEY }, trustProxy: ['loopback'] });
    await startServerAgent(cleanup, { tunnel: address, target: String(app.port), key: 'root-key-0123456789' });
    const { port: nginx } = await startNginx(cleanup, POOLED(tunnel.address()!.port));
    assert.equal((await request(nginx, { path: '/hello' })).body.toString(), 'app /hello', 'one user through nginx: now a pooled connection belongs to /');
    const lines: string[] = [];
    const agent = createServerAgent({ tunnel: `http://127.0.0.1:${nginx}`, target: '1', channel: '/echo', key: KEY, token: TOKEN, logger: recordingLogger(lines) });
    cleanup.add(() => agent.close());
    agent.start().catch(() => {});
    // Both transports' attempts, several times over, ride the pooled connection to the app.
    await until(() => app.rhostRequests() >= 4, 'the agent’s requests to reach the app, as in the report', 20_000);
    await agent.close();
    const seen = app.bytes();
    assert.match(seen, /GET \/\.rhost HTTP\/1\.1/, 'the agent’s request did reach the app: the scenario happened');
    assert.ok(!leaks(seen, KEY), 'the app never saw the key');
    assert.ok(!leaks(seen, TOKEN), 'the app never saw the token');
    assert.ok(!/authorization/i.test(seen), 'no Authorization header at all');
    assert.equal(tunnel.stats().channels.find((c) => c.name === '/echo')?.server, false);
    const hint = lines.find((l) => l.includes('reuse its connections'));
    assert.ok(hint, `the agent says what is wrong: ${lines.join('\n')}`);
    assert.match(hint!, /location = \/\.rhost/);
    assert.match(hint!, /http-reuse never/);
  });

  test('with the README’s recipe (/.rhost on a location of its own, no keepalive) agents work, and the app never sees /.rhost', async (t) => {
    if (!requireBinaries(t, 'nginx')) return;
    const app = await recordingApp();
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
    const echoPort = await listening(echo, cleanup);
    const { tunnel, address } = await startTunnel(cleanup, { keys: { '/': 'root-key-0123456789', '/echo': KEY }, trustProxy: ['loopback'] });
    await startServerAgent(cleanup, { tunnel: address, target: String(app.port), key: 'root-key-0123456789' });
    const tunnelPort = tunnel.address()!.port;
    const { port: nginx } = await startNginx(cleanup, POOLED(tunnelPort, RHOST_LOCATION(tunnelPort)));
    for (let i = 0; i < 3; i++) assert.equal((await request(nginx, { path: `/u${i}` })).body.toString(), `app /u${i}`);
    const via = `http://127.0.0.1:${nginx}`;
    await startServerAgent(cleanup, { tunnel: via, target: String(echoPort), channel: '/echo', key: KEY, token: TOKEN });
    const { port: local } = await startClientAgent(cleanup, { tunnel: via, channel: '/echo', token: TOKEN });
    const socket = net.connect(local, '127.0.0.1');
    socket.end('through nginx');
    const chunks: Buffer[] = [];
    for await (const c of socket) chunks.push(c as Buffer);
    assert.equal(Buffer.concat(chunks).toString(), 'through nginx');
    assert.equal((await request(nginx, { path: '/after' })).body.toString(), 'app /after', 'users of / still go through the pool');
    assert.equal(app.rhostRequests(), 0, 'no agent request reached the app');
    assert.ok(!leaks(app.bytes(), KEY) && !leaks(app.bytes(), TOKEN));
  });

  test('one pooled connection carries requests for several hosts and clients: each reaches its own channel, and each client meets its own lists', async (t) => {
    if (!requireBinaries(t, 'nginx', 'curl')) return;
    const keys = { '/': 'root-key-0123456789', '/app': 'app-key-0123456789', '/blog': 'blog-key-0123456789' };
    const { address, tunnel } = await startTunnel(cleanup, { keys, domains: ['tunnel.test'], trustProxy: ['loopback'] });
    const tunnelPort = tunnel.address()!.port;
    for (const [channel, name] of [['/', 'root'], ['/app', 'app'], ['/blog', 'blog']] as const) {
      const app = http.createServer((req, res) => res.end(`${name} ${req.url} xff=${req.headers['x-forwarded-for']}`));
      await startServerAgent(cleanup, { tunnel: address, channel, key: keys[channel], target: String(await listening(app, cleanup)), public: true, deny: channel === '/blog' ? ['127.0.0.42'] : [] });
    }
    // Between nginx and the tunnel, a count of the connections nginx opens.
    let pooled = 0;
    const counter = net.createServer((s) => {
      pooled++;
      const up = net.connect(tunnelPort, '127.0.0.1');
      s.on('error', () => up.destroy()).pipe(up).on('error', () => s.destroy()).pipe(s);
    });
    const counterPort = await listening(counter, cleanup);
    const { port: nginx } = await startNginx(cleanup, POOLED(counterPort).replace('keepalive 16', 'keepalive 1'));
    const run = promisify(execFile);
    const ask = async (host: string, from: string, path: string): Promise<string> =>
      (await run('curl', ['-s', '--interface', from, '-H', `Host: ${host}`, `http://127.0.0.1:${nginx}${path}`])).stdout;
    const plan = Array.from({ length: 24 }, (_, i) => ({ host: ['app.tunnel.test', 'blog.tunnel.test', 'tunnel.test'][i % 3]!, from: i % 4 === 3 ? '127.0.0.42' : '127.0.0.41', path: `/r${i}` }));
    for (const { host, from, path } of plan) {
      const answer = await ask(host, from, path);
      const name = host === 'tunnel.test' ? 'root' : host.split('.')[0];
      if (name === 'blog' && from === '127.0.0.42') assert.equal(answer, 'this address may not reach this site\n', `${path}: the request, not the connection, is judged`);
      else assert.equal(answer, `${name} ${path} xff=${from}`, `${path} for ${host} from ${from}`);
    }
    assert.ok(pooled <= 2, `nginx carried 24 requests for 3 hosts over ${pooled} connection(s): the routing was per request`);
  });
});
