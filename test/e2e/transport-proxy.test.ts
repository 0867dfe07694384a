import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, listening, request, startTunnel } from '../helpers/rig.js';
import { RhostProcess, withFreePort } from '../helpers/cli.js';
import { waitForPort } from '../helpers/nginx.js';
import { NetNamespace } from '../helpers/netns.js';
import { which } from '../helpers/system.js';
import { makePki, type TestPki } from '../helpers/certs.js';
import { untilServing } from '../helpers/transport-process.js';
import { httpsGet } from '../helpers/transport-https.js';

/**
 * The agents run in a network namespace whose only way out is a real
 * tinyproxy on this side: a direct dial to the tunnel (on 127.0.0.1 here,
 * unreachable from in there) cannot work, so success proves the proxy.
 */
function ready(t: TestContext, ...binaries: string[]): boolean {
  const absent = ['tinyproxy', ...binaries].filter((b) => which(b) === null);
  const missing = absent.length ? absent.join(', ') : process.getuid?.() !== 0 || !NetNamespace.available() ? 'root and iproute2 for a network namespace' : null;
  if (missing === null) return true;
  if (process.env.RHOST_REQUIRE_SYSTEM === '1') throw new Error(`needs ${missing}`);
  t.skip(`needs ${missing}`);
  return false;
}

/** A real tinyproxy listening on `listen`; with `connectPorts`, CONNECT is allowed to those ports only, as corporate proxies are set up. */
function startTinyproxy(cleanup: Cleanup, listen: string, auth?: string, connectPorts: number[] = []): Promise<number> {
  return withFreePort((port) => tinyproxyOn(port, cleanup, listen, auth, connectPorts));
}

