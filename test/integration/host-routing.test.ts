import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { promisify } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';
import type { TunnelConfig } from '../../src/index.js';
import { Cleanup, connect, listening, readToEnd, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';
import { rawHandshake } from '../helpers/handshake.js';
import { requireBinaries } from '../helpers/system.js';
import { until } from '../helpers/wait.js';
import { createServerAgent } from '../../src/index.js';
import { buildAcceptResponse, newNonce } from '../../src/protocol/index.js';

/**
 * Many sites on one port: a Host under a domain reaches its channel while
 * the channel's agent says public; routes give names to channels; every
 * name that serves nothing answers the same 404; each request of a
 * connection is routed by its own Host; and the allow and deny lists are
 * the tunnel's to enforce.
 */

const run = promisify(execFile);
const KEYS = { '/': 'root-key-0123456789', '/app': 'app-key-0123456789', '/ssh': 'ssh-key-0123456789', '/shop': 'shop-key-0123456789' };

/** An app that says who it is, and what it was sent: the Host, X-Forwarded-For, its peer. */
function namedApp(name: string): http.Server {
  return http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => res.end(`${name} ${req.method} ${req.url} host=${req.headers.host ?? '-'}${body ? ` body=${body}` : ''}`));
  });
}

/** A raw request on a new connection (from `from`, if given); the whole answer as text. */
async function rawAsk(port: number, head: string, from?: string): Promise<string> {
  const socket = net.connect({ port, host: '127.0.0.1', ...(from ? { localAddress: from } : {}) });
  await once(socket, 'connect');
  socket.end(head);
  return (await readToEnd(socket).catch(() => Buffer.from('reset'))).toString('latin1');
}

const statusOf = (answer: string): string => answer.split('\r\n', 1)[0]!;
const bodyOf = (answer: string): string => answer.slice(answer.indexOf('\r\n\r\n') + 4);

