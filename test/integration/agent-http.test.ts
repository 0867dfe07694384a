import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { promisify } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';
import type { Logger, ServerAgentConfig } from '../../src/index.js';
import { Cleanup, connect, listening, readToEnd, request, startServerAgent, startTunnel } from '../helpers/rig.js';
import { requireBinaries } from '../helpers/system.js';

/**
 * A server agent's `--http` mode: users carried as HTTP requests, with the
 * forwarding headers a service behind a proxy expects, the Host it asks
 * for, Basic credentials checked per request, and everything HTTP/1.1
 * allows still working.
 */

const run = promisify(execFile);
const KEY = 'root-key-0123456789';
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function recordingLogger(lines: string[]): Logger {
  const log: Logger = { debug: (m, f) => void lines.push(m + JSON.stringify(f ?? {})), info: (m, f) => void lines.push(m + JSON.stringify(f ?? {})), warn: (m, f) => void lines.push(m + JSON.stringify(f ?? {})), error: (m, f) => void lines.push(m + JSON.stringify(f ?? {})), child: () => log };
  return log;
}

/** An app that answers with the headers it got, as JSON. */
const echoHeaders = (): http.Server => http.createServer((req, res) => res.end(JSON.stringify({ url: req.url, headers: req.headers, peer: req.socket.remoteAddress })));

