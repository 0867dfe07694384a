import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes, createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { Session } from '../../src/mux/session.js';
import { buildAgentRequest, HeadReader, parseTunnelResponse, Role } from '../../src/protocol/index.js';
import { rawHandshake } from '../helpers/handshake.js';
import { Cleanup, connect, listening, readToEnd, request, startServerAgent, startTunnel } from '../helpers/rig.js';

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Reads a tunnel's answer head (and the refusal line) from a raw socket. */
async function answerOf(socket: net.Socket): Promise<{ status: number; code: string; reason: string; rest: Buffer }> {
  const reader = new HeadReader();
  for (;;) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    const done = reader.push(chunk);
    if (!done) continue;
    let body = done.rest;
    const first = parseTunnelResponse(done.head);
    if (!first.ok && !body.includes(0x0a)) body = Buffer.concat([body, ...(await once(socket, 'data'))]);
    const answer = parseTunnelResponse(done.head, body.toString());
    return answer.ok
      ? { status: 101, code: '', reason: '', rest: done.rest }
      : { status: answer.status, code: answer.code, reason: answer.reason, rest: body };
  }
}

describe('telling agents from users on one port', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('an agent handshake split into one-byte TCP writes still registers', async () => {
    const { port } = await startTunnel(cleanup, { keys: { '/split': 'k' } });
    const socket = await connect(port);
    socket.setNoDelay(true);
    const answer = await rawHandshake(socket, { channel: '/split', key: 'k', byteByByte: true });
    assert.ok(answer.ok, JSON.stringify(answer));
    const session = new Session(socket, { role: Role.Initiator, head: answer.rest });
    assert.ok((await session.ping()) > 0, 'frames flow after the split handshake');
    await session.destroy();
  });

  test('a user that sends nothing first still reaches a server-speaks-first service', async () => {
    const banner = net.createServer((s) => s.end('220 smtp.example ready\r\n'));
    const appPort = await listening(banner, cleanup);
    const { port, address } = await startTunnel(cleanup, { keys: { '/': 'k' }, sniffTimeoutMs: 100 });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'k' });
    const socket = await connect(port);
    const got = await readToEnd(socket);
    assert.equal(got.toString(), '220 smtp.example ready\r\n');
    socket.end();
  });

  test('a user that shuts down its write side still receives the whole response', async () => {
    const response = randomBytes(5 * 1024 * 1024);
    const app = net.createServer({ allowHalfOpen: true }, (s) => {
      s.resume();
      s.on('end', () => s.end(response)); // answers only after the request's end
    });
    const appPort = await listening(app, cleanup);
    const { port, address } = await startTunnel(cleanup, { keys: { '/': 'k' } });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'k' });
    const socket = await connect(port);
    socket.end('QUERY everything\n'); // shutdown(SHUT_WR)
    const got = await readToEnd(socket);
    assert.equal(sha256(got), sha256(response));
  });

  test('bytes a user sends that look like the start of the marker are carried intact', async () => {
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
    const appPort = await listening(echo, cleanup);
    const { port, address } = await startTunnel(cleanup, { keys: { '/': 'k' }, sniffTimeoutMs: 100 });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'k' });
    const socket = await connect(port);
    socket.write('GET /.rh'); // a prefix of the agent marker, then a pause
    const [first] = (await once(socket, 'data')) as [Buffer];
    assert.equal(first.toString(), 'GET /.rh');
    socket.end('ost-not-really');
    assert.equal((await readToEnd(socket)).toString(), 'ost-not-really');
  });

  test('a handshake head over the byte limit is refused with 431', async () => {
    const { port } = await startTunnel(cleanup, { keys: { '/': 'k' }, maxHeadBytes: 1024 });
    const socket = await connect(port);
    socket.write(`GET /.rhost HTTP/1.1\r\nX-Pad: ${'a'.repeat(2000)}\r\n\r\n`);
    const answer = await answerOf(socket);
    assert.equal(answer.status, 431);
    assert.equal(answer.code, 'ERR_RHOST_HEADERS_TOO_LARGE');
  });

  test('a handshake that stalls is refused with 408', async () => {
    const { port } = await startTunnel(cleanup, { keys: { '/': 'k' }, handshakeTimeoutMs: 200 });
    const socket = await connect(port);
    socket.write('GET /.rhost HTTP/1.1\r\nHost: x\r\n');
    const answer = await answerOf(socket);
    assert.equal(answer.status, 408);
    assert.equal(answer.code, 'ERR_RHOST_HANDSHAKE_TIMEOUT');
  });

  test('an agent that speaks only a newer protocol is told what to do (426)', async () => {
    const { port } = await startTunnel(cleanup, { keys: { '/': 'k' } });
    const socket = await connect(port);
    socket.write(buildAgentRequest({ role: 'server', channel: '/', versions: [7, 6] }, { host: 'x', userAgent: 'future' }));
    const answer = await answerOf(socket);
    assert.equal(answer.status, 426);
    assert.equal(answer.code, 'ERR_RHOST_VERSION');
    assert.match(answer.reason, /speaks rhost protocol 3, 2; the agent offered 7, 6/);
  });

  test('garbage after a good handshake ends that session only', async () => {
    const app = http.createServer((_req, res) => res.end('still serving'));
    const appPort = await listening(app, cleanup);
    const { port, address, tunnel } = await startTunnel(cleanup, { keys: { '/': 'k', '/bad': 'b' } });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'k' });
    const socket = await connect(port);
    const answer = await rawHandshake(socket, { channel: '/bad', key: 'b' });
    assert.ok(answer.ok);
    socket.resume();
    const ended = once(socket, 'end');
    socket.write(Buffer.from('ffffffff000000000000', 'hex'));
    await ended; // the tunnel sent GOAWAY and closed its side
    socket.destroy();
    const res = await request(port, { path: '/' });
    assert.equal(res.body.toString(), 'still serving');
    assert.equal(tunnel.stats().channels.find((c) => c.name === '/bad')?.server, false);
  });
});
