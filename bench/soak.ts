/**
 * `npm run soak`: minutes of churn on one tunnel, then a verdict on the trend.
 *
 * Users come and go through `/` and through a client agent; a server agent
 * and a client agent are replaced every few seconds. Every 5 s, after a GC,
 * it samples the JS heap with the Buffers outside it, RSS, open descriptors
 * and libuv handles. It fails (exit 1) when, over the last two thirds of the
 * run, heap and Buffers grow faster than 0.5 MiB a minute, RSS faster than
 * 2 MiB a minute, or descriptors or handles keep climbing; and when a
 * request through `/` fails at all (its agent is never replaced), a
 * connection through the client agent fails outside an agent swap, or an
 * interval between samples carried nothing.
 *
 *   SOAK_MINUTES=5 node --expose-gc dist/bench/soak.js
 */
import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { createClientAgent, createServerAgent, createTunnel, type ClientAgent, type ServerAgent } from '../src/index.js';

const MINUTES = Number(process.env.SOAK_MINUTES ?? 5);
const SAMPLE_MS = 5000;
const MiB = 1024 * 1024;
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');

interface Sample {
  minute: number;
  /** The JS heap and the Buffers outside it. */
  heapMiB: number;
  rssMiB: number;
  fds: number;
  handles: number;
  users: number;
}

/** Least-squares slope of y over x. */
function slope(points: Array<[number, number]>): number {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const num = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const den = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  return den === 0 ? 0 : num / den;
}

