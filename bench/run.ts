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
import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { ask, delayed, direct, iperfServer, nginxPage, nginxStream, nodePipe, rhost, selfSigned, sshLocal, sshReverse, worker, type Path } from './lib/paths.js';
import { cpuOf, rssOf, sleep, stop } from './lib/procs.js';
import { DEFAULT_TUNNEL_CONFIG } from '../src/index.js';
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

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** How busy each process was while `during` ran, in % of a core. */
async function busyDuring<T>(pids: Record<string, number>, during: () => Promise<T>): Promise<{ result: T; busy: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, cpuOf(pid)]));
  const started = performance.now();
  const result = await during();
  const elapsedUs = (performance.now() - started) * 1000;
  return { result, busy: Object.fromEntries(Object.entries(pids).map(([name, pid]) => [name, ((cpuOf(pid) - before[name]!) / elapsedUs) * 100])) };
}

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
    record({ scenario: 'keep-alive', path: path.name, value: ka.rps, unit: 'req/s', ratio: base && ka.rps / base.ka.rps, target: '≥ 0.85× nginx stream', extra: kaExtra });
    record({ scenario: 'Connection: close', path: path.name, value: close.rps, unit: 'req/s', ratio: base && close.rps / base.close.rps, target: '≥ 0.60× nginx stream (aim 0.75×)', extra: close.errors ? `${close.errors} errors` : '' });
  });
  await page.stop();
}

interface Variant {
  build: (target: number) => Promise<Path>;
  /** The Host (and so the TLS server name) wrk names; default its URL's. */
  host?: string;
}

/**
 * What host routing and the --http agent cost, against the same tunnel
 * without them, in one run: wrk -c64 keep-alive and Connection: close on
 * the small page, with the tunnel's and the agent's CPU per connection.
 * Then TLS users (wrk over https, new handshakes with Connection: close)
 * straight to an nginx TLS page, through `/`, and passed through by their
 * server name: a routed name costs one ClientHello read.
 */
async function routing(): Promise<void> {
  log(`Routing, wrk -t1 -c64 -d${SECONDS}s on a small nginx page:`);
  const routed = { tunnel: { domains: ['bench.test'] }, channel: '/app', agent: { public: true } };
  const plain: Variant[] = [
    { build: nginxStream },
    { build: RHOST },
    { build: (t) => rhost(t, { ...routed, label: ', routed by Host' }), host: 'app.bench.test' },
    { build: (t) => rhost(t, { agent: { http: true }, label: ', --http agent' }) },
    { build: (t) => rhost(t, { ...routed, agent: { public: true, http: true }, label: ', routed by Host, --http agent' }), host: 'app.bench.test' },
  ];
  const page = await nginxPage();
  await measureRouting('routing', plain, (port) => `http://127.0.0.1:${port}/index.html`, page.port);
  await page.stop();
  const pem = await selfSigned();
  const tlsPage = await nginxPage(pem);
  log(`TLS users by server name, wrk over https (SNI localhost) on an nginx TLS page:`);
  const tls: Variant[] = [
    { build: async (t) => direct(t) },
    { build: nginxStream },
    { build: RHOST },
    { build: (t) => rhost(t, { tunnel: { routes: { localhost: '/app' } }, channel: '/app', label: ', SNI passed through' }) },
  ];
  await measureRouting('TLS', tls, (port) => `https://localhost:${port}/index.html`, tlsPage.port);
  await tlsPage.stop();
}

