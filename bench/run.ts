/**
 * `npm run bench`: rhost against direct connections, nginx's stream proxy
 * and `ssh -R`, all measured in the same run on loopback, with wrk and
 * iperf3. Writes a markdown table and JSON under bench/results/.
 *
 *   npm run bench               # the full run (about 6 minutes)
 *   npm run bench -- --quick    # seconds per scenario: a smoke run for CI
 *   npm run bench -- --only keepalive,bulk
 *
 * bench/setup.sh installs what it needs from Debian.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ask, delayed, direct, iperfServer, nginxPage, nginxStream, nodePipe, rhost, sshLocal, sshReverse, worker, type Path } from './lib/paths.js';
import { cpuOf, rssOf, sleep, stop } from './lib/procs.js';
import { iperf, wrk, type WrkResult } from './lib/tools.js';

const QUICK = process.argv.includes('--quick');
const ONLY = (() => {
  const at = process.argv.indexOf('--only');
  return at > 0 ? new Set(process.argv[at + 1]!.split(',')) : null;
})();
const SECONDS = QUICK ? 1 : 8;
const KiB = 1024;

interface Row {
  scenario: string;
  path: string;
  value: number;
  unit: string;
  /** Ratio to the direct baseline of the same scenario, when there is one. */
  ratio?: number;
  target?: string;
  extra?: string;
  /** Larger is better (throughput), or smaller (latency, memory). */
  higherIsBetter?: boolean;
}

const rows: Row[] = [];
const log = (line: string): void => console.log(line);

function record(row: Row): void {
  rows.push(row);
  const ratio = row.ratio === undefined ? '' : ` (${row.ratio.toFixed(2)}× direct)`;
  log(`  ${row.path.padEnd(32)} ${row.value.toFixed(row.value < 10 ? 2 : 0).padStart(9)} ${row.unit}${ratio}${row.extra ? `  ${row.extra}` : ''}`);
}

async function withPaths(target: number, builders: Array<(t: number) => Promise<Path>>, each: (p: Path) => Promise<void>): Promise<void> {
  for (const build of builders) {
    const path = await build(target);
    try {
      await each(path);
    } finally {
      await path.stop();
    }
  }
}

const BASELINES: Array<(t: number) => Promise<Path>> = [async (t) => direct(t), nginxStream, sshReverse, nodePipe];
const RHOST = (t: number): Promise<Path> => rhost(t);
const VIA_CLIENT = (t: number): Promise<Path> => rhost(t, { clientAgent: true });

/** CPU each of a path's processes spent per request of a wrk run, in µs. */
async function cpuPerRequest(pids: Record<string, number>, load: () => Promise<WrkResult>): Promise<{ result: WrkResult; cpu: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuOf(pid)]));
  const result = await load();
  const requests = result.rps * SECONDS;
  const cpu = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, (cpuOf(pid) - before[name]!) / Math.max(1, requests)]));
  return { result, cpu };
}

async function http(): Promise<void> {
  const page = await nginxPage();
  const results = new Map<string, { ka: WrkResult; close: WrkResult }>();
  log(`HTTP, wrk -t1 -c64 -d${SECONDS}s on a small nginx page:`);
  // What Node itself costs per connection: a server that accepts, reads, answers and closes, and nothing else.
  const trivial = await worker<{ port: number }>('trivial', {});
  const floor = await cpuPerRequest({ server: trivial.child.pid! }, () => wrk(`http://127.0.0.1:${trivial.first.port}/`, SECONDS, 64, true));
  await stop(trivial.child);
  record({ scenario: 'CPU per connection', path: 'trivial Node server', value: floor.cpu.server!, unit: 'µs', extra: `${floor.result.rps.toFixed(0)} req/s, Connection: close` });
  await withPaths(page.port, [...BASELINES, RHOST, VIA_CLIENT], async (path) => {
    const url = `http://127.0.0.1:${path.port}/index.html`;
    await wrk(url, 1, 64); // warm up
    const ka = await wrk(url, SECONDS, 64);
    const { result: close, cpu } = await cpuPerRequest(path.pids, () => wrk(url, SECONDS, 64, true));
    results.set(path.name, { ka, close });
    for (const [name, us] of Object.entries(cpu)) {
      const vsFloor = `${(us / floor.cpu.server!).toFixed(2)}× the trivial Node server`;
      record({ scenario: 'CPU per connection', path: `${path.name}: ${name}`, value: us, unit: 'µs', extra: vsFloor });
    }
    const base = results.get('direct');
    const kaExtra = `p50 ${ka.p50Ms.toFixed(2)} ms, p99 ${ka.p99Ms.toFixed(2)} ms${base ? ` (${(ka.p99Ms / base.ka.p99Ms).toFixed(1)}× direct p99)` : ''}${ka.errors ? `, ${ka.errors} errors` : ''}`;
    record({ scenario: 'keep-alive', path: path.name, value: ka.rps, unit: 'req/s', ratio: base && ka.rps / base.ka.rps, target: '≥ 0.50× (aim 0.60×); p99 ≤ 3× (aim 2×)', extra: kaExtra });
    record({ scenario: 'Connection: close', path: path.name, value: close.rps, unit: 'req/s', ratio: base && close.rps / base.close.rps, target: '≥ 0.40× (aim 0.53×)', extra: close.errors ? `${close.errors} errors` : '' });
  });
  await page.stop();
}

