import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { createServerAgent, type Logger } from '../../src/index.js';
import { Cleanup, listening, request, startServerAgent, startTunnel } from '../helpers/rig.js';
import { until } from '../helpers/wait.js';

type Entry = { level: string; msg: string; fields: Record<string, unknown> };

function recording(entries: Entry[], throwOn?: RegExp): Logger {
  const at = (level: string) => (msg: string, fields: Record<string, unknown> = {}) => {
    entries.push({ level, msg, fields });
    if (throwOn?.test(msg)) throw new TypeError('a logger that breaks');
  };
  const log: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => log };
  return log;
}

describe('what agents say', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('a server agent whose local service is down says so once at start, and once when it answers again', async () => {
    const key = 'svc-key-0123456789';
    const { port, address } = await startTunnel(cleanup, { keys: { '/': key } });
    // A port a service just had: nothing answers there now, and the service comes back to it below.
    const probe = net.createServer();
    const servicePort = await new Promise<number>((resolve) => probe.listen(0, '127.0.0.1', () => resolve((probe.address() as net.AddressInfo).port)));
    await new Promise((resolve) => probe.close(resolve));
    const entries: Entry[] = [];
    await startServerAgent(cleanup, { tunnel: address, target: String(servicePort), key, logger: recording(entries) });
    await until(() => entries.some((e) => e.fields.event === 'service-down'), 'the warning');
    const down = entries.filter((e) => e.fields.event === 'service-down');
    assert.equal(down[0]!.level, 'warn');
    assert.match(down[0]!.msg, /does not answer \(ECONNREFUSED\): users get a 502 until it does/);
    for (let i = 0; i < 3; i++) assert.equal((await request(port, { path: '/' })).status, 502, 'users get the page meanwhile');
    assert.equal(entries.filter((e) => e.fields.event === 'service-down').length, 1, 'said once, not once per user');
    const app = http.createServer((_req, res) => res.end('up'));
    app.listen(servicePort, '127.0.0.1');
    await once(app, 'listening');
    cleanup.add(() => new Promise((resolve) => app.close(resolve)));
    cleanup.add(() => app.closeAllConnections());
    assert.equal((await request(port, { path: '/' })).body.toString(), 'up');
    assert.ok(entries.some((e) => e.fields.event === 'service-up' && e.level === 'info'));
  });

  test('an unexpected exception in the link is reported as a bug, with its stack, and stops the agent', async () => {
    const key = 'bug-key-0123456789';
    const { address } = await startTunnel(cleanup, { keys: { '/': key } });
    const entries: Entry[] = [];
    const agent = createServerAgent({ tunnel: address, target: '1', key, logger: recording(entries, /^connected to the tunnel/) });
    cleanup.add(() => agent.close());
    const fatal = once(agent, 'fatal') as Promise<[Error & { code?: string }]>;
    await assert.rejects(agent.start(), (err: Error & { code?: string }) => err.code === 'ERR_RHOST_BUG');
    const [err] = await fatal;
    assert.equal(err.code, 'ERR_RHOST_BUG', 'not a usage error');
    const report = entries.find((e) => e.level === 'error' && /a bug in rhost/.test(e.msg));
    assert.ok(report && /TypeError: a logger that breaks\n\s+at /.test(report.msg), 'logged with its stack');
  });

  for (const transport of ['raw', 'websocket'] as const) {
    test(`a ${transport} agent told Retry-After: 99999999999 waits, rather than hammering the tunnel`, async () => {
      // A tunnel stand-in that refuses every handshake, both kinds, with an absurd Retry-After.
      let attempts = 0;
      const refuse = (socket: net.Socket): void => {
        attempts++;
        const body = 'locked out\n';
        socket.end(
          `HTTP/1.1 429 Too Many Requests\r\nRhost-Error: ERR_RHOST_RATE_LIMITED\r\nRetry-After: 99999999999\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
        );
      };
      const fake = http.createServer((_req, res) => res.end());
      fake.on('upgrade', (_req: http.IncomingMessage, socket: net.Socket) => refuse(socket));
      const fakePort = await listening(fake, cleanup);
      const agent = createServerAgent({ tunnel: `127.0.0.1:${fakePort}`, target: '1', key: 'k'.repeat(20), transport });
      cleanup.add(() => agent.close());
      agent.start().catch(() => {});
      await until(() => attempts >= 1, 'the first attempt');
      // A second of watching: the timer that overflowed used to fire every millisecond (1,736 attempts in 5 s).
      const watched = Date.now() + 1000;
      await until(() => Date.now() > watched, 'a second to pass', 2000);
      assert.equal(attempts, 1, `${attempts} attempts in a second after being told to wait`);
    });
  }
});
