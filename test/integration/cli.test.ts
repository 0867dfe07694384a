import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cleanup, listening, request } from '../helpers/rig.js';
import { RhostProcess } from '../helpers/cli.js';

describe('the rhost command', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  function rhost(args: string[], env: NodeJS.ProcessEnv = {}): RhostProcess {
    const p = new RhostProcess(args, env);
    cleanup.add(() => p.stop('SIGKILL'));
    return p;
  }

  test('--help lists the modes; each mode’s --help lists its own flags, and only those; --version prints the version', async () => {
    const help = rhost(['--help']);
    assert.equal(await help.exited, 0);
    const text = help.lines.join('\n');
    for (const word of ['rhost tunnel', 'rhost server', 'rhost client', 'rhost server --help', '--log', '--ping']) assert.ok(text.includes(word), `the overview mentions ${word}`);
    const own: Record<string, { has: string[]; not: string[] }> = {
      tunnel: { has: ['-t, --tunnel', '-e, --keys', '--keys_NAME', '--keys-file', '--trust-proxy', '--max-conn-rate-per-ip', '--tls-cert', '-i, --ping', '--domain D', '--route HOST=CHANNEL', '--channel-allow'], not: ['--server', '--client', '--key-file', '--insecure', '--send-proxy', '--http'] },
      server: { has: ['-t, --tunnel', '-s, --server', '-n, --channel', '-k, --key', '--key-file', '-o, --token', '--token-file', '--insecure', '--proxy', '--public', '--allow LIST', '--send-proxy', '--http', '--host-header', '--basic-auth'], not: ['--client', '--keys', '--trust-proxy', '--domain D'] },
      client: { has: ['-t, --tunnel', '-c, --client', '-n, --channel', '-o, --token', '--token-file'], not: ['--server', '-k, --key', '--keys', '--trust-proxy', '--public', '--domain D'] },
    };
    for (const [mode, { has, not }] of Object.entries(own)) {
      const p = rhost([mode, '--help']);
      assert.equal(await p.exited, 0);
      const t = p.lines.join('\n');
      assert.ok(t.startsWith(`rhost ${mode}: `), t.split('\n', 1)[0]);
      for (const word of has) assert.ok(t.includes(word), `${mode} --help mentions ${word}`);
      for (const word of not) assert.ok(!t.includes(word), `${mode} --help does not mention ${word}`);
    }
    const version = rhost(['--version']);
    assert.equal(await version.exited, 0);
    assert.match(version.lines[0]!, /^rhost \d+\.\d+\.\d+$/);
  });

  test('a bad command line is one line on stderr and exit code 2, saying what to do', async () => {
    for (const args of [[], ['bogus'], ['tunnel', '--wat'], ['server', '--server', 'http://127.0.0.1:8080'], ['client', '--insecure=maybe']]) {
      const p = rhost(args);
      assert.equal(await p.exited, 2, args.join(' '));
      assert.equal(p.stderr.length, 1);
      assert.match(p.stderr[0]!, /^rhost: /);
    }
    const cases: Array<[string[], RegExp]> = [
      [['server', '--tunel', 'x:1', '-s', '1'], /unknown option --tunel: did you mean --tunnel\? \(see rhost server --help\)/],
      [['tunnel', '--max-user', '5'], /did you mean --max-users\?/],
      [['server', '--ping', '-5', '-s', '1'], /--ping must be a positive whole number \(or 0\), got "-5"/],
      [['tunnel', '--tunnel', 'abc'], /--tunnel "abc" is not an address to listen on: the tunnel takes a port, or host:port/],
    ];
    for (const [args, message] of cases) {
      const p = rhost(args);
      assert.equal(await p.exited, 2, args.join(' '));
      assert.match(p.stderr.join('\n'), message);
    }
  });

  test('a PaaS deploy configured only by environment variables works end to end', async () => {
    const app = http.createServer((_req, res) => res.end('deployed'));
    const appPort = await listening(app, cleanup);
    const tunnel = rhost(['tunnel'], { PORT: '0', KEYS: 'root-secret', KEYS_SSH: 'ssh-secret', LOG: 'json', LOG_LEVEL: 'debug', SUMMARY_INTERVAL: '200' });
    const bound = await tunnel.waitForEvent('listening');
    assert.equal(bound.host, '0.0.0.0', 'PORT set: a PaaS, so every interface');
    const port = Number(bound.port);
    const agent = rhost(['server'], { TUNNEL: `127.0.0.1:${port}`, SERVER: String(appPort), KEY: 'root-secret', PING: '1000', LOG: 'json' });
    await agent.waitForEvent('serving');
    assert.equal((await request(port, { path: '/' })).body.toString(), 'deployed');
    const end = await tunnel.waitForEvent('user-close');
    assert.ok(Number(end.bytesIn) > 0 && Number(end.bytesOut) > 0 && end.reason === 'closed', `each user's end is logged, at debug, with bytes and duration: ${JSON.stringify(end)}`);
    const summary = await tunnel.waitForEvent('traffic', (e) => e.level === 'info' && e.channel === '/' && Number(e.ended) >= 1);
    assert.ok(Number(summary.bytesIn) > 0, 'and summed up per channel at info');
    const all = [...tunnel.lines, ...agent.lines].join('\n');
    assert.ok(!all.includes('root-secret') && !all.includes('ssh-secret'), 'no key is ever logged');
  });

  test('secrets come from files, kept off the command line; a weak or readable one is warned about', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rhost-secrets-'));
    cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
    const file = (name: string, text: string, mode = 0o600): string => {
      const path = join(dir, name);
      writeFileSync(path, text, { mode });
      chmodSync(path, mode);
      return path;
    };
    const strong = 'Qv4sZ0Jv2w7uY1Fo8d3P9mXkL5tN6bRc';
    const keys = file('keys.json', `{"/ssh": "${strong}", "/weak": "short"}\n`);
    const tunnel = rhost(['tunnel', '--tunnel', '127.0.0.1:0', '--log', 'json'], { RHOST_KEYS_FILE: keys });
    const port = await tunnel.listeningPort();
    assert.ok(tunnel.lines.some((l) => /the key of \/weak is shorter than 16 bytes.*openssl rand -base64 24/.test(l)), tunnel.lines.join('\n'));
    assert.ok(!tunnel.lines.some((l) => l.includes('/ssh is shorter')));
    const echo = await listening(net.createServer((c) => c.pipe(c)), cleanup);
    const keyFile = file('key', `${strong}\n`);
    const tokenFile = file('token', 'tok\n', 0o644);
    const server = rhost(['server', '-t', `127.0.0.1:${port}`, '-s', String(echo), '-n', '/ssh', '--key-file', keyFile, '--token-file', tokenFile]);
    await server.waitForEvent('serving');
    assert.ok(server.lines.some((l) => l.includes(`${tokenFile} can be read by other users (mode 644): chmod 600`)), server.lines.join('\n'));
    assert.ok(server.lines.some((l) => /the token is shorter than 16 bytes/.test(l)));
    assert.ok(!server.child.spawnargs.join(' ').includes(strong), 'the key never was on the command line');
    const client = rhost(['client', '-t', `127.0.0.1:${port}`, '-n', '/ssh', '--token-file', tokenFile, '-c', '0']);
    await client.waitForEvent('subscribed');
    const both = rhost(['server', '-t', `127.0.0.1:${port}`, '-s', '1', '-k', 'x', '--key-file', keyFile]);
    assert.equal(await both.exited, 2);
    assert.deepEqual(both.stderr, ['rhost: give --key or --key-file, not both']);
    const missing = rhost(['server', '-t', `127.0.0.1:${port}`, '-s', '1', '--key-file', join(dir, 'nope')]);
    assert.equal(await missing.exited, 2);
    assert.match(missing.stderr[0]!, /--key-file .*nope cannot be read: ENOENT/);
    const all = [...tunnel.lines, ...server.lines, ...client.lines].join('\n');
    assert.ok(!all.includes(strong), 'no key in any log');
    for (const p of [client, server, tunnel]) await p.stop();
  });

  test('a refused agent says why in one line and exits 1', async () => {
    const tunnel = rhost(['tunnel', '--tunnel', '127.0.0.1:0', '--log', 'json', '--keys_ssh', 'right']);
    const port = await tunnel.listeningPort();
    const agent = rhost(['server', '-t', `127.0.0.1:${port}`, '-s', '22', '-n', '/ssh', '-k', 'wrong']);
    assert.equal(await agent.exited, 1);
    assert.deepEqual(agent.stderr, ['rhost: bad key for /ssh (or the tunnel has no channel /ssh)']);
  });

  test('a client agent started before its server agent says, in one line, that it waits for one', async () => {
    const tunnel = rhost(['tunnel', '--tunnel', '127.0.0.1:0', '--log', 'json', '--keys_ssh', 'right-key-0123456789']);
    const port = await tunnel.listeningPort();
    const client = rhost(['client', '-t', `127.0.0.1:${port}`, '-n', '/ssh', '-o', 'tok', '-c', '0', '--log', 'json']);
    await client.waitForEvent('retrying', (e) => e.code === 'ERR_RHOST_NO_SERVER');
    const server = rhost(['server', '-t', `127.0.0.1:${port}`, '-s', '1', '-n', '/ssh', '-k', 'right-key-0123456789', '-o', 'tok']);
    await client.waitForEvent('subscribed');
    const waits = client.lines.filter((l) => l.includes('waiting for a server agent'));
    assert.equal(waits.length, 1, `one line while waiting, not one per attempt: ${client.lines.join('\n')}`);
    assert.equal(JSON.parse(waits[0]!).code, 'ERR_RHOST_NO_SERVER');
    assert.ok(!tunnel.events.some((e) => e.level === 'warn'), `the tunnel warned: ${tunnel.lines.join('\n')}`);
    assert.ok(tunnel.events.some((e) => e.code === 'ERR_RHOST_NO_SERVER' && e.level === 'info'), 'it says so at info, once');
    for (const p of [client, server, tunnel]) await p.stop();
  });

  test('--log json prints one JSON object per line', async () => {
    const tunnel = rhost(['tunnel', '--tunnel', '127.0.0.1:0', '--log', 'json', '--log', 'json', '--keys_x', 'hidden-value']);
    await tunnel.listeningPort();
    await tunnel.stop();
    assert.ok(tunnel.lines.length >= 2);
    for (const line of tunnel.lines) {
      const entry = JSON.parse(line) as { time: string; level: string; msg: string };
      assert.ok(entry.time && entry.level && entry.msg, line);
      assert.ok(!line.includes('hidden-value'));
    }
  });

  test('SIGTERM drains: the transfer in flight finishes, then the tunnel exits 0', async () => {
    let releaseRest: () => void = () => {};
    const app = http.createServer((_req, res) => {
      res.write('first half, ');
      releaseRest = () => res.end('second half');
    });
    const appPort = await listening(app, cleanup);
    const tunnel = rhost(['tunnel', '--tunnel', '127.0.0.1:0', '--log', 'json', '--keys', 'k']);
    const port = await tunnel.listeningPort();
    const agent = rhost(['server', '-t', `127.0.0.1:${port}`, '-s', String(appPort), '-k', 'k']);
    await agent.waitForEvent('serving');
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false });
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    let body = '';
    res.on('data', (d: Buffer) => {
      body += d.toString();
    });
    await once(res, 'data');
    tunnel.child.kill('SIGTERM');
    await tunnel.waitForEvent('closing');
    releaseRest();
    await once(res, 'end');
    assert.equal(body, 'first half, second half');
    assert.equal(await tunnel.exited, 0);
    await agent.waitForEvent('disconnected');
  });

  test('a second SIGTERM during the drain exits at once, with code 1', async () => {
    const app = http.createServer((_req, res) => res.write('never finished, '));
    const appPort = await listening(app, cleanup);
    const tunnel = rhost(['tunnel', '--tunnel', '127.0.0.1:0', '--log', 'json', '--keys', 'k', '--drain-timeout', '60000']);
    const port = await tunnel.listeningPort();
    const agent = rhost(['server', '-t', `127.0.0.1:${port}`, '-s', String(appPort), '-k', 'k']);
    await agent.waitForEvent('serving');
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false });
    req.on('error', () => {});
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    res.on('error', () => {});
    await once(res, 'data'); // a response in flight that will never end by itself
    tunnel.child.kill('SIGTERM');
    await tunnel.waitForEvent('closing');
    tunnel.child.kill('SIGTERM');
    assert.equal(await tunnel.exited, 1, 'forced, not drained');
    assert.ok(tunnel.lines.some((l) => /again: exiting without waiting/.test(l)), tunnel.lines.join('\n'));
  });

  test('an open channel is announced with a warning at every start', async () => {
    const tunnel = rhost(['tunnel', '--tunnel', '127.0.0.1:0', '--log', 'json', '--keys', 'k', '--open-channel', '/public']);
    await tunnel.listeningPort();
    assert.ok(tunnel.events.some((e) => e.level === 'warn' && /\/public is OPEN/.test(String(e.msg)) && /anyone/.test(String(e.msg))), tunnel.lines.join('\n'));
    tunnel.child.kill('SIGTERM');
    assert.equal(await tunnel.exited, 0);
  });

  test('--drain-timeout bounds a server agent’s drain on SIGTERM, as it does the tunnel’s', async () => {
    const app = http.createServer((_req, res) => res.write('never finished, '));
    const appPort = await listening(app, cleanup);
    const tunnel = rhost(['tunnel', '--tunnel', '127.0.0.1:0', '--log', 'json', '--keys', 'k']);
    const port = await tunnel.listeningPort();
    const agent = rhost(['server', '-t', `127.0.0.1:${port}`, '-s', String(appPort), '-k', 'k', '--drain-timeout', '300']);
    await agent.waitForEvent('serving');
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false });
    req.on('error', () => {});
    const [res] = (await once(req, 'response')) as [http.IncomingMessage];
    res.on('error', () => {});
    await once(res, 'data'); // a stream the agent would wait 30 s for by default
    const sentAt = Date.now();
    agent.child.kill('SIGTERM');
    assert.equal(await agent.exited, 0);
    assert.ok(Date.now() - sentAt < 10_000, `the agent took ${Date.now() - sentAt} ms to stop, not about 300`);
  });
  test('many sites on one port from the command line: --domain, --route, --public, --http and --basic-auth', async () => {
    const app = (name: string) =>
      http.createServer((req, res) => res.end(`${name} ${req.headers.host} ${req.headers['x-forwarded-for'] ?? '-'} ${req.headers.authorization ?? 'no-auth'}`));
    const [blog, shop, root] = await Promise.all([app('blog'), app('shop'), app('root')].map((s) => listening(s, cleanup)));
    const sshd = await listening(net.createServer((c) => c.end('SSH-2.0-fake\r\n')), cleanup);
    const tunnel = rhost(['tunnel', '--tunnel', '127.0.0.1:0', '--keys', '{"/": "kr", "/blog": "kb", "/shop": "ks", "/ssh": "kx"}'], { DOMAIN: 'tunnel.test', ROUTES: 'shop.test=/shop' });
    const port = await tunnel.listeningPort();
    const t = `127.0.0.1:${port}`;
    const agents = [
      rhost(['server', '-t', t, '-s', String(root), '-k', 'kr']),
      rhost(['server', '-t', t, '-s', String(blog), '-n', '/blog', '-k', 'kb', '--http'], { PUBLIC: 'on' }),
      rhost(['server', '-t', t, '-s', String(shop), '-n', '/shop', '-k', 'ks', '--basic-auth', 'ann:secret-pw']),
      rhost(['server', '-t', t, '-s', String(sshd), '-n', '/ssh', '-k', 'kx']),
    ];
    await Promise.all(agents.map((a) => a.waitForEvent('serving')));
    const get = (host: string, headers: Record<string, string> = {}) => request(port, { path: '/', headers: { host, ...headers } });
    const blogAnswer = await get('BLOG.tunnel.test:443');
    assert.equal(blogAnswer.body.toString(), 'blog BLOG.tunnel.test:443 127.0.0.1 no-auth', 'public by name; --http adds X-Forwarded-For');
    assert.equal((await get('tunnel.test')).body.toString(), 'root tunnel.test - no-auth');
    assert.equal((await get('app.paas.example')).body.toString(), 'root app.paas.example - no-auth', 'a Host under no domain goes to /');
    const denied = await get('shop.test');
    assert.equal(denied.status, 401);
    assert.match(String(denied.headers['www-authenticate']), /^Basic /);
    const shopAnswer = await get('shop.test', { authorization: `Basic ${Buffer.from('ann:secret-pw').toString('base64')}` });
    assert.equal(shopAnswer.body.toString(), 'shop shop.test 127.0.0.1 no-auth', 'routed by the operator; credentials checked and stripped');
    const hidden = await Promise.all(['ssh.tunnel.test', 'shop.tunnel.test', 'nothing.tunnel.test'].map((h) => get(h)));
    assert.deepEqual(hidden.map((r) => r.status), [404, 404, 404], 'a private channel is never reachable by name');
    assert.equal(new Set(hidden.map((r) => r.body.toString())).size, 1, 'one 404 for all');
    const all = [...tunnel.lines, ...agents.flatMap((a) => a.lines)].join('\n');
    assert.ok(!all.includes('secret-pw'), 'no credential is logged');
  });

  test('a bad route or list stops the tunnel at start with one line', async () => {
    for (const [args, pattern] of [
      [['--route', 'shop.test=/nope'], /routes.*\/nope/],
      [['--domain', 'bad_domain!'], /domains/],
      [['--channel-allow', '/=300.1.2.3'], /channelPolicies.*300\.1\.2\.3/],
    ] as Array<[string[], RegExp]>) {
      const p = rhost(['tunnel', '--tunnel', '127.0.0.1:0', '--keys', 'k', ...args]);
      assert.equal(await p.exited, 2, args.join(' '));
      assert.match(p.stderr.join('\n'), pattern);
      assert.equal(p.stderr.length, 1, p.stderr.join('\n'));
    }
  });
});
