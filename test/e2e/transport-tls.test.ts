import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import tls from 'node:tls';
import { createServerAgent, createTunnel, type Logger, type Tunnel } from '../../src/index.js';
import { Cleanup, listening, request, startServerAgent, startTunnel } from '../helpers/rig.js';
import { until } from '../helpers/wait.js';
import { makePki, replaceFile, type TestPki } from '../helpers/certs.js';
import { requireBinaries, which } from '../helpers/system.js';
import { httpsGet } from '../helpers/transport-https.js';
import { dialTunnel } from '../../src/transport/dial.js';
import { parseTunnelAddress } from '../../src/transport/address.js';

type Err = Error & { code?: string };

function recordingLogger(lines: string[]): Logger {
  const log: Logger = { debug: () => {}, info: (m) => void lines.push(m), warn: (m) => void lines.push(`WARN ${m}`), error: (m) => void lines.push(`ERROR ${m}`), child: () => log };
  return log;
}

/** The SHA-256 fingerprint of the certificate a TLS server presents. */
async function presented(port: number, ca: string): Promise<string> {
  const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: readFileSync(ca) });
  await once(socket, 'secureConnect');
  const fingerprint = socket.getPeerCertificate().fingerprint256;
  socket.destroy();
  return fingerprint;
}

describe('TLS on the tunnel’s one port', () => {
  const cleanup = new Cleanup();
  let pki: TestPki;
  let tunnel: Tunnel;
  let port = 0;
  let appPort = 0;
  let files: { cert: string; key: string };

  before(async () => {
    if (which('openssl') === null) return;
    pki = makePki(cleanup);
    files = pki.issue('tunnel');
    const app = http.createServer((req, res) => res.end(`app saw ${req.url}`));
    appPort = await listening(app, cleanup);
    ({ tunnel, port } = await startTunnel(cleanup, {
      keys: { '/': 'k', '/plain': 'p', '/third': 'x' },
      tlsCert: files.cert,
      tlsKey: files.key,
      tlsReloadIntervalMs: 20,
    }));
  });
  after(() => cleanup.run());

  test('an agent with --ca reaches the tunnel over https://, and users over HTTPS and plain HTTP', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const lines: string[] = [];
    await startServerAgent(cleanup, { tunnel: `https://localhost:${port}`, ca: pki.caCert, target: String(appPort), key: 'k', logger: recordingLogger(lines) });
    assert.ok(lines.some((l) => /over the raw upgrade with TLS/.test(l)), lines.join('\n'));
    assert.deepEqual(await httpsGet(port, '/secure', pki.caCert), { status: 200, body: 'app saw /secure' });
    assert.equal((await request(port, { path: '/plain-user' })).body.toString(), 'app saw /plain-user', 'plain users share the port');
  });

  test('without the CA, the agent fails with a clear certificate error', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const agent = createServerAgent({ tunnel: `https://localhost:${port}`, target: '1', channel: '/plain', key: 'p' });
    await assert.rejects(agent.start(), (err: Err) => err.code === 'ERR_RHOST_TLS' && /not trusted/.test(err.message) && /--ca FILE/.test(err.message));
    await agent.close();
  });

  test('with --insecure it connects, and warns', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const lines: string[] = [];
    const agent = createServerAgent({ tunnel: `wss://localhost:${port}`, insecure: true, target: String(appPort), channel: '/plain', key: 'p', logger: recordingLogger(lines) });
    cleanup.add(() => agent.close());
    await agent.start();
    assert.ok(lines.some((l) => l.startsWith('WARN TLS certificate checks are OFF')), lines.join('\n'));
    assert.ok(lines.some((l) => /over WebSocket with TLS/.test(l)), 'wss:// carries the session in WebSocket over TLS');
  });

  test('plain and TLS agents work on the same port at once', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    await startServerAgent(cleanup, { tunnel: `http://127.0.0.1:${port}`, target: String(appPort), channel: '/third', key: 'x' });
    const servers = tunnel.stats().channels.filter((c) => c.server).map((c) => c.name);
    assert.deepEqual(servers.sort(), ['/', '/plain', '/third'], 'TLS (/), WebSocket over TLS (/plain) and plain TCP (/third) at once');
    assert.deepEqual(await httpsGet(port, '/still', pki.caCert), { status: 200, body: 'app saw /still' });
  });

  test('a certificate swapped on disk is served to the next connection', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const before = await presented(port, pki.caCert);
    const renewed = pki.issue('renewed');
    let reloads = 0;
    tunnel.on('tls-reload', () => reloads++);
    replaceFile(files.key, renewed.key);
    replaceFile(files.cert, renewed.cert);
    // The key and the certificate may be picked up one poll apart: after each reload, look at what is served.
    let after = before;
    for (let seen = 0; after === before; ) {
      await until(() => reloads > seen, 'the tunnel to reload its certificate', 5000);
      seen = reloads;
      after = await presented(port, pki.caCert);
    }
    assert.notEqual(after, before, 'the renewed certificate is presented');
    assert.deepEqual(await httpsGet(port, '/after-renewal', pki.caCert), { status: 200, body: 'app saw /after-renewal' });
  });

  test('a connection that opens like TLS and then sends garbage, or stalls, ends alone', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const handshakeTimeoutMs = 300;
    const own = await startTunnel(cleanup, { keys: { '/': 'k' }, tlsCert: files.cert, tlsKey: files.key, handshakeTimeoutMs });
    await startServerAgent(cleanup, { tunnel: `https://localhost:${own.port}`, ca: pki.caCert, target: String(appPort), key: 'k' });

    // A TLS record header, then bytes that are no ClientHello: the tunnel's TLS layer refuses and closes.
    const garbage = net.connect(own.port, '127.0.0.1');
    garbage.on('error', () => {});
    garbage.resume(); // read the TLS alert, so that the FIN after it is seen
    const garbageClosed = once(garbage, 'close');
    garbage.write(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40]), Buffer.alloc(64, 0xa5)]));
    // One byte of a handshake and silence: given up after the handshake timeout.
    const stalled = net.connect(own.port, '127.0.0.1');
    stalled.on('error', () => {});
    const stalledClosed = once(stalled, 'close');
    await once(stalled, 'connect');
    const sentAt = performance.now();
    stalled.write(Buffer.from([0x16]));

    assert.deepEqual(await httpsGet(own.port, '/meanwhile', pki.caCert), { status: 200, body: 'app saw /meanwhile' }, 'a real user is served meanwhile');
    await garbageClosed;
    const giveUp = new AbortController();
    await Promise.race([
      stalledClosed,
      sleep(handshakeTimeoutMs + 2000, null, { signal: giveUp.signal }).then(() => assert.fail('the stalled handshake was never dropped')),
    ]).finally(() => giveUp.abort());
    const held = performance.now() - sentAt;
    assert.ok(held >= handshakeTimeoutMs - 50 && held < handshakeTimeoutMs + 2000, `the stalled handshake was dropped after ${Math.round(held)} ms`);
    assert.equal(own.tunnel.stats().channels.find((c) => c.name === '/')?.server, true, 'the agent is untouched');
    assert.deepEqual(await httpsGet(own.port, '/after', pki.caCert), { status: 200, body: 'app saw /after' });
  });
});