async function bulk(): Promise<void> {
  const server = await iperfServer();
  const baseline: Record<string, number> = {};
  log(`Bulk, one iperf3 stream for ${SECONDS} s:`);
  const transports = (['tls', 'ws', 'wss'] as const).map((transport) => (t: number) => rhost(t, { transport }));
  await withPaths(server.port, [...BASELINES, RHOST, ...transports, VIA_CLIENT], async (path) => {
    for (const reverse of [false, true]) {
      const gbps = await iperf(path.port, SECONDS, reverse);
      const key = reverse ? 'service→user' : 'user→service';
      if (path.name === 'direct') baseline[key] = gbps;
      const target = path.name.includes('TLS') ? '≥ 0.30× (aim 0.40×)' : '≥ 0.45× (aim 0.55×)';
      record({ scenario: `bulk ${key}`, path: path.name, value: gbps, unit: 'Gbit/s', ratio: gbps / baseline[key]!, target });
    }
  });
  await server.stop();
}

async function idleStreams(): Promise<void> {
  const sink = await worker<{ port: number }>('sink', {});
  const steps = QUICK ? [100, 200] : [5000, 10_000];
  const limits = { maxUsers: 20_000, maxUsersPerChannel: 20_000, maxUsersPerIp: 20_000 };
  const path = await rhost(sink.first.port, { tunnel: limits, session: { maxStreams: 20_000, maxPendingOpens: 20_000 } });
  log('Idle streams, each having sent one byte (RSS growth of tunnel + agent):');
  await sleep(500);
  const base = { tunnel: rssOf(path.pids.tunnel!), agent: rssOf(path.pids.agent!) };
  let clients = 0;
  const holders = [];
  for (const total of steps) {
    const holder = await worker<{ open: number }>('idleClients', { port: path.port, count: total - clients });
    holders.push(holder);
    clients = total;
    for (;;) {
      const { connections, bytes } = await ask<{ connections: number; bytes: number }>(sink.child, 'count');
      if (connections >= total && bytes >= total) break;
      await sleep(100);
    }
    await sleep(500);
    const tunnel = (rssOf(path.pids.tunnel!) - base.tunnel) / total;
    const agent = (rssOf(path.pids.agent!) - base.agent) / total;
    record({
      scenario: 'idle stream RSS',
      path: `rhost, ${total} streams`,
      value: (tunnel + agent) / KiB,
      unit: 'KiB/stream',
      target: '≤ 24 KiB (aim 12)',
      extra: `tunnel ${(tunnel / KiB).toFixed(1)} + agent ${(agent / KiB).toFixed(1)} KiB`,
    });
  }
  for (const h of holders) await stop(h.child);
  await path.stop();
  await stop(sink.child);
}

async function fairness(): Promise<void> {
  const source = await worker<{ port: number }>('sink', { source: true });
  const path = await rhost(source.first.port);
  log(`Fairness, 100 streams reading from the service for ${SECONDS} s:`);
  let unstalledGbps = 0;
  for (const stalled of [false, true]) {
    const run = await worker<{ counts: number[]; elapsed: number }>('bulkClients', { port: path.port, count: 100, seconds: SECONDS, stalled });
    const rssDuring = rssOf(path.pids.tunnel!);
    const counts = stalled ? run.first.counts.slice(1) : run.first.counts;
    await stop(run.child);
    const gbps = (counts.reduce((a, b) => a + b, 0) * 8) / run.first.elapsed / 1e9;
    const ratio = Math.max(...counts) / Math.max(1, Math.min(...counts));
    const notes = `aggregate ${gbps.toFixed(2)} Gbit/s, tunnel RSS ${(rssDuring / 1024 / 1024).toFixed(0)} MiB`;
    if (!stalled) {
      unstalledGbps = gbps;
      record({ scenario: 'fairness', path: 'rhost, 100 readers', value: ratio, unit: 'max/min', target: '≤ 1.5', extra: notes });
    } else {
      // What the 99 readers move together beside a stalled one, against what 100 readers moved.
      const kept = (100 * gbps) / unstalledGbps;
      record({
        scenario: 'fairness, one stalled reader',
        path: 'rhost, 99 readers + 1 stalled',
        value: kept,
        unit: '% kept',
        target: 'the others keep ≥ 90 %',
        extra: `${notes}, max/min ${ratio.toFixed(2)}`,
      });
    }
  }
  await path.stop();
  await stop(source.child);
}

