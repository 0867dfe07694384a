import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { WebSocket } from 'ws';
import { MAX_WEBSOCKET_MESSAGE_BYTES, WEBSOCKET_PROTOCOL, WebSocketDuplex, acceptWebSocket, createUpgrader } from '../../src/transport/websocket.js';
import { Cleanup, listening } from '../helpers/rig.js';
import { until } from '../helpers/wait.js';

/** A real loopback HTTP server that upgrades every request; resolves each accepted side. */
async function wsPair(cleanup: Cleanup, held?: { limit: number; onChange?: (delta: number) => void }): Promise<{ server: WebSocketDuplex; client: WebSocket }> {
  const wss = createUpgrader(() => {});
  const http1 = http.createServer();
  const accepted = new Promise<WebSocketDuplex>((resolve) => {
    http1.on('upgrade', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => void acceptWebSocket(wss, req, socket, head, held).then(resolve));
  });
  const port = await listening(http1, cleanup);
  const client = new WebSocket(`ws://127.0.0.1:${port}/.rhost`, WEBSOCKET_PROTOCOL, { perMessageDeflate: false });
  cleanup.add(() => client.terminate());
  await once(client, 'open');
  const server = await accepted;
  cleanup.add(() => server.destroy());
  return { server, client };
}

describe('bytes over a WebSocket', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('the subprotocol is rhost.v1, and binary messages read as one byte stream, in order', async () => {
    const { server, client } = await wsPair(cleanup);
    assert.equal(client.protocol, WEBSOCKET_PROTOCOL);
    const parts = Array.from({ length: 50 }, (_, i) => randomBytes(1 + i * 997));
    const want = createHash('sha256');
    for (const part of parts) {
      want.update(part);
      client.send(part, { binary: true });
    }
    const total = parts.reduce((n, p) => n + p.length, 0);
    const got = createHash('sha256');
    let seen = 0;
    for await (const chunk of server) {
      got.update(chunk as Buffer);
      seen += (chunk as Buffer).length;
      if (seen >= total) break;
    }
    assert.equal(seen, total);
    assert.equal(got.digest('hex'), want.digest('hex'));
  });

  test('writes gathered by cork() arrive as one message, split at 1 MiB', async () => {
    const { server, client } = await wsPair(cleanup);
    const sizes: number[] = [];
    client.on('message', (data: Buffer) => sizes.push(data.length));
    server.cork();
    for (let i = 0; i < 40; i++) server.write(Buffer.alloc(64 * 1024, i));
    server.uncork();
    await new Promise<void>((resolve) => server.write(Buffer.alloc(0), () => resolve()));
    while (sizes.reduce((a, b) => a + b, 0) < 40 * 64 * 1024) await once(client, 'message');
    assert.deepEqual(sizes.slice(0, 2), [1024 * 1024, 1024 * 1024], `message sizes ${sizes.join(', ')}`);
    assert.ok(sizes.length <= 4, `${sizes.length} messages for 40 corked writes`);
  });

  test('a text message ends the stream with a protocol error', async () => {
    const { server, client } = await wsPair(cleanup);
    const failed = once(server, 'error') as Promise<[Error & { code?: string }]>;
    client.send('hello', { binary: false });
    const [err] = await failed;
    assert.equal(err.code, 'ERR_RHOST_PROTOCOL');
    await once(client, 'close');
  });

  test('what an unfinished message holds is counted, and the count comes back when it is delivered', async () => {
    let counted = 0;
    const { server, client } = await wsPair(cleanup, { limit: 4 * 1024 * 1024, onChange: (d) => (counted += d) });
    const socket = (client as unknown as { _socket: net.Socket })._socket;
    const length = 1_200_000;
    // A masked binary frame (client to server) declaring 1.2 MB, sent by hand so that it can stop halfway.
    const header = Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    header.writeUInt32BE(length, 6);
    socket.write(header);
    socket.write(Buffer.alloc(600_000));
    await until(() => counted >= 600_000, 'the half message to be counted');
    const got = once(server, 'data');
    socket.write(Buffer.alloc(length - 600_000));
    const [data] = (await got) as [Buffer];
    assert.equal(data.length, length);
    assert.equal(counted, 0, 'nothing is held once the message is delivered');
  });

  test('past its held limit a session is dropped (1009): a stranger cannot park an unfinished message', async () => {
    let counted = 0;
    const { server, client } = await wsPair(cleanup, { limit: 8 * 1024, onChange: (d) => (counted += d) });
    const socket = (client as unknown as { _socket: net.Socket })._socket;
    const serverError = new Promise<Error & { code?: string }>((resolve) => server.once('error', resolve));
    const header = Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    header.writeUInt32BE(4 * 1024 * 1024, 6);
    socket.write(Buffer.concat([header, Buffer.alloc(9 * 1024)]));
    assert.equal((await serverError).code, 'ERR_RHOST_BUSY');
    assert.equal(counted, 0, 'its count is given back');
  });

  test('a message over the 1.5 MiB bound is refused with close code 1009 and ends the stream', async () => {
    const { server, client } = await wsPair(cleanup);
    const serverError = new Promise<Error>((resolve) => server.once('error', resolve));
    const serverClosed = new Promise((resolve) => server.once('close', resolve)); // not once(): it rejects on 'error'
    const clientClosed = once(client, 'close') as Promise<[number, Buffer]>;
    client.send(Buffer.alloc(MAX_WEBSOCKET_MESSAGE_BYTES + 1), { binary: true });
    const [code] = await clientClosed;
    assert.equal(code, 1009, 'message too big');
    assert.match((await serverError).message, /max payload/i);
    await serverClosed;
  });

  test('a reader that stops pauses the socket: the sender sees backpressure, not unbounded buffering', async () => {
    const { server, client } = await wsPair(cleanup);
    server.pause();
    const chunk = Buffer.alloc(256 * 1024);
    // keep sending until the client's socket buffer stays full
    let sent = 0;
    while (sent < 256 * 1024 * 1024) {
      client.send(chunk, { binary: true });
      sent += chunk.length;
      if (client.bufferedAmount > 8 * 1024 * 1024) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    assert.ok(client.bufferedAmount > 8 * 1024 * 1024, `the sender kept draining (${sent} bytes sent)`);
    assert.ok(server.readableLength < 32 * 1024 * 1024, `the reader buffered ${server.readableLength} bytes`);
    // resuming drains everything that was sent
    let seen = 0;
    server.on('data', (data: Buffer) => (seen += data.length));
    server.resume();
    while (seen < sent) await once(server, 'data');
    assert.equal(seen, sent);
  });
});
