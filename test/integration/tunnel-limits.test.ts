import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import type { Logger } from '../../src/index.js';
import { dialTunnel } from '../../src/transport/dial.js';
import { parseTunnelAddress } from '../../src/transport/address.js';
import { rawHandshake as rawAgent, type RawOutcome } from '../helpers/handshake.js';
import { buildAgentRequest, encodeFrame, FrameType } from '../../src/protocol/index.js';
import { Cleanup, listening, readToEnd, request, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';
import { until } from '../helpers/wait.js';

type Err = Error & { code?: string; retryAfterMs?: number };

/** A raw connection from a chosen loopback source address. */
async function connectFrom(port: number, localAddress: string): Promise<net.Socket> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

function closed(socket: net.Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}

/** Sends a raw agent handshake (protocol 2, proofs included) and reads the tunnel's answer: a refusal, or the start of a session. */
function rawHandshake(socket: net.Socket, extra: Record<string, string> = {}, key = 'wrong', channel = '/'): Promise<RawOutcome> {
  return rawAgent(socket, { headers: extra, key, channel });
}

function recordingLogger(lines: string[]): Logger {
  const log: Logger = { debug: (m) => void lines.push(m), info: (m) => void lines.push(m), warn: (m) => void lines.push(m), error: (m) => void lines.push(m), child: () => log };
  return log;
}

describe('limits on the public port', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  async function webRig(options: Parameters<typeof startTunnel>[1]) {
    const app = http.createServer((req, res) => res.end(`ok ${req.url}`));
    const appPort = await listening(app, cleanup);
    const t = await startTunnel(cleanup, { keys: { '/': 'k' }, ...options });
    await startServerAgent(cleanup, { tunnel: t.address, target: String(appPort), key: 'k' });
    return t;
  }

  test('key guessing: the address is locked out with growing delays; others are not', async () => {
    let clock = Date.now();
    const { port, tunnel } = await startTunnel(cleanup, { keys: { '/': 'k' }, authLockoutMs: 300, now: () => clock });
    const dial = (key: string) =>
      dialTunnel({ address: parseTunnelAddress(`127.0.0.1:${port}`), hello: { role: 'server', channel: '/', key }, userAgent: 't', timeoutMs: 5000 });
    await assert.rejects(dial('guess-1'), (e: Err) => e.code === 'ERR_RHOST_BAD_KEY');
    await assert.rejects(dial('k'), (e: Err) => e.code === 'ERR_RHOST_RATE_LIMITED' && e.retryAfterMs! >= 1000, 'even the right key waits out the lockout');
    const other = await connectFrom(port, '127.0.0.9');
    const answer = await rawHandshake(other);
    assert.equal(!answer.ok && answer.code, 'ERR_RHOST_BAD_KEY', 'another address is judged on its credentials');
    await until(() => tunnel.stats().auth.tracked === 4, 'both addresses tracked, each by name and as a whole');
    clock += 350; // the 300 ms lockout passes; now 600 ms, doubled (AuthGuard's unit test covers the doubling)
    await assert.rejects(dial('guess-2'), (e: Err) => e.code === 'ERR_RHOST_BAD_KEY');
    await assert.rejects(dial('k'), (e: Err) => e.code === 'ERR_RHOST_RATE_LIMITED');
    const stats = tunnel.stats().auth;
    assert.deepEqual([stats.failures, stats.lockedOut], [3, 2]);
  });

  test('each failed key is logged once, with the address and never the key; the log sums up the totals', async () => {
    const lines: string[] = [];
    const { port } = await startTunnel(cleanup, { keys: { '/': 'k' }, authLockoutMs: 60_000, summaryIntervalMs: 50, logger: recordingLogger(lines) });
    const first = await rawHandshake(await connectFrom(port, '127.0.0.21'), {}, 'secret-guess-1');
    assert.equal(!first.ok && first.code, 'ERR_RHOST_BAD_KEY');
    const second = await rawHandshake(await connectFrom(port, '127.0.0.21'), {}, 'secret-guess-2');
    assert.equal(!second.ok && second.code, 'ERR_RHOST_RATE_LIMITED');
    await until(() => lines.some((l) => l.startsWith('guessing:')), 'a summary');
    const failures = lines.filter((l) => l.includes('refused agent 127.0.0.21'));
    assert.equal(failures.length, 1, lines.join('\n'));
    assert.match(failures[0]!, /bad key for \/ \(or the tunnel has no channel \/\) \(address locked out of \/ for 60 s\)/);
    assert.ok(!lines.some((l) => l.includes('secret-guess')), 'no key in the log');
    assert.match(lines.find((l) => l.startsWith('guessing:'))!, /^guessing: 1 failed keys or tokens and 1 attempts refused while locked out .*\(1 and 1 since start\); 2 addresses and names remembered$/);
    const summaries = lines.filter((l) => l.startsWith('guessing:')).length;
    await new Promise((resolve) => setTimeout(resolve, 200)); // four more intervals with nothing new: no more summaries
    assert.equal(lines.filter((l) => l.startsWith('guessing:')).length, summaries);
  });

  test('a loop of bad handshakes from one address writes one line per interval, and a summary; peers’ words cannot fake a line', async () => {
    const lines: string[] = [];
    const { port, address } = await startTunnel(cleanup, { keys: { '/': 'root-key-0123456789' }, summaryIntervalMs: 2000, logger: recordingLogger(lines) });
    for (let i = 0; i < 60; i++) {
      const s = await connectFrom(port, '127.0.0.31');
      s.resume();
      s.write(buildAgentRequest({ role: 'server', channel: '/', versions: [1], legacy: { key: 'x' } }, { host: 'x', userAgent: 'old' }));
      await closed(s);
    }
    await until(() => lines.some((l) => /^refused 59 more handshakes from 127\.0\.0\.31 in the last 2.0 s \(59 ERR_RHOST_VERSION\)$/.test(l)), 'the summary');
    assert.equal(lines.filter((l) => l.includes('refused agent 127.0.0.31')).length, 1, lines.join('\n'));
    // An authenticated agent ends its session with a reason made to look like a log line, with terminal escapes.
    const socket = await connectFrom(port, '127.0.0.32');
    const session = await rawAgent(socket, { key: 'root-key-0123456789' });
    assert.ok(session.ok);
    const reason = 'bye\n12:00:00.000 info  server agent 10.9.9.9 registered /ssh\u001b[2J\u001b]0;pwned\u0007';
    socket.end(encodeFrame({ type: FrameType.GoAway, streamId: 0, code: 1, reason }));
    await until(() => lines.some((l) => l.includes('left /')), 'the agent’s departure logged');
    const left = lines.find((l) => l.includes('left /'))!;
    assert.match(left, /PROTOCOL_ERROR "bye\\u000a12:00:00\.000 info  server agent 10\.9\.9\.9 registered \/ssh\\u001b\[2J/);
    for (const line of lines) assert.doesNotMatch(line, /[\u0000-\u001f\u007f-\u009f]/, `a raw control character in ${JSON.stringify(line)}`);
    void address;
  });

  test('too many pending connections from one address: new ones from there are refused, others served', async () => {
    const { port, tunnel } = await webRig({ maxPendingHandshakesPerIp: 4, sniffTimeoutMs: 10_000 });
    const slow = await Promise.all(Array.from({ length: 4 }, () => connectFrom(port, '127.0.0.3')));
    for (const s of slow) s.write('GET /.rh'); // a prefix of the agent marker: still pending
    await until(() => tunnel.stats().pending === 4, 'four pending');
    const fifth = await connectFrom(port, '127.0.0.3');
    await closed(fifth);
    assert.equal(tunnel.stats().limits.pendingRefused, 1);
    assert.equal((await request(port, { path: '/real' })).body.toString(), 'ok /real');
    for (const s of slow) s.destroy();
  });

  test('when the pending table is full, the oldest of the network holding the most makes room', async () => {
    const { port, tunnel } = await webRig({ maxPendingHandshakes: 8, sniffTimeoutMs: 10_000 });
    const slow: net.Socket[] = [];
    for (let i = 0; i < 8; i++) {
      const s = await connectFrom(port, `127.0.1.${i + 1}`);
      s.write('GET /.rh');
      slow.push(s);
    }
    await until(() => tunnel.stats().pending === 8, 'eight pending');
    assert.equal((await request(port, { path: '/through' })).body.toString(), 'ok /through');
    await closed(slow[0]!);
    assert.equal(slow[1]!.closed, false, 'only the oldest was dropped');
    assert.equal(tunnel.stats().limits.pendingDropped, 1);
    for (const s of slow) s.destroy();
  });

  test('users per address and in total are bounded; past them a user gets a clear 503', async () => {
    const { port, tunnel } = await webRig({ maxUsersPerIp: 2, maxUsers: 3 });
    const held = await Promise.all([connectFrom(port, '127.0.0.4'), connectFrom(port, '127.0.0.4')]);
    for (const s of held) s.write('GET /held HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => tunnel.stats().users === 2, 'two users held');
    const third = await connectFrom(port, '127.0.0.4');
    third.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match((await readToEnd(third)).toString(), /^HTTP\/1\.1 503[^]*too many connections from 127\.0\.0\.4/);
    assert.equal((await request(port, { path: '/ok' })).body.toString(), 'ok /ok', 'another address still gets in');
    const fourth = await connectFrom(port, '127.0.0.5');
    const keep = await connectFrom(port, '127.0.0.6');
    fourth.write('GET /held HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => tunnel.stats().users === 3, 'three users');
    keep.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match((await readToEnd(keep)).toString(), /^HTTP\/1\.1 503[^]*maximum of 3/);
    for (const s of [...held, fourth]) s.destroy();
    await until(() => tunnel.stats().users === 0, 'users released');
  });

  test('users through a trusted proxy that does not name them count only against the overall limit', async () => {
    const { port, tunnel } = await webRig({ maxUsersPerIp: 2, maxUsers: 4, trustProxy: ['127.0.0.7'] });
    const held = await Promise.all([1, 2, 3].map(() => connectFrom(port, '127.0.0.7')));
    for (const s of held) s.write('GET /held HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => tunnel.stats().users === 3, 'three users behind the proxy, past the per-address limit of 2');
    const next = await connectFrom(port, '127.0.0.7');
    next.write('GET /held HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => tunnel.stats().users === 4, 'a fourth');
    const over = await connectFrom(port, '127.0.0.7');
    over.end('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match((await readToEnd(over)).toString(), /^HTTP\/1\.1 503[^]*maximum of 4/, 'the overall limit still holds');
    for (const s of [...held, next]) s.destroy();
    await until(() => tunnel.stats().users === 0, 'users released');
  });

  test('a client agent past the channel’s limit is refused (503, retryable)', async () => {
    const { port, address } = await startTunnel(cleanup, { keys: { '/c': 'k' }, maxClientsPerChannel: 1 });
    await startServerAgent(cleanup, { tunnel: address, target: '1', channel: '/c', key: 'k', token: 't' });
    const dial = () => dialTunnel({ address: parseTunnelAddress(`127.0.0.1:${port}`), hello: { role: 'client', channel: '/c', token: 't' }, userAgent: 't', timeoutMs: 5000 });
    const first = await dial();
    await assert.rejects(dial(), (e: Err) => e.code === 'ERR_RHOST_BUSY');
    first.transport.destroy();
  });

  test('past ¾ of the buffered-data limit anonymous users are turned away, client agents only past all of it; those carried go on', async () => {
    const big = Buffer.alloc(8 * 1024 * 1024, 7);
    const app = http.createServer((req, res) => res.end(req.url === '/big' ? big : 'small'));
    const appPort = await listening(app, cleanup);
    const limit = 1024 * 1024; // each stalled download holds one 64 KiB window: ¾ of this is 12 of them, all of it 16
    const { port, address, tunnel } = await startTunnel(cleanup, { keys: { '/': 'k', '/c': 'kc' }, maxBufferedBytes: limit });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'k' });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), channel: '/c', key: 'kc', token: 't' });
    const { port: clientPort } = await startClientAgent(cleanup, { tunnel: address, channel: '/c', token: 't' });
    const stalled: net.Socket[] = [];
    for (let i = 0; i < 16 && tunnel.stats().bufferedBytes < 0.75 * limit; i++) {
      const s = await connectFrom(port, '127.0.0.7');
      s.pause(); // reads nothing: the tunnel holds what it cannot deliver
      s.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
      stalled.push(s);
      await until(() => tunnel.stats().bufferedBytes >= (i + 1) * 64 * 1024, 'the stalled download to fill its window');
    }
    assert.ok(tunnel.stats().bufferedBytes >= 0.75 * limit && tunnel.stats().bufferedBytes < limit, `holding ${tunnel.stats().bufferedBytes}`);
    const refused = await request(port, { path: '/' });
    assert.equal(refused.status, 503);
    assert.match(refused.body.toString(), /maximum of data for slow readers/);
    assert.equal((await request(clientPort, { path: '/' })).body.toString(), 'small', 'a client agent’s stream still gets through: strangers cannot starve it');
    const one = stalled.shift()!;
    one.resume();
    let got = 0;
    one.on('data', (d: Buffer) => (got += d.length));
    await until(() => got > big.length, 'a carried download to finish');
    for (const s of stalled) s.destroy();
    await until(() => tunnel.stats().bufferedBytes < 0.75 * limit, 'memory released');
    assert.equal((await request(port, { path: '/' })).body.toString(), 'small');
    one.destroy();
  });

  test('an idle user is reset after userIdleTimeoutMs (its service never closes by itself)', async () => {
    // A service that never closes anything by itself: only the tunnel's timeout can end the user.
    const held: net.Socket[] = [];
    const service = net.createServer((c) => (held.push(c.on('error', () => {})), c.write('hello\n')));
    const servicePort = await listening(service, cleanup);
    cleanup.add(() => held.forEach((c) => c.destroy()));
    const { port, tunnel, address } = await startTunnel(cleanup, { keys: { '/': 'k' }, userIdleTimeoutMs: 200 });
    await startServerAgent(cleanup, { tunnel: address, target: String(servicePort), key: 'k' });
    const idle = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.8' });
    const error = new Promise<Err>((resolve) => idle.once('error', resolve));
    await once(idle, 'connect');
    idle.write('x');
    idle.resume();
    await until(() => tunnel.stats().users === 1, 'carried');
    const started = Date.now();
    assert.equal((await error).code, 'ECONNRESET', 'the user is reset, not ended cleanly');
    assert.ok(Date.now() - started < 3000, 'by the idle timeout, not by anything slower');
    await until(() => tunnel.stats().users === 0, 'released');
  });
});

describe('behind a trusted proxy', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());
  const PROXY = '127.0.0.10';

  test('the PROXY protocol gives the real client to logs, OPEN metadata and per-address limits', async () => {
    const lines: string[] = [];
    const app = http.createServer((_req, res) => res.end('hi'));
    const appPort = await listening(app, cleanup);
    const { port, address } = await startTunnel(cleanup, { keys: { '/': 'k' }, trustProxy: [PROXY], proxyProtocol: true, maxUsersPerIp: 1 });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'k', logger: recordingLogger(lines) });
    const viaProxy = async (header: Buffer | string, end: boolean): Promise<net.Socket> => {
      const s = await connectFrom(port, PROXY);
      s.write(header);
      const req = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n';
      if (end) s.end(req);
      else s.write(req);
      return s;
    };
    const first = await viaProxy('PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n', false);
    await until(() => lines.some((l) => l.includes('user 203.0.113.9:5555 connected')), 'the agent to see the real client');
    const second = await viaProxy('PROXY TCP4 203.0.113.9 10.0.0.1 5556 80\r\n', true);
    assert.match((await readToEnd(second)).toString(), /^HTTP\/1\.1 503[^]*too many connections from 203\.0\.113\.9/, 'the limit applies to the real client');
    const v2 = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0, 12, 198, 51, 100, 7, 10, 0, 0, 1, 0x1f, 0x90, 0, 80]);
    const third = await viaProxy(v2, true);
    assert.match((await readToEnd(third)).toString(), /^HTTP\/1\.1 200[^]*hi$/);
    assert.ok(lines.some((l) => l.includes('user 198.51.100.7:8080 connected')));
    const untrusted = await connectFrom(port, '127.0.0.11');
    untrusted.end('PROXY TCP4 203.0.113.50 10.0.0.1 1 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.match((await readToEnd(untrusted)).toString(), /^HTTP\/1\.1 400/, 'from anyone else a PROXY line is just bytes, passed to the app');
    first.destroy();
  });

  test('behind the PROXY protocol, the pending limit per address applies to the real client', async () => {
    const { port, tunnel } = await startTunnel(cleanup, { keys: { '/': 'k' }, trustProxy: [PROXY], proxyProtocol: true, maxPendingHandshakesPerIp: 2 });
    const half = (client: string, n: number): Promise<net.Socket> =>
      connectFrom(port, PROXY).then((s) => (s.resume(), s.write(`PROXY TCP4 ${client} 10.0.0.1 ${1000 + n} 80\r\nGET /.rho`), s)); // a handshake that never finishes
    const crowd = await Promise.all(Array.from({ length: 6 }, (_, n) => half('198.51.100.77', n)));
    await until(() => tunnel.stats().limits.pendingRefused === 4, 'four of one client refused');
    await until(() => crowd.filter((s) => s.destroyed || s.readableEnded).length >= 4, 'and closed');
    const neighbour = await half('198.51.100.78', 99);
    await until(() => tunnel.stats().pending === 3, 'another client behind the same proxy still gets in');
    assert.equal(tunnel.stats().limits.pendingRefused, 4);
    for (const s of [...crowd, neighbour]) s.destroy();
  });

  test('behind the PROXY protocol, the new-connection rate counts the client the proxy names; a proxy naming no one is not held to it', async () => {
    const app = http.createServer((_req, res) => res.end('hi'));
    const appPort = await listening(app, cleanup);
    const { port, address, tunnel } = await startTunnel(cleanup, { keys: { '/': 'k' }, trustProxy: [PROXY], proxyProtocol: true, maxConnRatePerIp: 1, connBurstPerIp: 3 });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'k' });
    const answer = async (header: string): Promise<string> => {
      const s = await connectFrom(port, PROXY);
      s.end(`${header}GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      return readToEnd(s).then((b) => b.toString().split('\r\n')[0]!, () => 'reset');
    };
    const served = (answers: string[]): number => answers.filter((a) => a === 'HTTP/1.1 200 OK').length;
    const one = await Promise.all(Array.from({ length: 8 }, (_, n) => answer(`PROXY TCP4 198.51.100.20 10.0.0.1 ${2000 + n} 80\r\n`)));
    assert.ok(served(one) >= 3 && served(one) <= 4, `${served(one)} of 8 from one client served: its burst (and at most one more by the rate)`);
    assert.ok(tunnel.stats().limits.rateRefused >= 4, `${tunnel.stats().limits.rateRefused} refused by the rate`);
    assert.equal(await answer('PROXY TCP4 198.51.100.21 10.0.0.1 3000 80\r\n'), 'HTTP/1.1 200 OK', 'another client behind the same proxy is untouched');
    const anonymous = await Promise.all(Array.from({ length: 8 }, () => answer('PROXY UNKNOWN\r\n')));
    assert.equal(served(anonymous), 8, `connections naming no client count against the overall limits only: ${anonymous.join(', ')}`);
  });

  test('X-Forwarded-For from a trusted proxy puts the lockout on the real client', async () => {
    const lines: string[] = [];
    const { port } = await startTunnel(cleanup, { keys: { '/': 'k' }, trustProxy: [PROXY], authLockoutMs: 60_000, logger: recordingLogger(lines) });
    const attempt = async (xff: string, key: string) => rawHandshake(await connectFrom(port, PROXY), { 'X-Forwarded-For': xff }, key);
    const a = await attempt('198.51.100.7', 'wrong');
    assert.equal(!a.ok && a.code, 'ERR_RHOST_BAD_KEY');
    const b = await attempt('198.51.100.7', 'k');
    assert.equal(!b.ok && b.code, 'ERR_RHOST_RATE_LIMITED');
    const c = await attempt('198.51.100.8', 'wrong');
    assert.equal(!c.ok && c.code, 'ERR_RHOST_BAD_KEY', 'the proxy itself is not locked out');
    assert.ok(lines.some((l) => l.includes('refused agent 198.51.100.7')), lines.join('\n'));
    assert.ok(!lines.some((l) => l.includes('not trusted')), 'no hint about a proxy that is trusted');
  });

  test('behind a proxy it does not trust, a guesser on one channel locks out only that channel, and the tunnel says how to fix it', async () => {
    const lines: string[] = [];
    const { port } = await startTunnel(cleanup, { keys: { '/': 'k', '/ssh': 's' }, authLockoutMs: 60_000, logger: recordingLogger(lines) });
    const attempt = async (xff: string, channel: string, key: string) => {
      const socket = await connectFrom(port, PROXY);
      cleanup.add(() => socket.destroy());
      return rawHandshake(socket, { 'X-Forwarded-For': xff }, key, channel);
    };
    const guess = await attempt('203.0.113.66', '/ssh', 'guess');
    assert.equal(!guess.ok && guess.code, 'ERR_RHOST_BAD_KEY');
    const again = await attempt('203.0.113.66', '/ssh', 'guess-2');
    assert.equal(!again.ok && again.code, 'ERR_RHOST_RATE_LIMITED', '/ssh is locked for the proxy’s address');
    const web = await attempt('198.51.100.7', '/', 'k');
    assert.ok(web.ok, 'the agent of / behind the same proxy still registers');
    const unknown = await attempt('203.0.113.66', '/nope', 'x');
    assert.equal(!unknown.ok && unknown.code, 'ERR_RHOST_BAD_KEY', 'a name that is no channel answers as a wrong key does');
    const hints = lines.filter((l) => /through a proxy at 127\.0\.0\.10 .* not trusted.*--trust-proxy 127\.0\.0\.10/.test(l));
    assert.equal(hints.length, 1, lines.join('\n'));
  });
});