async function longLink(): Promise<void> {
  const server = await iperfServer();
  const delay = { delayMs: 25, queueBytes: 8 * 1024 * 1024 };
  const seconds = QUICK ? 2 : 10;
  log(`A long link: 50 ms RTT (a delay line), one iperf3 stream for ${seconds} s, service→user:`);
  const plain = await delayed(server.port, delay);
  const base = await iperf(plain.port, seconds, true);
  await plain.stop();
  record({ scenario: '50 ms RTT', path: 'direct', value: base, unit: 'Gbit/s', ratio: 1, extra: 'over the same delay line' });
  const path = await rhost(server.port, { delay });
  const gbps = await iperf(path.port, seconds, true);
  await path.stop();
  record({ scenario: '50 ms RTT', path: 'rhost, agent over the delay line', value: gbps, unit: 'Gbit/s', ratio: gbps / base, target: '≥ 0.8× (aim 0.9×)' });
  await server.stop();
}

/**
 * The round trip each path adds: 64 bytes to an echo service and back, one
 * at a time, for SECONDS. Reported as the median round trip, and as what
 * each hop of the path adds to it over the direct one (nginx and the Node
 * pipe are one hop; ssh -L and rhost two; rhost through a client agent
 * three).
 */
async function roundTrip(): Promise<void> {
  const echo = await worker<{ port: number }>('echo', {});
  const hops: Record<string, number> = { direct: 0, 'nginx stream proxy': 1, 'node net pipe': 1, 'ssh -L (aes128-gcm)': 2, rhost: 2, 'rhost via client agent': 3 };
  log(`Round trip, 64 bytes ping-pong at concurrency 1 for ${SECONDS} s:`);
  let directUs = 0;
  let nginxHopUs = 0;
  await withPaths(echo.first.port, [async (t) => direct(t), nginxStream, nodePipe, sshLocal, RHOST, VIA_CLIENT], async (path) => {
    const run = await worker<{ p50Us: number; p99Us: number; rounds: number }>('pingPong', { port: path.port, seconds: SECONDS });
    await stop(run.child);
    const { p50Us, p99Us, rounds } = run.first;
    const n = hops[path.name] ?? 1;
    if (n === 0) directUs = p50Us;
    const perHop = n === 0 ? 0 : (p50Us - directUs) / n;
    if (path.name === 'nginx stream proxy') nginxHopUs = perHop;
    record({ scenario: 'round trip', path: path.name, value: p50Us, unit: 'µs', ratio: directUs ? p50Us / directUs : undefined, extra: `p99 ${p99Us.toFixed(0)} µs, ${rounds} rounds` });
    if (n > 0) {
      record({
        scenario: 'round trip added per hop',
        path: path.name,
        value: perHop,
        unit: 'µs',
        target: path.name.startsWith('rhost') ? '≤ 1.2× nginx’s one hop' : undefined,
        extra: nginxHopUs ? `${(perHop / nginxHopUs).toFixed(2)}× nginx’s hop; ${n} hop${n === 1 ? '' : 's'}` : `${n} hop${n === 1 ? '' : 's'}`,
      });
    }
  });
  await stop(echo.child);
}

const SCENARIOS: Record<string, () => Promise<void>> = { rtt: roundTrip, keepalive: http, bulk, idle: idleStreams, fairness, long: longLink };

/** The same scenario's value on a baseline path, if measured. */
function baseline(scenario: string, path: string): number | undefined {
  return rows.find((r) => r.scenario === scenario && r.path === path)?.value;
}

function markdown(): string {
  const lines = [
    `# rhost bench ${QUICK ? '(quick) ' : ''}— ${new Date().toISOString()}`,
    '',
    `node ${process.version}, ${SECONDS} s per measurement, everything on loopback. Ratios are to baselines measured in the same run.`,
    '',
    '| scenario | path | value | vs direct | vs nginx stream | vs ssh -R | target (vs direct) | notes |',
    '|---|---|---|---|---|---|---|---|',
  ];
  const ratio = (r: Row, base: string): string => {
    const b = baseline(r.scenario, base);
    return b === undefined || r.path === base ? '' : `${(r.value / b).toFixed(2)}×`;
  };
  for (const r of rows) {
    const value = `${r.value.toFixed(r.value < 10 ? 2 : 0)} ${r.unit}`;
    const target = r.path.startsWith('rhost') ? (r.target ?? '') : '';
    lines.push(`| ${r.scenario} | ${r.path} | ${value} | ${ratio(r, 'direct')} | ${ratio(r, 'nginx stream proxy')} | ${ratio(r, 'ssh -R (aes128-gcm)')} | ${target} | ${r.extra ?? ''} |`);
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  for (const [name, scenario] of Object.entries(SCENARIOS)) {
    if (ONLY && !ONLY.has(name)) continue;
    await scenario();
  }
  const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const stamp = QUICK ? 'quick' : new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-');
  writeFileSync(`${dir}${stamp}.md`, markdown());
  writeFileSync(`${dir}${stamp}.json`, JSON.stringify({ quick: QUICK, node: process.version, rows }, null, 2));
  log(`\nwrote bench/results/${stamp}.md and .json`);
}

await main();
process.exit(0);
