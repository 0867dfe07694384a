import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServerAgent, createTunnel, type Logger, type ServerAgent, type Tunnel } from '../../src/index.js';
import { Cleanup, listening, request, startTunnel } from '../helpers/rig.js';
import { isWebSocket, recordingRouter, upgradeOf } from '../helpers/transport-router.js';

type Err = Error & { code?: string };

function recordingLogger(lines: string[]): Logger {
  const log: Logger = { debug: () => {}, info: (m) => void lines.push(m), warn: (m) => void lines.push(`WARN ${m}`), error: (m) => void lines.push(`ERROR ${m}`), child: () => log };
  return log;
}

/** start(), or a clear failure when it has not settled by the deadline. */
async function startWithin(agent: ServerAgent, ms: number): Promise<void> {
  const giveUp = new AbortController();
  await Promise.race([agent.start(), sleep(ms, null, { signal: giveUp.signal }).then(() => assert.fail(`start() did not settle within ${ms} ms`))]).finally(() => giveUp.abort());
}

describe('how an agent chooses and keeps its transport', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  async function setUp(): Promise<{ tunnelPort: number; appPort: number }> {
    const app = http.createServer((_req, res) => res.end('served'));
    const appPort = await listening(app, cleanup);
    const { port } = await startTunnel(cleanup, { keys: { '/': 'k' }, authLockoutMs: 0 });
    return { tunnelPort: port, appPort };
  }

  function agent(routerPort: number, appPort: number, lines: string[], extra: Record<string, unknown> = {}): ServerAgent {
    const a = createServerAgent({ tunnel: `127.0.0.1:${routerPort}`, target: String(appPort), key: 'k', connectTimeoutMs: 1500, logger: recordingLogger(lines), ...extra });
    cleanup.add(() => a.close());
    return a;
  }

  test('a refusal whose body has no newline (JSON, keep-alive) still sends it to WebSocket at once', async () => {
    const { tunnelPort, appPort } = await setUp();
    const body = '{"error":"forbidden"}';
    const { port: router } = await recordingRouter(cleanup, tunnelPort, (head) =>
      isWebSocket(head) ? { forward: head } : { answer: `HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: keep-alive\r\n\r\n${body}` },
    );
    const lines: string[] = [];
    await startWithin(agent(router, appPort, lines), 1200);
    assert.ok(lines.some((l) => /uses WebSocket from now on/.test(l)), lines.join('\n'));
    assert.equal((await request(tunnelPort, { path: '/' })).body.toString(), 'served');
  });

  test('a router that strips the upgrade (the tunnel sees a plain GET /.rhost): the agent falls back, not gives up', async () => {
    const { tunnelPort, appPort } = await setUp();
    const { port: router } = await recordingRouter(cleanup, tunnelPort, (head) => (isWebSocket(head) ? { forward: head } : { forward: head.replace(/^(upgrade|connection):.*\r\n/gim, '') }));
    const lines: string[] = [];
    await startWithin(agent(router, appPort, lines), 3000);
    assert.ok(lines.some((l) => /uses WebSocket from now on/.test(l)), lines.join('\n'));
  });

  test('the WebSocket fallback is remembered: reconnects after a tunnel restart, failed ones included, make no raw attempt', async () => {
    const app = http.createServer((_req, res) => res.end('served'));
    const appPort = await listening(app, cleanup);
    const serve = async (port: number): Promise<{ tunnel: Tunnel; port: number }> => {
      const tunnel = createTunnel({ port, keys: { '/': 'k' }, authLockoutMs: 0 });
      cleanup.add(() => tunnel.close({ drainTimeoutMs: 0 }));
      return { tunnel, port: (await tunnel.listen()).port };
    };
    const first = await serve(0);
    const refusal = 'only WebSocket upgrades pass here\n';
    const router = await recordingRouter(cleanup, first.port, (head) =>
      upgradeOf(head) !== '' && !isWebSocket(head)
        ? { answer: `HTTP/1.1 403 Forbidden\r\nContent-Length: ${refusal.length}\r\nConnection: keep-alive\r\n\r\n${refusal}` }
        : { forward: head },
    );
    const lines: string[] = [];
    const a = agent(router.port, appPort, lines);
    await startWithin(a, 3000);
    assert.deepEqual(router.heads.map(upgradeOf), ['rhost', 'websocket'], 'the first dial tried the raw upgrade, then fell back');
    assert.ok(lines.some((l) => /^connected to the tunnel at 127\.0\.0\.1:\d+ over WebSocket$/.test(l)), lines.join('\n'));

    const lost = once(a, 'disconnected');
    await first.tunnel.close({ drainTimeoutMs: 0 });
    await lost;
    const dropped = router.heads.length;
    // The agent dials one attempt at a time: a second head means the first reconnect failed (no tunnel behind the router).
    await router.headsSeen(dropped + 2);
    const back = once(a, 'connected');
    await serve(first.port);
    await back;
    const reconnects = router.heads.slice(dropped).map(upgradeOf);
    assert.deepEqual(reconnects, reconnects.map(() => 'websocket'), `every reconnect used WebSocket at once, with no raw attempt: ${reconnects.join(', ')}`);
    assert.equal(lines.filter((l) => /uses WebSocket from now on/.test(l)).length, 1, lines.join('\n'));
    assert.equal((await request(first.port, { path: '/' })).body.toString(), 'served');
  });

  test('a gateway error (a 503 while the tunnel behind the router restarts) is no reason to give up the raw upgrade', async () => {
    const { tunnelPort, appPort } = await setUp();
    let unavailable = 1;
    const body = 'no healthy upstream\n';
    const router = await recordingRouter(cleanup, tunnelPort, (head) =>
      !isWebSocket(head) && unavailable-- > 0
        ? { answer: `HTTP/1.1 503 Service Unavailable\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}` }
        : { forward: head },
    );
    const lines: string[] = [];
    const a = agent(router.port, appPort, lines);
    await startWithin(a, 3000);
    assert.ok(lines.some((l) => /answered 503: no healthy upstream; WebSocket got through this time/.test(l)), lines.join('\n'));
    assert.ok(!lines.some((l) => /from now on/.test(l)), lines.join('\n'));
    const before = router.heads.length;
    const back = once(a, 'connected');
    router.dropAll();
    await back;
    assert.equal(upgradeOf(router.heads[before]!), 'rhost', `the reconnect tried the raw upgrade first: ${router.heads.slice(before).map(upgradeOf).join(', ')}`);
    assert.ok(lines.some((l) => /^reconnected to the tunnel at .* over the raw upgrade after \d+ attempts?$/.test(l)), lines.join('\n'));
    assert.equal((await request(tunnelPort, { path: '/' })).body.toString(), 'served');
  });

  test('a hang-up before any answer is retried on the raw upgrade, not taken for a WebSocket-only router', async () => {
    const { tunnelPort, appPort } = await setUp();
    let hangUps = 1;
    const { port: router } = await recordingRouter(cleanup, tunnelPort, (head) => (hangUps-- > 0 ? { close: true } : { forward: head }));
    const lines: string[] = [];
    await startWithin(agent(router, appPort, lines), 3000);
    assert.ok(lines.some((l) => /closed the connection before answering/.test(l)), lines.join('\n'));
    assert.ok(lines.some((l) => /over the raw upgrade/.test(l)), lines.join('\n'));
    assert.ok(!lines.some((l) => /WebSocket/.test(l)), lines.join('\n'));
  });

  test('over WebSocket, the tunnel’s refusals keep their meaning: a bad key is fatal at once', async () => {
    const { tunnelPort, appPort } = await setUp();
    const lines: string[] = [];
    const a = createServerAgent({ tunnel: `ws://127.0.0.1:${tunnelPort}`, target: String(appPort), key: 'wrong', logger: recordingLogger(lines) });
    cleanup.add(() => a.close());
    const settled = a.start().then(
      () => assert.fail('a bad key was accepted'),
      (err: Err) => err,
    );
    const giveUp = new AbortController();
    const err = await Promise.race([settled, sleep(3000, null, { signal: giveUp.signal }).then(() => assert.fail('start() kept retrying a bad key'))]).finally(() => giveUp.abort());
    assert.equal(err.code, 'ERR_RHOST_BAD_KEY', err.message);
    assert.match(err.message, /bad key for \//);
  });

  test('a proxy whose answer to CONNECT is malformed is a proxy error to retry, not a crash', async () => {
    const { appPort } = await setUp();
    const proxy = net.createServer((s) => {
      s.on('error', () => {});
      // a folded header line: old-style, and not something rhost needs to parse
      s.once('data', () => s.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n realm="corp"\r\n\r\n'));
    });
    const proxyPort = await listening(proxy, cleanup);
    let sawIt: () => void = () => {};
    const seen = new Promise<void>((resolve) => (sawIt = resolve));
    const lines: string[] = [];
    const log = recordingLogger(lines);
    const watching: Logger = { ...log, warn: (m) => (log.warn(m), /proxy authentication required/.test(m) && sawIt()), child: () => watching };
    const a = createServerAgent({ tunnel: '127.0.0.1:9', target: String(appPort), key: 'k', proxy: `http://127.0.0.1:${proxyPort}`, logger: watching });
    cleanup.add(() => a.close());
    a.start().catch(() => {});
    await seen;
    assert.ok(lines.some((l) => /refused CONNECT to 127\.0\.0\.1:9: proxy authentication required/.test(l)), lines.join('\n'));
  });

  test('a 429 from the tunnel is waited out for as long as its Retry-After says', async () => {
    const { tunnelPort, appPort } = await setUp();
    const dials: number[] = [];
    const { port: router } = await recordingRouter(cleanup, tunnelPort, (head) => {
      dials.push(performance.now());
      if (dials.length > 1) return { forward: head };
      const body = 'too many failed attempts\n';
      return { answer: `HTTP/1.1 429 Too Many Requests\r\nRhost-Error: ERR_RHOST_RATE_LIMITED\r\nRetry-After: 1\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}` };
    });
    const lines: string[] = [];
    await startWithin(agent(router, appPort, lines), 4000);
    assert.equal(dials.length, 2);
    const waited = dials[1]! - dials[0]!;
    assert.ok(waited >= 950, `the agent came back after ${Math.round(waited)} ms, not after Retry-After (1 s)`);
  });

  test('--transport websocket uses WebSocket from the first dial, with no raw attempt', async () => {
    const { tunnelPort, appPort } = await setUp();
    const { port: router, heads } = await recordingRouter(cleanup, tunnelPort);
    const lines: string[] = [];
    await startWithin(agent(router, appPort, lines, { transport: 'websocket' }), 3000);
    assert.equal(heads.length, 1);
    assert.ok(isWebSocket(heads[0]!), heads[0]);
    assert.ok(lines.some((l) => /over WebSocket/.test(l)), lines.join('\n'));
  });
});
