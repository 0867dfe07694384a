import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { promisify } from 'node:util';
import { WebSocket, WebSocketServer } from 'ws';
import { Cleanup, listening, request, startServerAgent, startTunnel } from '../helpers/rig.js';
import { requireBinaries } from '../helpers/system.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const BIG = randomBytes(10 * 1024 * 1024);

describe('HTTP users through channel /', () => {
  const cleanup = new Cleanup();
  let port = 0;
  /** The streamed-response route waits here for the user to confirm chunk 1 before sending chunk 2. */
  let releaseSecondChunk: (() => void) | null = null;

  before(async () => {
    const app = http.createServer((req, res) => {
      if (req.url === '/big') return void res.end(BIG);
      if (req.url === '/upload') {
        const hash = createHash('sha256');
        let length = 0;
        req.on('data', (d: Buffer) => {
          hash.update(d);
          length += d.length;
        });
        req.on('end', () => res.end(JSON.stringify({ length, sha: hash.digest('hex') })));
        return;
      }
      if (req.url === '/stream') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('chunk-1\n');
        releaseSecondChunk = () => res.end('chunk-2\n');
        return;
      }
      if (req.url?.startsWith('/id/')) return void res.end(req.url.slice(4));
      res.setHeader('x-app', 'behind-the-tunnel');
      res.end(`hello from ${req.method} ${req.url}`);
    });
    const wss = new WebSocketServer({ server: app, path: '/chat' });
    wss.on('connection', (socket) => socket.on('message', (data, binary) => socket.send(data, { binary })));
    cleanup.add(() => wss.close());
    const appPort = await listening(app, cleanup);
    const t = await startTunnel(cleanup, { keys: { '/': 'k' } });
    port = t.port;
    await startServerAgent(cleanup, { tunnel: t.address, target: String(appPort), key: 'k' });
  });
  after(() => cleanup.run());

  test('GET of a 10 MB body arrives sha256-equal', async () => {
    const res = await request(port, { path: '/big' });
    assert.equal(res.status, 200);
    assert.equal(res.body.length, BIG.length);
    assert.equal(sha256(res.body), sha256(BIG));
  });

  test('POST of a 10 MB body arrives sha256-equal at the app', async () => {
    const res = await request(port, { path: '/upload', method: 'POST', body: BIG });
    assert.deepEqual(JSON.parse(res.body.toString()), { length: BIG.length, sha: sha256(BIG) });
  });

  test('a streamed response reaches the user chunk by chunk, not buffered', async () => {
    const req = http.get({ host: '127.0.0.1', port, path: '/stream', agent: false });
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    const chunks: string[] = [];
    const ended = once(res, 'end');
    res.on('data', (d: Buffer) => {
      chunks.push(d.toString());
      // The app sends chunk 2 only after chunk 1 arrived here: a buffering tunnel would hang.
      if (chunks.join('') === 'chunk-1\n') releaseSecondChunk!();
    });
    await ended;
    assert.equal(chunks.join(''), 'chunk-1\nchunk-2\n');
  });

  test('a WebSocket app behind the tunnel gets the user’s own upgrade', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/chat`);
    await once(ws, 'open');
    const payload = randomBytes(1024 * 1024);
    ws.send('hello over the tunnel');
    const [text] = await once(ws, 'message');
    assert.equal(text.toString(), 'hello over the tunnel');
    ws.send(payload);
    const [binary] = await once(ws, 'message');
    assert.equal(sha256(binary as Buffer), sha256(payload));
    ws.close();
    await once(ws, 'close');
  });

  test('curl -I (a user’s HEAD request) reaches the site', async (t) => {
    if (!requireBinaries(t, 'curl')) return;
    const { stdout } = await promisify(execFile)('curl', ['-sS', '-I', `http://127.0.0.1:${port}/`]);
    assert.match(stdout, /^HTTP\/1\.1 200/);
    assert.match(stdout, /x-app: behind-the-tunnel/i);
    const head = await request(port, { method: 'HEAD', path: '/.rhost' });
    assert.equal(head.status, 200, 'a HEAD to the reserved path is a user too');
  });

  test('200 concurrent users each get their own answer', async () => {
    const ids = Array.from({ length: 200 }, (_, i) => `user-${i}-${randomBytes(4).toString('hex')}`);
    const answers = await Promise.all(ids.map((id) => request(port, { path: `/id/${id}` })));
    answers.forEach((res, i) => {
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), ids[i]);
    });
  });

  test('a plain GET to the reserved agent path is refused, not forwarded', async () => {
    const res = await request(port, { path: '/.rhost' });
    assert.equal(res.status, 400);
    assert.equal(res.headers['rhost-error'], 'ERR_RHOST_BAD_HANDSHAKE');
  });
});

describe('HTTP users when something is missing', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('with no server agent on /, an HTTP user gets a 503 page at once', async () => {
    const { port } = await startTunnel(cleanup, { keys: { '/': 'k' } });
    const res = await request(port, { path: '/' });
    assert.equal(res.status, 503);
    assert.match(res.body.toString(), /no server agent/);
  });

  test('with the local service down, an HTTP user gets a 502 page that says so', async () => {
    const dead = http.createServer();
    const deadPort = await listening(dead, new Cleanup());
    await new Promise((resolve) => dead.close(resolve)); // nothing listens there now
    const { port, address } = await startTunnel(cleanup, { keys: { '/': 'k' } });
    await startServerAgent(cleanup, { tunnel: address, target: String(deadPort), key: 'k' });
    const res = await request(port, { path: '/' });
    assert.equal(res.status, 502);
    assert.match(res.body.toString(), /refused the connection/);
  });
});