describe('a server agent carrying HTTP', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  async function rig(app: http.Server, agent: Partial<ServerAgentConfig> = {}): Promise<{ port: number; appPort: number }> {
    const appPort = await listening(app, cleanup);
    const { port, address } = await startTunnel(cleanup, { keys: { '/': KEY } });
    await startServerAgent(cleanup, { tunnel: address, key: KEY, target: String(appPort), http: true, ...agent });
    return { port, appPort };
  }

  test('the service gets X-Forwarded-For and Forwarded appended to, never trusted, and X-Forwarded-Proto and -Host set', async (t) => {
    if (!requireBinaries(t, 'curl')) return;
    const { port } = await rig(echoHeaders());
    const ask = async (from: string, ...headers: string[]): Promise<{ headers: Record<string, string> }> =>
      JSON.parse((await run('curl', ['-s', '--interface', from, ...headers.flatMap((h) => ['-H', h]), `http://127.0.0.1:${port}/p`])).stdout);
    const plain = await ask('127.0.0.9');
    assert.equal(plain.headers['x-forwarded-for'], '127.0.0.9', 'the user’s address, as the tunnel saw it');
    assert.equal(plain.headers['x-forwarded-proto'], 'http');
    assert.equal(plain.headers['x-forwarded-host'], `127.0.0.1:${port}`);
    assert.equal(plain.headers.forwarded, `for=127.0.0.9;proto=http;host="127.0.0.1:${port}"`);
    const forged = await ask('127.0.0.10', 'X-Forwarded-For: 6.6.6.6', 'Forwarded: for=6.6.6.6', 'X-Forwarded-Proto: https', 'X-Forwarded-Host: evil.example', 'Host: site.example');
    assert.equal(forged.headers['x-forwarded-for'], '6.6.6.6, 127.0.0.10', 'what the user wrote stays, and the real address is appended last');
    assert.equal(forged.headers.forwarded, 'for=6.6.6.6, for=127.0.0.10;proto=http;host=site.example');
    assert.equal(forged.headers['x-forwarded-proto'], 'http', 'set, not taken from the user');
    assert.equal(forged.headers['x-forwarded-host'], 'site.example');
    assert.equal(forged.headers.host, 'site.example', 'the Host is kept by default');
  });

  test('hostHeader rewrites the Host to the service’s address, or to a value', async () => {
    const app = echoHeaders();
    const { port, appPort } = await rig(app, { hostHeader: 'rewrite' });
    const got = JSON.parse((await request(port, { path: '/', headers: { Host: 'public.example' } })).body.toString());
    assert.equal(got.headers.host, `localhost:${appPort}`);
    assert.equal(got.headers['x-forwarded-host'], 'public.example');
    const { port: fixed } = await rig(echoHeaders(), { hostHeader: 'internal.service' });
    assert.equal(JSON.parse((await request(fixed, { headers: { Host: 'public.example' } })).body.toString()).headers.host, 'internal.service');
  });

  test('keep-alive, pipelining, chunked bodies both ways and streamed responses', async () => {
    let firstChunkSent: () => void = () => {};
    const firstChunk = new Promise<void>((resolve) => (firstChunkSent = resolve));
    const app = http.createServer((req, res) => {
      if (req.url === '/stream') {
        res.write('first ');
        firstChunkSent();
        setTimeout(() => res.end('last'), 200);
        return;
      }
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => res.end(`${req.method} ${req.url} ${req.headers['transfer-encoding'] ?? 'length'} ${Buffer.concat(parts).toString()}`));
    });
    const { port } = await rig(app);
    const socket = await connect(port);
    socket.write('POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n');
    socket.end('PUT /c HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi');
    const answers = (await readToEnd(socket)).toString().split(/(?=HTTP\/1\.1 )/).map((a) => a.slice(a.indexOf('\r\n\r\n') + 4));
    assert.deepEqual(answers, ['POST /a chunked abc', 'GET /b length ', 'PUT /c length hi']);
    const streamed = await new Promise<{ early: string; all: string }>((resolve, reject) => {
      http.get({ port, host: '127.0.0.1', path: '/stream' }, (res) => {
        let all = '';
        let early = '';
        res.on('data', (d: Buffer) => {
          all += d.toString();
          if (!early) early = all;
        });
        res.on('end', () => resolve({ early, all }));
      }).on('error', reject);
    });
    await firstChunk;
    assert.equal(streamed.early, 'first ', 'the first chunk arrived before the response ended: nothing is buffered');
    assert.equal(streamed.all, 'first last');
  });

  test('16 MiB each way arrive whole, under backpressure', async () => {
    const down = randomBytes(16 * 1024 * 1024);
    const app = http.createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        res.setHeader('X-Upload-Sha', sha(Buffer.concat(parts)));
        res.end(down);
      });
    });
    const { port } = await rig(app);
    const up = randomBytes(16 * 1024 * 1024);
    const res = await request(port, { method: 'POST', path: '/big', body: up });
    assert.equal(res.headers['x-upload-sha'], sha(up));
    assert.equal(sha(res.body), sha(down));
  });

  test('Expect: 100-continue reaches the service, whose 100 reaches the user; a WebSocket upgrades through', async (t) => {
    if (!requireBinaries(t, 'curl')) return;
    const app = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d));
      req.on('end', () => res.end(`got ${body}`));
    });
    let continued = 0;
    app.on('checkContinue', (req, res) => {
      continued++;
      res.writeContinue();
      app.emit('request', req, res);
    });
    const wss = new WebSocketServer({ server: app });
    wss.on('connection', (ws, req) => ws.on('message', (m) => ws.send(`${req.headers['x-forwarded-for']} ${m.toString()}`)));
    const { port } = await rig(app);
    const out = await run('curl', ['-s', '-v', '-H', 'Expect: 100-continue', '--data-binary', 'payload', `http://127.0.0.1:${port}/up`]);
    assert.equal(out.stdout, 'got payload');
    assert.match(out.stderr, /HTTP\/1\.1 100 Continue/);
    assert.equal(continued, 1, 'the service itself decided to continue');
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    cleanup.add(() => ws.terminate());
    await once(ws, 'open');
    ws.send('ping');
    assert.equal(String((await once(ws, 'message'))[0]), '127.0.0.1 ping', 'the upgrade got the forwarding headers too');
  });

  test('Basic credentials: checked per request, in constant time, kept from the service and from the log', async () => {
    const lines: string[] = [];
    const app = echoHeaders();
    const { port } = await rig(app, { basicAuth: ['alice:s3cret-pass', 'bob:other-pass'], logger: recordingLogger(lines) });
    const basic = (pair: string): string => `Basic ${Buffer.from(pair).toString('base64')}`;
    const none = await request(port, { path: '/' });
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Basic realm="rhost", charset="UTF-8"');
    assert.equal((await request(port, { headers: { Authorization: basic('alice:wrong') } })).status, 401);
    const ok = await request(port, { headers: { Authorization: basic('bob:other-pass') } });
    assert.equal(ok.status, 200);
    assert.equal(JSON.parse(ok.body.toString()).headers.authorization, undefined, 'the service never sees the credentials');
    // One connection, as a forward proxy pooling two people would use it: the second request rides nobody's login.
    const socket = await connect(port);
    socket.end(`GET /1 HTTP/1.1\r\nHost: x\r\nAuthorization: ${basic('alice:s3cret-pass')}\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const statuses = (await readToEnd(socket)).toString().match(/HTTP\/1\.1 \d{3}/g);
    assert.deepEqual(statuses, ['HTTP/1.1 200', 'HTTP/1.1 401']);
    assert.ok(!lines.some((l) => l.includes('s3cret') || l.includes(Buffer.from('alice:s3cret-pass').toString('base64'))), 'no credential in any log line');
  });

  test('a service that is down gets the user a 502 page from the agent', async () => {
    const unused = net.createServer();
    const deadPort = await listening(unused, cleanup);
    await new Promise((resolve) => unused.close(resolve));
    const { port, address } = await startTunnel(cleanup, { keys: { '/': KEY } });
    await startServerAgent(cleanup, { tunnel: address, key: KEY, target: String(deadPort), http: true });
    const res = await request(port, { path: '/' });
    assert.equal(res.status, 502);
    assert.match(res.body.toString(), /refused the connection: is it running\?/);
  });
});
