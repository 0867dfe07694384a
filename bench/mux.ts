/**
 * `npm run bench:mux`: the mux alone, over TCP loopback, against a raw socket
 * measured in the same run. The receiving end runs in a child process, so
 * sender and receiver each have a core, as in real use.
 *
 *   node dist/bench/mux.js [--quick] [--json FILE]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Duplex } from 'node:stream';
import { Session } from '../src/mux/session.js';
import { Decoder, encodeFrame, FrameType, Role } from '../src/protocol/index.js';

const MiB = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);
/** The session's default send buffer; the baseline socket gets the same, so neither side has more in flight. */
const SESSION_SEND_BUFFER = 256 * 1024;

// ---- receiving side (child process) ----------------------------------------

function serveRaw(): void {
  const server = net.createServer((socket) => {
    let bytes = 0;
    socket.on('data', (d: Buffer) => (bytes += d.length));
    socket.on('end', () => socket.end(`${bytes}\n`));
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as net.AddressInfo).port }));
}

function serveMux(): void {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    const session = new Session(socket, { role: Role.Acceptor });
    session.on('stream', (stream) => {
      let bytes = 0;
      stream.on('data', (d: Buffer) => (bytes += d.length));
      stream.on('end', () => stream.end(`${bytes}\n`));
      stream.on('error', () => {});
    });
    session.on('close', () => {});
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as net.AddressInfo).port }));
}

// ---- sending side ------------------------------------------------------------

async function startChild(mode: 'serve-raw' | 'serve-mux'): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(fileURLToPath(import.meta.url), [mode], { stdio: 'inherit' });
  const [msg] = (await once(child, 'message')) as [{ port: number }];
  return { child, port: msg.port };
}

/** Writes `bytes` to `out` as fast as it takes them; resolves with the reply the far side sends after end. */
async function blast(out: Duplex, bytes: number, until?: () => boolean): Promise<number> {
  let sent = 0;
  const reply = new Promise<string>((resolve) => {
    let text = '';
    out.on('data', (d: Buffer) => (text += d.toString()));
    out.on('end', () => resolve(text));
  });
  while (sent < bytes && !(until?.() ?? false)) {
    sent += CHUNK.length;
    if (!out.write(CHUNK)) await once(out, 'drain');
  }
  out.end();
  return Number((await reply).trim());
}

async function rawOnce(port: number, bytes: number, highWaterMark?: number): Promise<number> {
  const socket = net.connect({ port, host: '127.0.0.1', ...(highWaterMark ? { highWaterMark } : {}) });
  socket.setNoDelay(true);
  await once(socket, 'connect');
  const start = performance.now();
  const got = await blast(socket, bytes);
  const seconds = (performance.now() - start) / 1000;
  if (got !== bytes) throw new Error(`raw: ${got} of ${bytes} bytes arrived`);
  return (bytes * 8) / seconds / 1e9;
}

async function muxSession(port: number): Promise<Session> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await once(socket, 'connect');
  const session = new Session(socket, { role: Role.Initiator });
  await session.ping();
  return session;
}

async function muxOnce(port: number, bytes: number): Promise<number> {
  const session = await muxSession(port);
  const start = performance.now();
  const got = await blast(session.open(), bytes);
  const seconds = (performance.now() - start) / 1000;
  await session.destroy();
  if (got !== bytes) throw new Error(`mux: ${got} of ${bytes} bytes arrived`);
  return (bytes * 8) / seconds / 1e9;
}

async function muxFairness(port: number, streams: number, seconds: number): Promise<{ gbps: number; ratio: number }> {
  const session = await muxSession(port);
  const deadline = performance.now() + seconds * 1000;
  const start = performance.now();
  const counts = await Promise.all(Array.from({ length: streams }, () => blast(session.open(), Infinity, () => performance.now() > deadline)));
  const elapsed = (performance.now() - start) / 1000;
  await session.destroy();
  const total = counts.reduce((a, b) => a + b, 0);
  return { gbps: (total * 8) / elapsed / 1e9, ratio: Math.max(...counts) / Math.max(1, Math.min(...counts)) };
}

