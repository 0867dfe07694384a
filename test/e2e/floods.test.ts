import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';
import { dialTunnel } from '../../src/transport/dial.js';
import { parseTunnelAddress } from '../../src/transport/address.js';
import { Cleanup, listening, request, startServerAgent, startTunnel } from '../helpers/rig.js';
import { RhostProcess } from '../helpers/cli.js';
import { until } from '../helpers/wait.js';
import { usedMemory } from '../helpers/system.js';

/**
 * Floods, short enough for `npm test`; `npm run flood` sets FLOOD_SCALE for
 * the full sizes (100,000 short connections).
 */
const SCALE = Number(process.env.FLOOD_SCALE ?? 1);
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const fds = (): number => readdirSync('/proc/self/fd').length;
const MiB = 1024 * 1024;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function latencies(port: number, count: number): Promise<{ p50: number; p99: number }> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    const res = await request(port, { path: '/' });
    assert.equal(res.status, 200);
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

/** Runs `count` tasks, `concurrency` at a time. */
async function pool(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await task(next++);
    }),
  );
}

describe(`floods (scale ${SCALE})`, () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('2,000 slowloris sockets do not change a real user’s latency beyond noise, nor keep an agent from registering', async () => {
    const app = http.createServer((_req, res) => res.end('fast'));
    const appPort = await listening(app, cleanup);
    // The tunnel and the agent run in processes of their own, as in production.
    const tunnel = new RhostProcess(['tunnel', '--tunnel', '127.0.0.1:0', '--log', 'json'], { KEYS: '{"/":"k","/b":"kb"}' });
    cleanup.add(() => tunnel.stop('SIGKILL'));
    const port = await tunnel.listeningPort();
    const agent = new RhostProcess(['server', '-t', `127.0.0.1:${port}`, '-s', String(appPort), '-k', 'k']);
    cleanup.add(() => agent.stop('SIGKILL'));
    await agent.waitForEvent('serving');
    await latencies(port, 50); // warm up
    const quiet = await latencies(port, 300);

    let flooding = true;
    const sockets = new Set<net.Socket>();
    let opened = 0;
    let dropped = 0;
    const attack = (i: number): void => {
      if (!flooding) return;
      // Three in four pretend to be agents (1,500: more than the 1,024 pending the tunnel keeps, so it
      // must drop the oldest), the rest users; 50 source addresses, 30 pending each (the limit is 256).
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.2.${(i % 50) + 1}` });
      sockets.add(socket);
      socket.on('error', () => {});
      socket.once('connect', () => {
        opened++;
        socket.write(i % 4 ? 'GET /.rhost HTTP/1.1\r\n' : 'GET / HTTP/1.1\r\nHost: x\r\n');
      });
      socket.once('close', () => {
        sockets.delete(socket);
        if (!flooding) return;
        dropped++;
        setTimeout(() => attack(i), 1000); // a slowloris reconnects when dropped, after a pause
      });
    };
    for (let i = 0; i < 2000; i++) attack(i);
    const trickle = setInterval(() => {
      for (const s of sockets) if (!s.connecting) s.write('X-Slow: 1\r\n');
    }, 2000);
    await until(() => opened >= 2000, '2,000 slowloris sockets', 20_000);
    await new Promise((resolve) => setTimeout(resolve, 2500)); // at least one trickle round
    const flooded = await latencies(port, 300);
    const registered = await dialTunnel({ address: parseTunnelAddress(`127.0.0.1:${port}`), hello: { role: 'server', channel: '/b', key: 'kb' }, userAgent: 't', timeoutMs: 5000 });
    registered.transport.destroy();
    flooding = false;
    clearInterval(trickle);
    for (const s of sockets) s.destroy();
    console.log(
      `slowloris: p50 ${quiet.p50.toFixed(2)} → ${flooded.p50.toFixed(2)} ms, p99 ${quiet.p99.toFixed(2)} → ${flooded.p99.toFixed(2)} ms ` +
        `with ${sockets.size} slow sockets open (${opened} opened in all, ${dropped} dropped by the tunnel); an agent registered meanwhile`,
    );
    assert.ok(dropped > 0, 'the tunnel dropped the oldest pending connections to make room');
    assert.ok(flooded.p50 < 2 * quiet.p50 + 2, `p50 ${quiet.p50.toFixed(2)} → ${flooded.p50.toFixed(2)} ms`);
    assert.ok(flooded.p99 < 3 * quiet.p99 + 10, `p99 ${quiet.p99.toFixed(2)} → ${flooded.p99.toFixed(2)} ms`);
  });

  test('1,000 agents registering and leaving in a loop leave nothing behind', async () => {
    const app = http.createServer((_req, res) => res.end('ok'));
    const appPort = await listening(app, cleanup);
    const channels = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`/a${i}`, `k${i}`]));
    // The churn comes from one address, faster than its connection rate allows: that limit is tested on its own.
    const { port, address, tunnel } = await startTunnel(cleanup, { keys: { '/': 'k', ...channels }, maxClientsPerChannel: 1000, maxClientsPerIp: 1000, maxConnRatePerIp: 0 });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'k', token: 't' });
    await request(port, { path: '/' });
    gc();
    const before = { fds: fds(), heap: usedMemory() };
    const at = parseTunnelAddress(address);
    let registered = 0;
    await pool(1000 * SCALE, 20, async (i) => {
      const server = i % 2 === 0;
      const channel = server ? `/a${i % 10}` : '/';
      const hello = server ? { role: 'server' as const, channel, key: `k${i % 10}` } : { role: 'client' as const, channel, token: 't' };
      try {
        const agent = await dialTunnel({ address: at, hello, userAgent: 'flood', timeoutMs: 5000 });
        registered++;
        agent.transport.destroy();
      } catch (err) {
        // a server agent racing another for the same channel is refused (409): that is the point of the check
        if ((err as { code?: string }).code !== 'ERR_RHOST_CHANNEL_TAKEN') throw err;
      }
    });
    await until(() => tunnel.stats().clients === 0 && tunnel.stats().servers === 1 && tunnel.stats().pending === 0, 'sessions gone', 10_000);
    await until(() => fds() <= before.fds, 'descriptors released', 5000).catch(() => {});
    gc();
    const grown = (usedMemory() - before.heap) / MiB;
    console.log(`agent churn: ${1000 * SCALE} sessions, ${registered} registered; fds ${before.fds} → ${fds()}; heap +${grown.toFixed(1)} MiB`);
    // Every client agent registers; a server agent only loses to one still holding its channel.
    assert.ok(registered >= 500 * SCALE + 50 * SCALE, `only ${registered} of ${1000 * SCALE} registered`);
    assert.ok(fds() <= before.fds, 'no descriptor leaked');
    assert.ok(grown < 8, `heap grew ${grown.toFixed(1)} MiB`);
    assert.equal((await request(port, { path: '/' })).body.toString(), 'ok');
  });

  test(`${10_000 * SCALE} short user connections leave descriptors and memory flat`, async () => {
    const app = http.createServer((_req, res) => res.end('ok'));
    const appPort = await listening(app, cleanup);
    // One address, thousands of connections a second: far past the per-address rate, which is tested on its own.
    const { port, address, tunnel } = await startTunnel(cleanup, { keys: { '/': 'k' }, maxConnRatePerIp: 0 });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'k' });
    const connections = async (count: number): Promise<number> => {
      const started = performance.now();
      await pool(count, 50, async () => {
        const socket = net.connect(port, '127.0.0.1');
        socket.on('error', () => {});
        socket.end('GET / HTTP/1.0\r\n\r\n');
        socket.resume();
        await once(socket, 'close');
      });
      await until(() => tunnel.stats().users === 0, 'users released');
      return (performance.now() - started) / 1000;
    };
    const sample = () => (gc(), { fds: fds(), heap: usedMemory(), rss: process.memoryUsage().rss });
    await connections(2000); // warm up: pools, JIT and the allocator reach their working size
    const before = sample();
    const seconds = await connections(10_000 * SCALE);
    await until(() => fds() <= before.fds, 'descriptors released', 5000).catch(() => {});
    const after = sample();
    console.log(
      `short connections: ${10_000 * SCALE} in ${seconds.toFixed(1)} s (${Math.round((10_000 * SCALE) / seconds)}/s) after 2,000 to warm up; ` +
        `fds ${before.fds} → ${after.fds}; heap ${(before.heap / MiB).toFixed(1)} → ${(after.heap / MiB).toFixed(1)} MiB; rss ${(before.rss / MiB).toFixed(1)} → ${(after.rss / MiB).toFixed(1)} MiB`,
    );
    assert.ok(after.fds <= before.fds, 'no descriptor leaked');
    assert.ok(after.heap - before.heap < 8 * MiB, 'heap flat');
    assert.ok(after.rss - before.rss < 32 * MiB, 'rss flat');
  });
});
