import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { promisify } from 'node:util';
import { Cleanup, listening, startServerAgent, startTunnel } from '../helpers/rig.js';
import { makePki } from '../helpers/certs.js';
import { requireBinaries } from '../helpers/system.js';

/**
 * TLS users routed by the server name of their ClientHello, with curl: a
 * name whose certificate the tunnel does not hold passes through untouched
 * (curl verifies the service's own certificate, through the tunnel); a name
 * it does hold is decrypted and routed request by request, each Host bound
 * to the name; a name that serves nothing gets the same alert as any other.
 */

const run = promisify(execFile);

interface Curled {
  code: number;
  out: string;
  err: string;
}

async function curl(args: string[]): Promise<Curled> {
  try {
    const { stdout, stderr } = await run('curl', ['-s', '-S', '--max-time', '10', ...args]);
    return { code: 0, out: stdout, err: stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout, err: e.stderr };
  }
}

describe('TLS users routed by their server name', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());
  const KEYS = { '/': 'root-key-0123456789', '/app': 'app-key-0123456789', '/ssh': 'ssh-key-0123456789', '/sec': 'sec-key-0123456789' };

  /** An HTTPS service with a certificate of its own CA, saying what it was asked. */
  async function httpsService(cert: { cert: string; key: string }, name: string): Promise<number> {
    const server = https.createServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, (req, res) => res.end(`${name} over TLS: ${req.url} host=${req.headers.host}`));
    return listening(server, cleanup);
  }

  test('a name whose certificate the tunnel does not hold passes through: curl verifies the service’s own certificate', async (t) => {
    if (!requireBinaries(t, 'curl', 'openssl')) return;
    const servicePki = makePki(cleanup);
    const appPort = await httpsService(servicePki.issue('app', 'DNS:app.tunnel.test'), 'app');
    const sshPort = await httpsService(servicePki.issue('ssh', 'DNS:ssh.tunnel.test'), 'ssh');
    const { port, address } = await startTunnel(cleanup, { keys: KEYS, domains: ['tunnel.test'] });
    await startServerAgent(cleanup, { tunnel: address, channel: '/app', key: KEYS['/app'], target: String(appPort), public: true });
    await startServerAgent(cleanup, { tunnel: address, channel: '/ssh', key: KEYS['/ssh'], target: String(sshPort) });
    const at = (name: string): string[] => ['--resolve', `${name}:${port}:127.0.0.1`, '--cacert', servicePki.caCert, `https://${name}:${port}/x`];
    const ok = await curl(at('app.tunnel.test'));
    assert.equal(ok.code, 0, ok.err);
    assert.equal(ok.out, `app over TLS: /x host=app.tunnel.test:${port}`);
    const refusals = await Promise.all(['ssh.tunnel.test', 'nope.tunnel.test', 'a.b.tunnel.test'].map((n) => curl(at(n))));
    for (const r of refusals) {
      assert.equal(r.code, 35, `a TLS failure: ${r.err}`);
      assert.match(r.err, /unrecognized name|alert/i);
    }
    assert.equal(new Set(refusals.map((r) => r.err.replace(/tunnel\.test|nope|ssh|a\.b/g, ''))).size, 1, 'the private channel and names that do not exist fail alike');
  });

  test('a name the tunnel holds a certificate for is decrypted and routed by Host, which must match it; other names still pass through', async (t) => {
    if (!requireBinaries(t, 'curl', 'openssl')) return;
    const tunnelPki = makePki(cleanup);
    const servicePki = makePki(cleanup);
    const wildcard = tunnelPki.issue('tunnel', 'DNS:tunnel.test,DNS:*.tunnel.test');
    const { port, address } = await startTunnel(cleanup, { keys: KEYS, domains: ['tunnel.test'], routes: { 'secure.example.org': '/sec' }, tlsCert: wildcard.cert, tlsKey: wildcard.key });
    const plain = http.createServer((req, res) => res.end(`app in the clear: ${req.url} host=${req.headers.host}`));
    await startServerAgent(cleanup, { tunnel: address, channel: '/app', key: KEYS['/app'], target: String(await listening(plain, cleanup)), public: true });
    const secPort = await httpsService(servicePki.issue('sec', 'DNS:secure.example.org'), 'sec');
    await startServerAgent(cleanup, { tunnel: address, channel: '/sec', key: KEYS['/sec'], target: String(secPort) });
    const at = (name: string, ca: string, ...extra: string[]): string[] => ['--resolve', `${name}:${port}:127.0.0.1`, '--cacert', ca, ...extra, `https://${name}:${port}/y`];
    const decrypted = await curl(at('app.tunnel.test', tunnelPki.caCert));
    assert.equal(decrypted.out, `app in the clear: /y host=app.tunnel.test:${port}`, decrypted.err);
    const mismatch = await curl(at('app.tunnel.test', tunnelPki.caCert, '-H', 'Host: other.tunnel.test', '-o', '/dev/null', '-w', '%{http_code}'));
    assert.equal(mismatch.out, '400', 'a Host that differs from the server name of the connection');
    const missing = await curl(at('nope.tunnel.test', tunnelPki.caCert, '-o', '/dev/null', '-w', '%{http_code}'));
    assert.equal(missing.out, '404', 'under a certificate the tunnel holds, a name that serves nothing gets the 404 page');
    const passed = await curl(at('secure.example.org', servicePki.caCert));
    assert.equal(passed.out, `sec over TLS: /y host=secure.example.org:${port}`, `a routed name outside the tunnel’s certificate passes through: ${passed.err}`);
  });

  test('a malformed or truncated ClientHello ends its own connection only', async () => {
    const { port, address } = await startTunnel(cleanup, { keys: KEYS, domains: ['tunnel.test'], handshakeTimeoutMs: 300 });
    const plain = http.createServer((_req, res) => res.end('still here'));
    await startServerAgent(cleanup, { tunnel: address, channel: '/app', key: KEYS['/app'], target: String(await listening(plain, cleanup)), public: true });
    const closes = async (bytes: Buffer): Promise<void> => {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.write(bytes);
      s.resume();
      await new Promise((resolve) => s.once('close', resolve));
    };
    await Promise.all([
      closes(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00])), // a ClientHello of 1 byte
      closes(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x01])), // a record longer than TLS allows
      closes(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40, 0x01])), // truncated, then silent: the handshake timeout
    ]);
    const answer = await new Promise<string>((resolve, reject) => {
      http.get({ port, host: '127.0.0.1', headers: { Host: 'app.tunnel.test' } }, (res) => res.on('data', (d: Buffer) => resolve(d.toString()))).on('error', reject);
    });
    assert.equal(answer, 'still here');
  });
});
