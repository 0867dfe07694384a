import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { KINDS, readAll, sessionPair, streamClosed } from '../helpers/mux.js';
import { until } from '../helpers/wait.js';

for (const kind of KINDS) {
  describe(`half-close over ${kind}`, () => {
    test('the opener ends its side and still receives the whole response', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      const response = randomBytes(2 * 1024 * 1024);
      tunnel.on('stream', async (stream) => {
        const request = await readAll(stream); // waits for the agent's FIN
        assert.equal(request.toString(), 'GET / HTTP/1.0\r\n\r\n');
        stream.end(response);
      });
      const stream = agent.open();
      stream.end('GET / HTTP/1.0\r\n\r\n');
      assert.ok((await readAll(stream)).equals(response));
      await streamClosed(stream);
      assert.equal(agent.stats().streams, 0);
      await close();
    });

    test('the acceptor ends first and keeps receiving', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      const upload = randomBytes(1024 * 1024);
      const done = new Promise<Buffer>((resolve) => {
        tunnel.on('stream', (stream) => {
          stream.end('ready\n');
          resolve(readAll(stream));
        });
      });
      const stream = agent.open();
      const greeting = await readAll(stream);
      assert.equal(greeting.toString(), 'ready\n');
      stream.end(upload);
      assert.ok((await done).equals(upload));
      await close();
    });

    test('a stream is released once FIN went both ways', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      tunnel.on('stream', (stream) => {
        stream.resume();
        stream.on('end', () => stream.end());
      });
      const stream = agent.open();
      stream.resume();
      stream.end('x');
      await streamClosed(stream);
      assert.equal(agent.stats().streams, 0);
      assert.equal(tunnel.stats().streams, 0);
      await close();
    });

    test('data still queued on a stream released by FIN both ways leaves the buffered count when the stream is destroyed', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      const reply = Buffer.alloc(48 * 1024, 0x62);
      tunnel.on('stream', (stream) => {
        stream.resume();
        stream.on('end', () => stream.end(reply));
      });
      const stream = agent.open();
      stream.pause(); // it never reads what comes back
      stream.end('request');
      await until(() => agent.stats().streams === 0, 'FIN both ways released the stream');
      assert.ok(agent.stats().bufferedBytes > 0, 'the unread reply is counted while someone could still read it');
      stream.destroy(); // e.g. the user on the other side went away
      await streamClosed(stream);
      assert.equal(agent.stats().bufferedBytes, 0, 'and forgotten once nobody can');
      await close();
    });

    test('an empty write completes at once and does not hold up the writes after it', async () => {
      const { agent, tunnel, close } = await sessionPair(kind);
      const received = new Promise<Buffer>((resolve) =>
        tunnel.on('stream', (s) => {
          resolve(readAll(s));
          s.end();
        }),
      );
      const stream = agent.open();
      stream.resume();
      stream.write('before ');
      await new Promise<void>((resolve, reject) => stream.write(Buffer.alloc(0), (err) => (err ? reject(err) : resolve())));
      stream.end('after');
      assert.equal((await received).toString(), 'before after');
      await streamClosed(stream);
      await close();
    });
  });
}
