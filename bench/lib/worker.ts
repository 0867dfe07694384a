/**
 * The bench's own processes, each started with `fork(worker.js, [role, json])`
 * and reporting over IPC: rhost pieces (through the library, silent), a data
 * sink and source, many idle or bulk clients, and a delay-line proxy.
 */
import { once } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { createClientAgent, createServerAgent, createTunnel } from '../../src/index.js';

type Reply = (message: unknown) => void;
const reply: Reply = (m) => process.send!(m);

async function listenOn(server: net.Server, port = 0): Promise<number> {
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** A tunnel, a server agent or a client agent, built from the library with no logging. */
async function rhost(o: { mode: 'tunnel' | 'server' | 'client'; options: Record<string, unknown> }): Promise<void> {
  if (o.mode === 'tunnel') {
    const tunnel = createTunnel(o.options);
    const { port } = await tunnel.listen();
    process.on('message', (m) => m === 'stats' && reply({ stats: tunnel.stats() }));
    reply({ ready: true, port });
  } else if (o.mode === 'server') {
    const agent = createServerAgent(o.options as Parameters<typeof createServerAgent>[0]);
    await agent.start();
    process.on('message', (m) => m === 'stats' && reply({ stats: agent.session?.stats() }));
    reply({ ready: true });
  } else {
    const agent = createClientAgent(o.options);
    const { port } = await agent.listen();
    await agent.ready();
    reply({ ready: true, port });
  }
}

/** Accepts connections and counts what arrives; `source` mode writes to each as fast as it drains instead. */
async function sink(o: { source?: boolean }): Promise<void> {
  let connections = 0;
  let bytes = 0;
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    connections++;
    s.setNoDelay(true);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => (bytes += d.length));
    s.on('close', () => connections--);
    if (o.source) {
      const pump = (): void => {
        while (!s.destroyed && s.write(chunk));
      };
      s.on('drain', pump);
      pump();
    }
  });
  const port = await listenOn(server);
  process.on('message', (m) => m === 'count' && reply({ connections, bytes }));
  reply({ ready: true, port });
}

/** Opens `count` connections to `port`, each sending one byte, and holds them. */
async function idleClients(o: { port: number; count: number }): Promise<void> {
  const sockets: net.Socket[] = [];
  for (let i = 0; i < o.count; i++) {
    const s = net.connect(o.port, '127.0.0.1');
    s.on('error', () => {});
    sockets.push(s);
    await once(s, 'connect');
    s.write('x');
  }
  reply({ ready: true, open: sockets.filter((s) => !s.destroyed).length });
  process.on('message', (m) => m === 'open' && reply({ open: sockets.filter((s) => !s.destroyed).length }));
}

/**
 * `count` connections reading from `port` (a source behind it) for
 * `seconds`, after a warm-up; one of them may read nothing at all.
 * Reports the bytes each received in the measured interval.
 */
async function bulkClients(o: { port: number; count: number; seconds: number; stalled: boolean }): Promise<void> {
  const counts = new Array<number>(o.count).fill(0);
  let measuring = false;
  const sockets = await Promise.all(
    Array.from({ length: o.count }, async (_, i) => {
      const s = net.connect(o.port, '127.0.0.1');
      s.on('error', () => {});
      await once(s, 'connect');
      s.write('go');
      if (o.stalled && i === 0) s.pause();
      else s.on('data', (d: Buffer) => measuring && (counts[i]! += d.length));
      return s;
    }),
  );
  await new Promise((r) => setTimeout(r, 1000)); // warm up: windows grow, queues fill
  measuring = true;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, o.seconds * 1000));
  measuring = false;
  const elapsed = (performance.now() - started) / 1000;
  for (const s of sockets) s.destroy();
  reply({ done: true, counts, elapsed });
}

/**
 * A delay line: forwards `listen` to `target`, holding every chunk for
 * `delayMs` in each direction, with at most `queueBytes` in flight per
 * direction (past it, it stops reading, so TCP's flow control sees the
 * link's capacity). It stands in for netem where the kernel lacks it.
 */
async function delayProxy(o: { target: number; delayMs: number; queueBytes: number }): Promise<void> {
  const line = (from: net.Socket, to: net.Socket): void => {
    const queue: Array<{ chunk: Buffer; due: number }> = [];
    let queued = 0;
    let timer: NodeJS.Timeout | null = null;
    let blocked = false;
    const flush = (): void => {
      timer = null;
      const now = performance.now();
      while (queue.length && queue[0]!.due <= now + 0.5 && !blocked) {
        const { chunk } = queue.shift()!;
        queued -= chunk.length;
        if (!to.write(chunk)) {
          blocked = true;
          to.once('drain', () => ((blocked = false), flush()));
        }
      }
      if (queued < o.queueBytes / 2 && from.isPaused()) from.resume();
      if (queue.length && !blocked) timer = setTimeout(flush, Math.max(0, queue[0]!.due - performance.now()));
    };
    from.on('data', (chunk: Buffer) => {
      queue.push({ chunk, due: performance.now() + o.delayMs });
      queued += chunk.length;
      if (queued > o.queueBytes) from.pause();
      if (!timer && !blocked) timer = setTimeout(flush, o.delayMs);
    });
    from.on('end', () => {
      const wait = (): void => (queue.length ? void setTimeout(wait, o.delayMs) : void to.end());
      wait();
    });
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(o.target, '127.0.0.1');
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      s.on('error', () => (client.destroy(), upstream.destroy()));
    }
    line(client, upstream);
    line(upstream, client);
  });
  const port = await listenOn(server);
  reply({ ready: true, port });
}