describe('TLS users and agents at the edges', () => {
  const cleanup = new Cleanup();
  let pki: TestPki;
  after(() => cleanup.run());
  before(() => {
    if (which('openssl') !== null) pki = makePki(cleanup);
  });

  /** A TLS user that sends `bytes` (or nothing) and reads until the tunnel closes it. */
  async function tlsUser(port: number, bytes: string | null): Promise<void> {
    const socket = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: readFileSync(pki.caCert) });
    socket.on('error', () => {});
    const closed = once(socket, 'close');
    await once(socket, 'secureConnect');
    if (bytes !== null) socket.write(bytes);
    socket.resume();
    await closed;
  }

  test('--insecure on a plain address warns that nothing is encrypted, not that checks are off', () => {
    const lines: string[] = [];
    const logger: Logger = { debug: () => {}, info: () => {}, warn: (m) => void lines.push(m), error: () => {}, child: () => logger };
    createServerAgent({ tunnel: 'http://127.0.0.1:9', target: '1', key: 'a-strong-key-0123456789', insecure: true, logger });
    createServerAgent({ tunnel: 'wss://127.0.0.1:9', target: '1', key: 'a-strong-key-0123456789', insecure: true, logger });
    assert.deepEqual(
      lines.map((l) => l.split(':')[0]),
      ['--insecure changes nothing', 'TLS certificate checks are OFF (--insecure)'],
      lines.join('\n'),
    );
    assert.match(lines[0]!, /in the clear$/);
  });

  test('a TLS agent sent to a plain tunnel is told to drop the s from its URL', async () => {
    const { port, address } = await startTunnel(cleanup, { keys: { '/': 'k', '/x': 'x' } });
    const dial = () =>
      dialTunnel({ address: parseTunnelAddress(`https://localhost:${port}`), hello: { role: 'server', channel: '/x', key: 'x' }, userAgent: 't', timeoutMs: 5000 });
    const hint = /^TLS with the tunnel at localhost:\d+ failed \((read ECONNRESET|the answer is not TLS)\): is it serving TLS on that port\? For a plain tunnel use http:\/\/ or ws:\/\/$/;
    await assert.rejects(dial(), (err: Err) => err.code === 'ERR_RHOST_CONNECT' && hint.test(err.message), 'no app on /: the tunnel resets the hello');
    const app = http.createServer((_req, res) => res.end('plain'));
    await startServerAgent(cleanup, { tunnel: address, target: String(await listening(app, cleanup)), key: 'k' });
    await assert.rejects(dial(), (err: Err) => err.code === 'ERR_RHOST_CONNECT' && /\(the answer is not TLS\): is it serving TLS/.test(err.message), 'the app on / answers in plain text');
  });

  test('a tunnel addressed by IP is checked against that IP, not against "localhost"', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const byIp = pki.issue('ip-only', 'IP:127.0.0.1');
    const byName = pki.issue('name-only', 'DNS:localhost');
    const right = await startTunnel(cleanup, { keys: { '/': 'k' }, tlsCert: byIp.cert, tlsKey: byIp.key });
    await startServerAgent(cleanup, { tunnel: `https://127.0.0.1:${right.port}`, ca: pki.caCert, target: '1', key: 'k' });
    const wrong = await startTunnel(cleanup, { keys: { '/': 'k' }, tlsCert: byName.cert, tlsKey: byName.key });
    const agent = createServerAgent({ tunnel: `https://127.0.0.1:${wrong.port}`, ca: pki.caCert, target: '1', key: 'k' });
    await assert.rejects(agent.start(), (err: Err) => err.code === 'ERR_RHOST_TLS' && /ALTNAME/.test(err.message));
    await agent.close();
  });

  test('a certificate that stops verifying after the agent was up is retried, not fatal (a renewal under way)', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const steady = pki.issue('steady');
    const foreign = makePki(cleanup).issue('foreign'); // signed by a CA the agent does not trust
    const serve = async (files: { cert: string; key: string }, port = 0): Promise<{ tunnel: Tunnel; port: number }> => {
      const tunnel = createTunnel({ port, keys: { '/': 'k' }, tlsCert: files.cert, tlsKey: files.key });
      cleanup.add(() => tunnel.close({ drainTimeoutMs: 0 }));
      return { tunnel, port: (await tunnel.listen()).port };
    };
    const first = await serve(steady);
    const lines: string[] = [];
    const agent = createServerAgent({ tunnel: `https://localhost:${first.port}`, ca: pki.caCert, target: '1', key: 'k', logger: recordingLogger(lines) });
    cleanup.add(() => agent.close());
    let fatal: Error | null = null;
    agent.on('fatal', (err) => (fatal = err));
    await agent.start();
    await first.tunnel.close({ drainTimeoutMs: 0 });
    const second = await serve(foreign, first.port);
    await until(() => lines.some((l) => l.startsWith('WARN') && /not trusted/.test(l) && /retrying/.test(l)), 'the agent to meet the foreign certificate', 10_000);
    const back = once(agent, 'connected');
    await second.tunnel.close({ drainTimeoutMs: 0 });
    await serve(steady, first.port);
    await back;
    assert.equal(fatal, null, 'it kept trying, and got back');
  });

  test('TLS users that the tunnel resets or times out end alone: no crash, the agent keeps its session', async (t) => {
    if (!requireBinaries(t, 'openssl')) return;
    const files = pki.issue('edges');
    // No server agent on /: a TLS user with non-HTTP bytes is reset.
    const empty = await startTunnel(cleanup, { keys: { '/': 'k' }, tlsCert: files.cert, tlsKey: files.key });
    await tlsUser(empty.port, 'hello\n');
    assert.equal((await request(empty.port, { path: '/' })).status, 503, 'the tunnel still answers');

    // A server agent whose service refuses: the stream is reset, then the TLS user's socket.
    const closedPort = await freeTcpPort();
    const { tunnel, port } = await startTunnel(cleanup, { keys: { '/': 'k' }, tlsCert: files.cert, tlsKey: files.key, userIdleTimeoutMs: 300 });
    const agent = await startServerAgent(cleanup, { tunnel: `127.0.0.1:${port}`, target: String(closedPort), key: 'k' });
    let lost = 0;
    agent.on('disconnected', () => lost++);
    tunnel.on('agent-close', () => lost++);
    await tlsUser(port, 'hello\n');
    // An idle TLS user: closed by the user idle timeout.
    await tlsUser(port, null);
    assert.equal((await request(port, { path: '/' })).status, 502, 'a plain user reaches the agent, which says its service is down');
    assert.equal(lost, 0, 'the agent kept its session');
  });
});

/** A port with nothing listening on it. */
async function freeTcpPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