describe('host routing on the one port', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  /** A tunnel with a domain, and agents for /, /app (public), /ssh (not public) and /shop (not public, but routed). */
  async function sites(extra: Partial<TunnelConfig> = {}): Promise<{ port: number; address: string }> {
    const { port, address } = await startTunnel(cleanup, { keys: KEYS, domains: ['tunnel.test'], routes: { 'shop.example.org': '/shop', '*.shops.test': '/shop' }, ...extra });
    for (const [channel, name, pub] of [['/', 'root', false], ['/app', 'app', true], ['/ssh', 'ssh', false], ['/shop', 'shop', false]] as const) {
      const appPort = await listening(namedApp(name), cleanup);
      await startServerAgent(cleanup, { tunnel: address, channel, key: KEYS[channel], target: String(appPort), public: pub });
    }
    return { port, address };
  }

  test('a name under a domain reaches a public channel; private channels, unknown and impossible names get the one 404; other hosts go to /', async (t) => {
    if (!requireBinaries(t, 'curl')) return;
    const { port } = await sites();
    const curl = async (host: string): Promise<string> => (await run('curl', ['-s', '-i', '-H', `Host: ${host}`, `http://127.0.0.1:${port}/x?y=1`])).stdout;
    assert.match(await curl('app.tunnel.test'), /^HTTP\/1\.1 200[^]*app GET \/x\?y=1 host=app\.tunnel\.test$/);
    assert.match(await curl('APP.Tunnel.TEST.:8080'), /app GET \/x\?y=1 host=APP\.Tunnel\.TEST\.:8080$/, 'case, a trailing dot and a port do not matter; the Host reaches the service as sent');
    assert.match(await curl('tunnel.test'), /root GET \/x\?y=1 host=tunnel\.test$/, 'the domain itself is /');
    assert.match(await curl('my-app.herokuapp.example'), /root GET/, 'a Host no domain or route covers goes to / as before');
    const notFound = await curl('ssh.tunnel.test');
    assert.match(notFound, /^HTTP\/1\.1 404/);
    for (const name of ['nope.tunnel.test', 'a.b.tunnel.test', 'x_y.tunnel.test', 'ssh.tunnel.test.']) {
      assert.equal(await curl(name), notFound, `${name} answers exactly as the private channel /ssh does`);
    }
    const ten = await rawAsk(port, 'GET /old HTTP/1.0\r\n\r\n');
    assert.match(ten, new RegExp(`^HTTP/1\\.1 200[^]*root GET /old host=127\\.0\\.0\\.1:${port}$`), 'HTTP/1.0 without a Host goes to /, named by the address it reached');
  });

  test('operator routes name channels their agents did not make public; exact names and one label under a wildcard', async () => {
    const { port } = await sites();
    const ask = (host: string): Promise<string> => rawAsk(port, `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    assert.match(await ask('shop.example.org'), /shop GET \/ host=shop\.example\.org$/);
    assert.match(await ask('eu.shops.test'), /shop GET \/ host=eu\.shops\.test$/);
    assert.match(await ask('a.eu.shops.test'), /root GET/, 'a wildcard covers one label: deeper names are no one’s, and go to /');
    assert.equal(statusOf(await ask('shop.tunnel.test')), 'HTTP/1.1 404 Not Found', 'a routed channel is still not public under the domain');
  });

  test('hostile Host headers get a 400 that ends only that connection', async () => {
    const { port } = await sites();
    const long = `${'a'.repeat(250)}.tunnel.test`;
    for (const [why, head] of [
      ['two Host headers', 'GET / HTTP/1.1\r\nHost: app.tunnel.test\r\nHost: ssh.tunnel.test\r\n\r\n'],
      ['bytes outside reg-name', 'GET / HTTP/1.1\r\nHost: app.tunnel.test"<x>\r\n\r\n'],
      ['a space inside', 'GET / HTTP/1.1\r\nHost: app tunnel.test\r\n\r\n'],
      ['over 255 bytes', `GET / HTTP/1.1\r\nHost: ${long}\r\n\r\n`],
      ['a bad port', 'GET / HTTP/1.1\r\nHost: app.tunnel.test:80x\r\n\r\n'],
      ['no Host in HTTP/1.1', 'GET / HTTP/1.1\r\nX: y\r\n\r\n'],
      ['not HTTP at all after a method', 'GET / HTTP/1.1\r\nHost: app.tunnel.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
    ]) {
      const survivor = await connect(port);
      survivor.write('GET / HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n');
      await once(survivor, 'data');
      assert.equal(statusOf(await rawAsk(port, head!)), 'HTTP/1.1 400 Bad Request', why);
      survivor.write('GET /again HTTP/1.1\r\nHost: app.tunnel.test\r\nConnection: close\r\n\r\n');
      assert.match((await readToEnd(survivor)).toString(), /app GET \/again/, `another connection is untouched by ${why}`);
    }
  });

  test('each request of one connection goes by its own Host, pipelined too, answered in order', async () => {
    const { port } = await sites();
    const socket = await connect(port);
    const hosts = ['app.tunnel.test', 'tunnel.test', 'shop.example.org', 'app.tunnel.test', 'ssh.tunnel.test', 'tunnel.test'];
    socket.write(hosts.map((h, i) => `GET /${i} HTTP/1.1\r\nHost: ${h}\r\n${i === hosts.length - 1 ? 'Connection: close\r\n' : ''}\r\n`).join(''));
    const text = (await readToEnd(socket)).toString();
    const answers = text.split(/(?=HTTP\/1\.1 )/);
    assert.equal(answers.length, hosts.length, text);
    assert.deepEqual(
      answers.map((a) => bodyOf(a).split(' ')[0]),
      ['app', 'root', 'shop', 'app', 'no', 'root'],
      'each answer in the order asked, from the channel its Host names (the 404 page says "no site ...")',
    );
    assert.match(answers[3]!, /app GET \/3/);
  });

  test('request bodies stream through, chunked or not, and a request to another channel waits for them', async () => {
    const { port } = await sites();
    const socket = await connect(port);
    socket.write('POST /a HTTP/1.1\r\nHost: app.tunnel.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n');
    socket.write('PUT /b HTTP/1.1\r\nHost: tunnel.test\r\nContent-Length: 3\r\n\r\nabc');
    socket.end('GET /c HTTP/1.1\r\nHost: app.tunnel.test\r\nConnection: close\r\n\r\n');
    const answers = (await readToEnd(socket)).toString().split(/(?=HTTP\/1\.1 )/).map(bodyOf);
    assert.deepEqual(answers, ['app POST /a host=app.tunnel.test body=hello world', 'root PUT /b host=tunnel.test body=abc', 'app GET /c host=app.tunnel.test']);
  });

  test('a WebSocket reaches the channel its Host names, and carries messages both ways', async () => {
    const { port, address } = await startTunnel(cleanup, { keys: { '/': KEYS['/'], '/chat': 'chat-key-0123456789' }, domains: ['tunnel.test'] });
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    cleanup.add(() => new Promise((resolve) => wss.close(resolve)));
    await once(wss, 'listening');
    wss.on('connection', (ws, req) => ws.on('message', (m) => ws.send(`${req.headers.host} echoes ${m.toString()}`)));
    await startServerAgent(cleanup, { tunnel: address, channel: '/chat', key: 'chat-key-0123456789', target: String((wss.address() as net.AddressInfo).port), public: true });
    const ws = new WebSocket(`ws://127.0.0.1:${port}/socket`, { headers: { Host: 'chat.tunnel.test' } });
    cleanup.add(() => ws.terminate());
    await once(ws, 'open');
    ws.send('hi');
    const [reply] = await once(ws, 'message');
    assert.equal(String(reply), 'chat.tunnel.test echoes hi');
    const refused = new WebSocket(`ws://127.0.0.1:${port}/socket`, { headers: { Host: 'nope.tunnel.test' } });
    refused.on('error', () => {});
    const [req, res] = (await once(refused, 'unexpected-response')) as [http.ClientRequest, http.IncomingMessage];
    assert.equal(res.statusCode, 404);
    req.destroy();
  });

  test('allow and deny lists: the agent’s and the operator’s combine as the stricter, checked before any byte reaches the agent', async (t) => {
    if (!requireBinaries(t, 'curl')) return;
    const seen: string[] = [];
    const app = http.createServer((req, res) => {
      seen.push(req.socket.remoteAddress!);
      res.end('in');
    });
    const appPort = await listening(app, cleanup);
    const { port, address } = await startTunnel(cleanup, {
      keys: { '/': KEYS['/'], '/app': KEYS['/app'] },
      domains: ['tunnel.test'],
      channelPolicies: { '/app': { deny: ['127.0.0.11'] } },
    });
    await startServerAgent(cleanup, { tunnel: address, channel: '/app', key: KEYS['/app'], target: String(appPort), public: true, allow: ['127.0.0.8/29'], deny: ['127.0.0.12'], token: 'app-token-0123456789' });
    const curlFrom = async (ip: string): Promise<string> =>
      (await run('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--interface', ip, '-H', 'Host: app.tunnel.test', `http://127.0.0.1:${port}/`])).stdout;
    assert.equal(await curlFrom('127.0.0.9'), '200', 'in the agent’s allow list');
    assert.equal(await curlFrom('127.0.0.11'), '403', 'denied by the operator');
    assert.equal(await curlFrom('127.0.0.12'), '403', 'denied by the agent');
    assert.equal(await curlFrom('127.0.0.20'), '403', 'outside the allow list');
    assert.equal(seen.length, 1, 'only the admitted request reached the service');
    const from = async (ip: string) => {
      const s = net.connect({ port, host: '127.0.0.1', localAddress: ip });
      cleanup.add(() => s.destroy());
      await once(s, 'connect');
      return rawHandshake(s, { role: 'client', channel: '/app', token: 'app-token-0123456789' });
    };
    const denied = await from('127.0.0.20');
    assert.equal(!denied.ok && denied.code, 'ERR_RHOST_FORBIDDEN', 'a client agent from outside the lists is refused too');
    assert.ok((await from('127.0.0.10')).ok);
  });

  test('a client agent’s streams are held to the channel’s lists, and a raw user of / to its own', async () => {
    const echo = net.createServer((s) => s.pipe(s));
    const echoPort = await listening(echo, cleanup);
    const { port, address } = await startTunnel(cleanup, { keys: { '/': KEYS['/'] }, channelPolicies: { '/': { allow: ['127.0.0.1', '127.0.0.30'] } } });
    await startServerAgent(cleanup, { tunnel: address, key: KEYS['/'], target: String(echoPort), token: 'root-token-0123456789' });
    const user = await rawAsk(port, 'hello', '127.0.0.31');
    assert.equal(user, 'reset', 'a raw user outside the list is reset, and nothing reaches the service');
    assert.equal(await rawAsk(port, 'hello', '127.0.0.30'), 'hello');
    const { port: local } = await startClientAgent(cleanup, { tunnel: address, token: 'root-token-0123456789' });
    assert.equal(await rawAsk(local, 'via client'), 'via client', 'the client agent on 127.0.0.1 is admitted');
  });

  test('without domains or routes nothing is parsed: bytes reach / as sent', async () => {
    const received: Buffer[] = [];
    const raw = net.createServer((s) => {
      s.on('data', (d: Buffer) => {
        received.push(d);
        if (Buffer.concat(received).includes('\r\n\r\n')) s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
      });
    });
    const rawPort = await listening(raw, cleanup);
    const { port, address } = await startTunnel(cleanup, { keys: { '/': KEYS['/'] } });
    await startServerAgent(cleanup, { tunnel: address, key: KEYS['/'], target: String(rawPort) });
    const head = 'GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n';
    assert.match(await rawAsk(port, head), /^HTTP\/1\.1 200 OK/);
    assert.equal(Buffer.concat(received).toString('latin1'), head, 'two Host headers pass untouched: only routing reads requests');
  });

  test('a policy is signed: a tunnel that did not see the same policy cannot pass the agent’s proof, and an agent of protocol 2 still works', async () => {
    const { port } = await startTunnel(cleanup, { keys: { '/': KEYS['/'], '/app': KEYS['/app'] }, authLockoutMs: 0 });
    const handshake = async (hello: Parameters<typeof rawHandshake>[1]) => {
      const s = await connect(port);
      cleanup.add(() => s.destroy());
      return rawHandshake(s, hello);
    };
    // What an on-path meddler would do: strip the deny list from the request, leaving the proof as the agent made it.
    const stripped = await handshake({ channel: '/app', key: KEYS['/app'], policy: { public: true, allow: [], deny: ['203.0.113.0/24'] }, stripPolicy: true });
    assert.equal(!stripped.ok && stripped.code, 'ERR_RHOST_BAD_KEY', 'the proof covered the policy it was made for');
    assert.ok((await handshake({ channel: '/app', key: KEYS['/app'], policy: { public: true, allow: [], deny: ['203.0.113.0/24'] } })).ok);
    assert.ok((await handshake({ channel: '/', key: KEYS['/'], versions: [2] })).ok, 'protocol 2 agents keep working');
  });

  test('an agent with allow or deny lists will not serve through a tunnel of protocol 2, which cannot enforce them', async () => {
    const old = net.createServer((s) => {
      s.once('data', () => s.write(buildAcceptResponse(2, 'ab'.repeat(16), { nonce: newNonce(), salt: Buffer.alloc(16, 7), iterations: 1000 })));
      s.on('error', () => {});
    });
    const oldPort = await listening(old, cleanup);
    const agent = createServerAgent({ tunnel: `127.0.0.1:${oldPort}`, key: KEYS['/'], target: '1', deny: ['203.0.113.9'] });
    cleanup.add(() => agent.close());
    await assert.rejects(agent.start(), (err: Error & { code?: string }) => err.code === 'ERR_RHOST_VERSION' && /cannot enforce --allow and --deny: upgrade the tunnel/.test(err.message));
  });
  test('hundreds of requests on one keep-alive connection reuse one lane each way, holding nothing per request', async () => {
    const { port, address } = await startTunnel(cleanup, { keys: KEYS, domains: ['tunnel.test'] });
    const appPort = await listening(namedApp('app'), cleanup);
    await startServerAgent(cleanup, { tunnel: address, channel: '/app', key: KEYS['/app'], target: String(appPort), public: true, http: true });
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    cleanup.add(() => void process.off('warning', onWarning));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanup.add(() => agent.destroy());
    const sockets = new Set<net.Socket>();
    for (let i = 0; i < 300; i++) {
      const body = await new Promise<string>((resolve, reject) => {
        const req = http.get({ port, host: '127.0.0.1', path: `/${i}`, agent, headers: { host: 'app.tunnel.test' } }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(text));
        });
        req.on('socket', (s: net.Socket) => sockets.add(s));
        req.on('error', reject);
      });
      assert.equal(body, `app GET /${i} host=app.tunnel.test`);
    }
    assert.equal(sockets.size, 1, 'one user connection carried them all');
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings, [], 'no listener piles up on a lane, the tunnel’s (a mux stream) or the agent’s (a socket to the service)');
  });
  test('one site per connection takes the fast path: pipelined past the bound, HEAD among GETs and POSTs, answered in order', async () => {
    const { port } = await sites();
    const socket = await connect(port);
    const n = 100; // past MAX_PIPELINED: the connection is read as answers come back, not refused
    const requests = Array.from({ length: n }, (_, i) =>
      i % 3 === 0 ? `HEAD /${i} HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n` : i % 3 === 1 ? `POST /${i} HTTP/1.1\r\nHost: app.tunnel.test\r\nContent-Length: 4\r\n\r\nb${String(i).padStart(3, '0')}` : `GET /${i} HTTP/1.1\r\nHost: app.tunnel.test\r\n\r\n`,
    );
    socket.end(requests.join(''));
    const answers = (await readToEnd(socket)).toString().split(/(?=HTTP\/1\.1 )/);
    assert.equal(answers.length, n);
    answers.forEach((answer, i) => {
      assert.match(answer, /^HTTP\/1\.1 200 /);
      const expected = i % 3 === 0 ? '' : i % 3 === 1 ? `app POST /${i} host=app.tunnel.test body=b${String(i).padStart(3, '0')}` : `app GET /${i} host=app.tunnel.test`;
      assert.equal(bodyOf(answer), expected, `answer ${i}`);
    });
  });

  test('a service that closes an idle keep-alive connection costs the user nothing; Connection: close ends the user’s', async () => {
    const { port, address } = await startTunnel(cleanup, { keys: KEYS, domains: ['tunnel.test'] });
    const app = namedApp('brief');
    app.keepAliveTimeout = 50;
    const served: net.Socket[] = []; // the service's side of each lane that carried a request
    app.on('request', (req: http.IncomingMessage) => !served.includes(req.socket) && served.push(req.socket));
    const agent = await startServerAgent(cleanup, { tunnel: address, channel: '/app', key: KEYS['/app'], target: String(await listening(app, cleanup)), public: true });
    const socket = await connect(port);
    const ask = async (path: string, close = false): Promise<string> => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: app.tunnel.test\r\n${close ? 'Connection: close\r\n' : ''}\r\n`);
      const [d] = (await once(socket, 'data')) as [Buffer];
      return bodyOf(d.toString());
    };
    assert.equal(await ask('/1'), 'brief GET /1 host=app.tunnel.test');
    if (!served[0]!.destroyed) await once(served[0]!, 'close'); // the service dropped its idle connection…
    await until(() => agent.session?.stats().streams === 0, 'the lane to close at the tunnel too'); // …and the tunnel has heard
    assert.equal(await ask('/2'), 'brief GET /2 host=app.tunnel.test', 'the next request goes down a new lane, on the same user connection');
    assert.equal(served.length, 2);
    assert.equal(await ask('/3', true), 'brief GET /3 host=app.tunnel.test');
    await once(socket, 'end'); // the tunnel ended the user's connection after the last answer
  });

  test('a request head that stalls gets a 408 after the handshake timeout; other users are untouched', async () => {
    const { port } = await sites({ handshakeTimeoutMs: 200 });
    const stalled = await connect(port);
    stalled.write('GET / HTTP/1.1\r\nHost: app.tunnel.test\r\n');
    const other = await rawAsk(port, 'GET /fine HTTP/1.1\r\nHost: app.tunnel.test\r\nConnection: close\r\n\r\n');
    assert.match(other, /app GET \/fine/);
    assert.equal(statusOf((await readToEnd(stalled)).toString()), 'HTTP/1.1 408 Request Timeout');
  });
});