async function tinyproxyOn(port: number, cleanup: Cleanup, listen: string, auth: string | undefined, connectPorts: number[]): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'rhost-tinyproxy-'));
  const conf = [
    'User nobody',
    'Group nogroup',
    `Port ${port}`,
    `Listen ${listen}`,
    'Timeout 600',
    'Allow 10.0.0.0/8',
    'Allow 127.0.0.1',
    'LogLevel Connect',
    'DisableViaHeader Yes',
    ...(auth ? [`BasicAuth ${auth.replace(':', ' ')}`] : []),
    ...connectPorts.map((p) => `ConnectPort ${p}`),
  ].join('\n');
  writeFileSync(join(dir, 'conf'), `${conf}\n`);
  const child = spawn(which('tinyproxy')!, ['-d', '-c', join(dir, 'conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-2000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  cleanup.add(async () => {
    child.kill();
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  // It exits when it cannot bind (the port was taken meanwhile): that is a failure to start, for withFreePort to retry.
  await Promise.race([
    waitForPort(port, 10_000, listen).catch(() => Promise.reject(new Error(`tinyproxy did not start: ${log}`))),
    exited.then(() => Promise.reject(new Error(`tinyproxy exited: ${log}`))),
  ]);
  if (child.exitCode !== null) throw new Error(`tinyproxy exited: ${log}`);
  return port;
}

describe('leaving through an HTTP CONNECT proxy', () => {
  const cleanup = new Cleanup();
  let ns: NetNamespace;
  let tunnelPort = 0;
  let appPort = 0;

  before(async () => {
    if (which('tinyproxy') === null || process.getuid?.() !== 0 || !NetNamespace.available()) return;
    ns = new NetNamespace();
    cleanup.add(() => ns.destroy());
    const app = http.createServer((req, res) => res.end(`app saw ${req.url}`));
    appPort = await listening(app, cleanup, ns.hostIp);
    ({ port: tunnelPort } = await startTunnel(cleanup, { keys: { '/': 'k' } }));
  });
  after(() => cleanup.run());

  function agent(args: string[], env: NodeJS.ProcessEnv = {}): RhostProcess {
    const p = new RhostProcess(['server', '-t', `127.0.0.1:${tunnelPort}`, '-s', `${ns.hostIp}:${appPort}`, '-k', 'k', ...args], env, ['ip', 'netns', 'exec', ns.name]);
    cleanup.add(() => p.stop('SIGKILL'));
    return p;
  }

  test('without a proxy the agent cannot reach the tunnel from in there', async (t) => {
    if (!ready(t)) return;
    const p = agent([]);
    await p.waitForEvent('retrying', (e) => e.code === 'ERR_RHOST_CONNECT');
    await p.stop();
  });

  test('through tinyproxy (--proxy), users reach the service', async (t) => {
    if (!ready(t)) return;
    const proxyPort = await startTinyproxy(cleanup, ns.hostIp);
    const p = agent(['--proxy', `http://${ns.hostIp}:${proxyPort}`]);
    await p.waitForEvent('serving');
    assert.ok(p.lines.some((l) => l.includes(`through the proxy ${ns.hostIp}:${proxyPort}`)), p.lines.join('\n'));
    assert.equal((await request(tunnelPort, { path: '/via-proxy' })).body.toString(), 'app saw /via-proxy');
    await p.stop();
  });

  test('through tinyproxy with proxy authentication, from HTTP_PROXY', async (t) => {
    if (!ready(t)) return;
    const proxyPort = await startTinyproxy(cleanup, ns.hostIp, 'agent:s3cret');
    const refused = agent([], { HTTP_PROXY: `http://${ns.hostIp}:${proxyPort}` });
    const denied = await refused.waitForEvent('retrying', (e) => e.code === 'ERR_RHOST_PROXY');
    assert.match(String(denied.msg), /proxy authentication required/);
    await refused.stop();
    const p = agent([], { HTTP_PROXY: `http://agent:s3cret@${ns.hostIp}:${proxyPort}`, NO_PROXY: 'example.com' });
    await p.waitForEvent('serving');
    assert.equal((await request(tunnelPort, { path: '/with-auth' })).body.toString(), 'app saw /with-auth');
    await p.stop();
  });
});

describe('leaving through an HTTP CONNECT proxy to a TLS tunnel', () => {
  const cleanup = new Cleanup();
  let ns: NetNamespace;
  let pki: TestPki;
  let tunnelPort = 0;
  let appPort = 0;
  let proxyAddress = '';

  before(async () => {
    if (which('tinyproxy') === null || which('openssl') === null || process.getuid?.() !== 0 || !NetNamespace.available()) return;
    ns = new NetNamespace();
    cleanup.add(() => ns.destroy());
    pki = makePki(cleanup);
    const { cert, key } = pki.issue('tunnel');
    const app = http.createServer((req, res) => res.end(`app saw ${req.url}`));
    appPort = await listening(app, cleanup, ns.hostIp);
    ({ port: tunnelPort } = await startTunnel(cleanup, { keys: { '/': 'k' }, tlsCert: cert, tlsKey: key }));
    // CONNECT is allowed to 443 and to the tunnel's port only: what an administrator sets up for a tunnel on another port.
    proxyAddress = `${ns.hostIp}:${await startTinyproxy(cleanup, ns.hostIp, undefined, [443, tunnelPort])}`;
  });
  after(() => cleanup.run());

  /** A server agent inside the namespace, for `scheme://localhost:port` (the proxy resolves the name), trusting the test CA. */
  function agent(scheme: 'https' | 'wss', args: string[], env: NodeJS.ProcessEnv = {}, port = tunnelPort): RhostProcess {
    const p = new RhostProcess(['server', '-t', `${scheme}://localhost:${port}`, '--ca', pki.caCert, '-s', `${ns.hostIp}:${appPort}`, '-k', 'k', ...args], env, ['ip', 'netns', 'exec', ns.name]);
    cleanup.add(() => p.stop('SIGKILL'));
    return p;
  }

  /** An https:// and then a wss:// agent that must come up through the proxy and carry an HTTPS user. */
  async function bothThroughProxy(args: string[], env: NodeJS.ProcessEnv, path: string): Promise<void> {
    for (const [scheme, kind] of [['https', 'the raw upgrade'], ['wss', 'WebSocket']] as const) {
      const p = agent(scheme, args, env);
      await untilServing(p);
      assert.ok(p.lines.some((l) => l.includes(`over ${kind} with TLS through the proxy ${proxyAddress}`)), p.lines.join('\n'));
      assert.deepEqual(await httpsGet(tunnelPort, `/${scheme}-${path}`, pki.caCert), { status: 200, body: `app saw /${scheme}-${path}` });
      assert.equal(await p.stop(), 0);
    }
  }

  test('https:// and wss:// agents with --ca and --proxy reach it through tinyproxy; users reach the service over HTTPS', async (t) => {
    if (!ready(t, 'openssl')) return;
    await bothThroughProxy(['--proxy', `http://${proxyAddress}`], {}, 'via-proxy');
  });

  test('HTTPS_PROXY, not HTTP_PROXY, carries https:// and wss:// agents', async (t) => {
    if (!ready(t, 'openssl')) return;
    const plainOnly = agent('https', [], { HTTP_PROXY: `http://${proxyAddress}` });
    const first = await Promise.race([plainOnly.waitForEvent('retrying'), plainOnly.waitForEvent('serving')]);
    assert.equal(first.code, 'ERR_RHOST_CONNECT', 'HTTP_PROXY is for plain tunnels only: the agent dialed directly, and failed');
    assert.match(String(first.msg), /cannot reach the tunnel at localhost:\d+/);
    await plainOnly.stop();
    await bothThroughProxy([], { HTTPS_PROXY: `http://${proxyAddress}` }, 'from-env');
  });

  test('a port the proxy allows no CONNECT to is a clear proxy error, retried', async (t) => {
    if (!ready(t, 'openssl')) return;
    const elsewhere = 1; // neither 443 nor the tunnel's port: the proxy allows no CONNECT there, whatever listens
    const p = agent('https', ['--proxy', `http://${proxyAddress}`], {}, elsewhere);
    const retry = await p.waitForEvent('retrying');
    assert.equal(retry.code, 'ERR_RHOST_PROXY');
    assert.ok(String(retry.msg).includes(`the proxy at ${proxyAddress} refused CONNECT to localhost:${elsewhere}: it answered 403`), String(retry.msg));
    await p.stop();
  });
});