async function main(): Promise<void> {
  const app = http.createServer((_req, res) => res.end('soak'));
  app.listen(0, '127.0.0.1');
  await once(app, 'listening');
  const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
  echo.listen(0, '127.0.0.1');
  await once(echo, 'listening');
  const appPort = (app.address() as net.AddressInfo).port;
  const echoPort = (echo.address() as net.AddressInfo).port;

  // All the churn comes from one address: the per-address rate is the floods' to measure.
  const tunnel = createTunnel({ port: 0, keys: { '/': 'k', '/echo': 'e' }, maxConnRatePerIp: 0, maxUsersPerIp: 1_000_000 });
  const { port } = await tunnel.listen();
  const tunnelAt = `127.0.0.1:${port}`;
  const web = createServerAgent({ tunnel: tunnelAt, target: String(appPort), key: 'k' });
  await web.start();
  let echoAgent: ServerAgent = createServerAgent({ tunnel: tunnelAt, target: String(echoPort), channel: '/echo', key: 'e', token: 't' });
  await echoAgent.start();
  let client: ClientAgent = createClientAgent({ tunnel: tunnelAt, channel: '/echo', token: 't', listen: 0 });
  let clientPort = (await client.listen()).port;
  await client.ready();

  let running = true;
  let requests = 0;
  /** Requests through `/` that failed: its server agent stays, so none may. */
  let webFailures = 0;
  /** Connections through the client agent that failed while agents were swapped (expected: they are reset), and at other times (not). */
  let swapFailures = 0;
  let strayFailures = 0;
  let swapping = false;
  /** A swap's resets can land a moment after the new agents are ready. */
  let swapEndedAt = -Infinity;
  const SWAP_GRACE_MS = 1000;
  // Samples are taken with the load paused and every user gone, so that they compare like with like.
  let gate: Promise<void> | null = null;
  const userLoop = async (): Promise<void> => {
    while (running) {
      if (gate) await gate;
      await new Promise<void>((resolve) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
          res.resume();
          res.on('end', () => (requests++, resolve()));
        });
        req.on('error', () => (webFailures++, resolve()));
      });
    }
  };
  const streamLoop = async (): Promise<void> => {
    while (running) {
      if (gate) await gate;
      await new Promise<void>((resolve) => {
        const s = net.connect(clientPort, '127.0.0.1');
        s.on('error', () => {
          if (swapping || performance.now() - swapEndedAt < SWAP_GRACE_MS) swapFailures++;
          else strayFailures++;
          resolve();
        });
        s.end(Buffer.alloc(32 * 1024, 1));
        s.resume();
        s.on('end', () => (requests++, resolve()));
      });
    }
  };
  const loops = [...Array.from({ length: 8 }, userLoop), ...Array.from({ length: 4 }, streamLoop)];

  // Replace agents every few seconds: sessions churn too.
  const churn = setInterval(async () => {
    swapping = true;
    const oldEcho = echoAgent;
    const oldClient = client;
    await Promise.all([oldEcho.close({ drainTimeoutMs: 2000 }), oldClient.close({ drainTimeoutMs: 2000 })]);
    echoAgent = createServerAgent({ tunnel: tunnelAt, target: String(echoPort), channel: '/echo', key: 'e', token: 't' });
    await echoAgent.start();
    client = createClientAgent({ tunnel: tunnelAt, channel: '/echo', token: 't', listen: clientPort });
    clientPort = (await client.listen()).port;
    await client.ready();
    swapping = false;
    swapEndedAt = performance.now();
  }, 7000);

  const samples: Sample[] = [];
  let idleIntervals = 0;
  let lastRequests = 0;
  const started = performance.now();
  const end = started + MINUTES * 60_000;
  while (performance.now() < end) {
    await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
    let open!: () => void;
    gate = new Promise((resolve) => (open = resolve));
    while (tunnel.stats().users > 0) await new Promise((resolve) => setTimeout(resolve, 10));
    await new Promise((resolve) => setTimeout(resolve, 50)); // closed handles are released a loop turn later
    // Buffers are freed by a sweeper that runs after the collection: a second one, a moment later, sees them gone.
    gc!();
    await new Promise((resolve) => setTimeout(resolve, 20));
    gc!();
    const m = process.memoryUsage();
    const sample: Sample = {
      minute: (performance.now() - started) / 60_000,
      heapMiB: (m.heapUsed + m.arrayBuffers) / MiB,
      rssMiB: m.rss / MiB,
      fds: readdirSync('/proc/self/fd').length,
      handles: process.getActiveResourcesInfo().length,
      users: tunnel.stats().users,
    };
    samples.push(sample);
    if (requests === lastRequests) idleIntervals++;
    lastRequests = requests;
    gate = null;
    open();
    console.log(
      `${sample.minute.toFixed(2)} min  heap+buffers ${sample.heapMiB.toFixed(1)} MiB  rss ${sample.rssMiB.toFixed(1)} MiB  ` +
        `fds ${sample.fds}  handles ${sample.handles}  users ${sample.users}  done ${requests}  ` +
        `failed: / ${webFailures}, in swaps ${swapFailures}, other ${strayFailures}`,
    );
  }
  running = false;
  clearInterval(churn);
  await Promise.all(loops);
  await Promise.all([client.close(), echoAgent.close(), web.close()]);
  await tunnel.close();
  app.close();
  echo.close();

  const tail = samples.slice(Math.floor(samples.length / 3));
  const heapSlope = slope(tail.map((s) => [s.minute, s.heapMiB]));
  const rssSlope = slope(tail.map((s) => [s.minute, s.rssMiB]));
  const fdSlope = slope(tail.map((s) => [s.minute, s.fds]));
  const handleSlope = slope(tail.map((s) => [s.minute, s.handles]));
  console.log(
    `\nsoak: ${MINUTES} min, ${requests} connections carried; failed: ${webFailures} through /, ${swapFailures} through the client agent during its swaps, ${strayFailures} at other times; ` +
      `trend over the last two thirds: heap+buffers ${heapSlope.toFixed(3)} MiB/min, rss ${rssSlope.toFixed(2)} MiB/min, fds ${fdSlope.toFixed(2)}/min, handles ${handleSlope.toFixed(2)}/min`,
  );
  const faults = [
    heapSlope > 0.5 && 'heap and Buffers grow',
    rssSlope > 2 && 'RSS grows',
    fdSlope > 1 && 'descriptors grow',
    handleSlope > 1 && 'handles grow',
    webFailures > 0 && 'requests through / failed',
    strayFailures > 0 && 'connections failed outside agent swaps',
    idleIntervals > 0 && `${idleIntervals} intervals carried nothing`,
  ].filter(Boolean);
  if (faults.length > 0) {
    console.log(`FAIL: ${faults.join('; ')}`);
    process.exitCode = 1;
  } else {
    console.log('PASS: flat, and nothing failed but what the swaps reset');
  }
}

await main();