function codecFramesPerSecond(payloadBytes: number, seconds: number): number {
  const frames: Buffer[] = [];
  for (let i = 0; i < 1000; i++) frames.push(encodeFrame({ type: FrameType.Data, streamId: (i % 50) * 2 + 1, payload: Buffer.alloc(payloadBytes, i) }));
  const wire = Buffer.concat(frames);
  let count = 0;
  const decoder = new Decoder({ dataHeader: () => void count++, data() {}, control: () => void count++ });
  const start = performance.now();
  let rounds = 0;
  while (performance.now() - start < seconds * 1000) {
    for (let at = 0; at < wire.length; at += 64 * 1024) decoder.write(wire.subarray(at, at + 64 * 1024));
    rounds++;
  }
  return count / ((performance.now() - start) / 1000);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const jsonAt = process.argv.indexOf('--json');
  const bytes = (quick ? 64 : 1024) * MiB;
  const rounds = quick ? 1 : 5;
  const raw = await startChild('serve-raw');
  const mux = await startChild('serve-mux');
  const plainRuns: number[] = [];
  const rawRuns: number[] = [];
  const muxRuns: number[] = [];
  for (let i = 0; i < rounds; i++) {
    // interleaved, so that load from elsewhere on the machine hits all alike
    plainRuns.push(await rawOnce(raw.port, bytes));
    rawRuns.push(await rawOnce(raw.port, bytes, SESSION_SEND_BUFFER));
    muxRuns.push(await muxOnce(mux.port, bytes));
  }
  const fairness = await muxFairness(mux.port, 100, quick ? 1 : 5);
  const small = codecFramesPerSecond(64, quick ? 0.2 : 1);
  const large = codecFramesPerSecond(16 * 1024, quick ? 0.2 : 1);
  raw.child.kill();
  mux.child.kill();

  const plainGbps = median(plainRuns);
  const rawGbps = median(rawRuns);
  const muxGbps = median(muxRuns);
  const rows = [
    ['one stream, raw TCP socket, default 16 KiB buffer', `${plainGbps.toFixed(2)} Gbit/s`, `${(plainGbps / rawGbps).toFixed(2)}×`, ''],
    ['one stream, raw TCP socket, 256 KiB buffer (baseline)', `${rawGbps.toFixed(2)} Gbit/s`, '1.00×', ''],
    ['one stream through a mux session', `${muxGbps.toFixed(2)} Gbit/s`, `${(muxGbps / rawGbps).toFixed(2)}×`, '≥ 0.70×'],
    ['100 streams, aggregate', `${fairness.gbps.toFixed(2)} Gbit/s`, `${(fairness.gbps / rawGbps).toFixed(2)}×`, ''],
    ['100 streams, max/min bytes per stream', fairness.ratio.toFixed(3), '', '≤ 1.5'],
    ['codec: decode 64-byte DATA frames', `${(small / 1e6).toFixed(2)} M frames/s`, '', ''],
    ['codec: decode 16 KiB DATA frames', `${(large / 1e6).toFixed(2)} M frames/s`, '', ''],
  ];
  const table = [
    `bench:mux ${quick ? '(quick) ' : ''}— ${bytes / MiB} MiB per run, median of ${rounds}, node ${process.version}`,
    '',
    '| measure | value | vs raw | target |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
  console.log(table);
  if (jsonAt > 0) {
    writeFileSync(process.argv[jsonAt + 1]!, JSON.stringify({ plainGbps, rawGbps, muxGbps, plainRuns, rawRuns, muxRuns, fairness, codec: { small, large } }, null, 2));
  }
}

const mode = process.argv[2];
if (mode === 'serve-raw') serveRaw();
else if (mode === 'serve-mux') serveMux();
else await main();