async function measureRouting(scenario: string, variants: Variant[], url: (port: number) => string, target: number): Promise<void> {
  let unrouted: { ka: number; close: number } | undefined;
  for (const v of variants) {
    const path = await v.build(target);
    try {
      const headers = v.host ? [`Host: ${v.host}`] : [];
      await wrk(url(path.port), 1, 64, false, headers); // warm up
      const { result: ka, cpu: kaCpu } = await cpuPerRequest(path.pids, () => wrk(url(path.port), SECONDS, 64, false, headers));
      const { result: close, cpu } = await cpuPerRequest(path.pids, () => wrk(url(path.port), SECONDS, 64, true, headers));
      if (path.name === 'rhost') unrouted = { ka: ka.rps, close: close.rps };
      const vs = (n: number, of?: number): string => (of && path.name !== 'rhost' && path.name.startsWith('rhost') ? `${(n / of).toFixed(2)}× rhost without it; ` : '');
      const cpuText = (of: Record<string, number>): string =>
        Object.entries(of)
          .map(([name, us]) => `${name} ${us.toFixed(0)} µs`)
          .join(', ') || '-';
      const errors = (r: WrkResult): string => (r.errors ? `, ${r.errors} errors` : '');
      const target = scenario === 'TLS' ? '≥ 0.95× rhost without it' : path.name.includes('--http') ? '≥ 0.6× rhost without it (keep-alive)' : '≥ 0.8× rhost without it';
      record({ scenario: `${scenario} keep-alive`, path: path.name, value: ka.rps, unit: 'req/s', target, extra: `${vs(ka.rps, unrouted?.ka)}p99 ${ka.p99Ms.toFixed(2)} ms; CPU per request: ${cpuText(kaCpu)}${errors(ka)}` });
      record({ scenario: `${scenario} Connection: close`, path: path.name, value: close.rps, unit: 'req/s', target, extra: `${vs(close.rps, unrouted?.close)}CPU per connection: ${cpuText(cpu)}${errors(close)}` });
    } finally {
      await path.stop();
    }
  }
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
      const target = path.name.includes('TLS') ? '≥ 0.30× direct (aim 0.40×)' : '≥ 0.70× nginx stream';
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
  record({ scenario: '50 ms RTT', path: 'rhost, agent over the delay line', value: gbps, unit: 'Gbit/s', ratio: gbps / base, target: '≥ 0.8× direct (aim 0.9×)' });
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

const CROWD = { count: 2000, from: '127.0.2.1', dribbleMs: 1000 };

/**
 * Starts a crowd at `port`; resolves once it has had a second to reach full
 * strength. `idle`: on CPU nobody else wants, as if from another machine.
 */
async function startCrowd(port: number, reconnectMs: number, idle: boolean): Promise<ChildProcess> {
  const crowd = await worker('crowd', { port, reconnectMs, ...CROWD }, idle);
  await sleep(1000);
  return crowd.child;
}

/** How many connections the crowd had closed on it while `during` ran, per second. */
async function refusals<T>(crowd: ChildProcess, during: () => Promise<T>): Promise<{ result: T; perSecond: number }> {
  const before = await ask<{ closed: number }>(crowd, 'count');
  const started = Date.now();
  const result = await during();
  const after = await ask<{ closed: number }>(crowd, 'count');
  return { result, perSecond: ((after.closed - before.closed) * 1000) / (Date.now() - started) };
}

/**
 * A crowd of new connections from one address (2,000 sockets from
 * 127.0.2.1 that dribble a byte a second, each one closed reconnecting)
 * beside a real user (wrk -c64 keep-alive from 127.0.0.1): the real user's
 * req/s and p99, quiet and flooded, straight to the service and through
 * rhost with its default limits (and with the per-address rate off, to
 * show what it buys). The crowd runs on idle CPU only (SCHED_IDLE: as if
 * from other machines), then sharing the CPU with everything else (this
 * 2-core machine pays for the attack's own connects too). Then what one
 * refused connection costs the tunnel, against Node accepting and
 * resetting with nothing else.
 */
async function flood(): Promise<void> {
  const page = await nginxPage();
  const defaults = { maxConnRatePerIp: DEFAULT_TUNNEL_CONFIG.maxConnRatePerIp, maxUsersPerIp: DEFAULT_TUNNEL_CONFIG.maxUsersPerIp, maxClientsPerIp: DEFAULT_TUNNEL_CONFIG.maxClientsPerIp };
  const paths: Array<(t: number) => Promise<Path>> = [
    async (t) => direct(t),
    async (t) => ({ ...(await rhost(t, { tunnel: defaults })), name: 'rhost, default limits' }),
    async (t) => ({ ...(await rhost(t, { tunnel: { ...defaults, maxConnRatePerIp: 0 } })), name: 'rhost, no per-address rate' }),
  ];
  const window = Math.max(1, SECONDS / 2);
  const rounds = QUICK ? 1 : 3;
  log(`A crowd from one address beside a real user, wrk -t1 -c64 keep-alive, ${rounds} × ${window} s quiet then flooded:`);
  await withPaths(page.port, paths, async (path) => {
    const url = `http://127.0.0.1:${path.port}/index.html`;
    await wrk(url, 1, 64); // warm up
    for (const idle of [true, false]) {
      // Quiet and flooded windows alternate, so that the machine's own drift falls on both.
      const runs: Array<{ quiet: WrkResult; flooded: WrkResult; perSecond: number; busy: Record<string, number> }> = [];
      for (let round = 0; round < rounds; round++) {
        const quiet = await wrk(url, window, 64);
        const crowd = await startCrowd(path.port, 0, idle);
        const { result, perSecond } = await refusals(crowd, () => busyDuring({ ...path.pids, crowd: crowd.pid! }, () => wrk(url, window, 64)));
        await stop(crowd);
        runs.push({ quiet, flooded: result.result, perSecond, busy: result.busy });
      }
      const ratio = median(runs.map((r) => r.flooded.rps / r.quiet.rps));
      const quietP99 = median(runs.map((r) => r.quiet.p99Ms));
      const floodedP99 = median(runs.map((r) => r.flooded.p99Ms));
      const busy = Object.keys(runs[0]!.busy).map((name) => `${name} ${median(runs.map((r) => r.busy[name]!)).toFixed(0)}%`);
      const errors = runs.reduce((sum, r) => sum + r.flooded.errors, 0);
      const extra =
        `quiet ${median(runs.map((r) => r.quiet.rps)).toFixed(0)} req/s; p99 ${quietP99.toFixed(2)} → ${floodedP99.toFixed(2)} ms ` +
        `(${floodedP99 <= 2 * quietP99 + 1 ? 'within' : 'over'} 2× + 1 ms); ${median(runs.map((r) => r.perSecond)).toFixed(0)} crowd connections closed a second; ` +
        `CPU of a core: ${busy.join(', ')}${errors ? `; ${errors} errors` : ''}`;
      const scenario = `real user beside a crowd ${idle ? 'on idle CPU only' : 'sharing the CPU'}`;
      record({ scenario, path: path.name, value: ratio, unit: '× quiet', target: '≥ 0.8× quiet req/s; p99 ≤ 2× + 1 ms', extra });
    }
  });
  await page.stop();
  // What turning one connection away costs: Node alone, and the tunnel's rate refusal.
  const cost = async (name: string, pid: number, port: number, floorUs?: number): Promise<number> => {
    const crowd = await startCrowd(port, 0, false);
    const before = cpuOf(pid);
    const { perSecond } = await refusals(crowd, () => sleep(SECONDS * 1000));
    const us = (cpuOf(pid) - before) / (perSecond * SECONDS);
    await stop(crowd);
    record({ scenario: 'CPU per refused connection', path: name, value: us, unit: 'µs', extra: `${perSecond.toFixed(0)} a second${floorUs ? `; ${(us / floorUs).toFixed(2)}× Node accepting and resetting` : ''}` });
    return us;
  };
  const refuser = await worker<{ port: number }>('refuser', {});
  const floorUs = await cost('Node: accept and reset', refuser.child.pid!, refuser.first.port);
  await stop(refuser.child);
  const tunnel = await rhost(1, { tunnel: defaults });
  await cost('rhost tunnel, over the rate', tunnel.pids.tunnel!, tunnel.port, floorUs);
  await tunnel.stop();
}

const SCENARIOS: Record<string, () => Promise<void>> = { rtt: roundTrip, keepalive: http, routing, bulk, idle: idleStreams, fairness, long: longLink, flood };

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
    '| scenario | path | value | vs direct | vs nginx stream | vs ssh -R | target | notes |',
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