/** Echoes every byte back: the service of the round-trip scenario. */
async function echo(): Promise<void> {
  const server = net.createServer({ noDelay: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  reply({ ready: true, port: await listenOn(server) });
}

/**
 * Ping-pong at concurrency 1: 64 bytes out, wait for all 64 back, again,
 * for `seconds` after a warm-up. Reports the median and p99 round trip, µs.
 */
async function pingPong(o: { port: number; seconds: number }): Promise<void> {
  const s = net.connect({ port: o.port, host: '127.0.0.1', noDelay: true });
  await once(s, 'connect');
  const ping = Buffer.alloc(64, 0x70);
  const times: number[] = [];
  let got = 0;
  let sentAt = 0;
  let resolveRound: () => void = () => {};
  s.on('data', (d: Buffer) => {
    got += d.length;
    if (got >= 64) {
      got -= 64;
      resolveRound();
    }
  });
  const round = (): Promise<number> =>
    new Promise((resolve) => {
      resolveRound = () => resolve(performance.now() - sentAt);
      sentAt = performance.now();
      s.write(ping);
    });
  const warmUntil = performance.now() + 500;
  while (performance.now() < warmUntil) await round();
  const until = performance.now() + o.seconds * 1000;
  while (performance.now() < until) times.push(await round());
  s.destroy();
  times.sort((a, b) => a - b);
  const at = (p: number): number => times[Math.min(times.length - 1, Math.floor(p * times.length))]! * 1000;
  reply({ done: true, rounds: times.length, p50Us: at(0.5), p99Us: at(0.99) });
}

/**
 * A one-hop Node `net` pipe in front of `target`: accept, connect, pipe both
 * ways, nothing more. The floor of what a Node proxy costs, to calibrate
 * rhost's two hops against.
 */
async function nodePipe(o: { target: number }): Promise<void> {
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ port: o.target, host: '127.0.0.1', noDelay: true, allowHalfOpen: true });
    for (const s of [client, upstream]) s.on('error', () => (client.destroy(), upstream.destroy()));
    client.pipe(upstream);
    upstream.pipe(client);
  });
  reply({ ready: true, port: await listenOn(server) });
}

/**
 * The trivial Node server of the per-connection CPU row: it accepts, reads
 * a request, writes a fixed small response and closes. What Node itself
 * costs per connection, with nothing of rhost's.
 */
async function trivial(): Promise<void> {
  const body = `<!doctype html><title>bench</title><p>${'x'.repeat(512)}</p>\n`;
  const response = Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => s.end(response));
  });
  reply({ ready: true, port: await listenOn(server) });
}

/**
 * A crowd from one address: `count` sockets from `from` to `port`, each
 * sending a byte now and then (a request that never ends), and each one
 * the far side closes reconnecting, after `reconnectMs` or at once. Reports how many it opened and
 * how many were closed on it.
 */
async function crowd(o: { port: number; count: number; from: string; dribbleMs: number; reconnectMs: number }): Promise<void> {
  let opened = 0;
  let closed = 0;
  let stopping = false;
  const live = new Set<net.Socket>();
  const open = (): void => {
    if (stopping) return;
    const s = net.connect({ port: o.port, host: '127.0.0.1', localAddress: o.from });
    live.add(s);
    s.on('error', () => {});
    s.once('connect', () => {
      opened++;
      s.write('G');
    });
    s.once('close', () => {
      live.delete(s);
      closed++;
      if (o.reconnectMs) setTimeout(open, o.reconnectMs);
      else open();
    });
  };
  for (let i = 0; i < o.count; i++) open();
  const dribble = setInterval(() => {
    for (const s of live) if (!s.connecting && s.writable) s.write('E');
  }, o.dribbleMs);
  process.on('message', (m) => {
    if (m === 'count') reply({ opened, closed, live: live.size });
    if (m === 'stop') {
      stopping = true;
      clearInterval(dribble);
      for (const s of live) s.destroy();
      reply({ opened, closed });
    }
  });
  reply({ ready: true });
}

/** Accepts and resets at once: what Node itself costs to turn a connection away. */
async function refuser(): Promise<void> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.resetAndDestroy();
  });
  reply({ ready: true, port: await listenOn(server) });
}

// A clean exit on SIGINT, so that --cpu-prof can write its profile; and no
// orphans: a worker whose bench died (killed, or its output pipe closed) goes too.
process.on('SIGINT', () => process.exit(0));
process.on('disconnect', () => process.exit(0));

const roles: Record<string, (o: never) => Promise<void>> = { rhost, sink, idleClients, bulkClients, delayProxy, echo, pingPong, nodePipe, trivial, crowd, refuser };
const role = roles[process.argv[2]!];
if (!role) throw new Error(`unknown role ${process.argv[2]}`);
await role(JSON.parse(process.argv[3] ?? '{}') as never);
