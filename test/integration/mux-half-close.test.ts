import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { KINDS, readAll, sessionPair, streamClosed } from '../helpers/mux.js';

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
  });
}
