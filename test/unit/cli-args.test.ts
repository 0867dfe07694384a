import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { channelFromSuffix, parseArgs, parseKeys, UsageError } from '../../src/cli/args.js';

describe('command line and environment', () => {
  test('the seed’s long and short flags', () => {
    const long = parseArgs(['server', '--tunnel', 'h:1', '--server', '22', '--channel', '/ssh', '--key', 'k', '--token', 't', '--ping', '500'], {});
    const short = parseArgs(['server', '-t', 'h:1', '-s', '22', '-n', '/ssh', '-k', 'k', '-o', 't', '-i', '500'], {});
    const expected = { mode: 'server', tunnel: 'h:1', server: '22', channel: '/ssh', key: 'k', token: 't', ping: 500 };
    for (const got of [long, short]) assert.deepEqual({ mode: got.mode, tunnel: got.tunnel, server: got.server, channel: got.channel, key: got.key, token: got.token, ping: got.ping }, expected);
  });

  test('--name=value and -xvalue forms', () => {
    const o = parseArgs(['client', '--tunnel=h:2', '-c7003', '--channel=/db'], {});
    assert.deepEqual([o.tunnel, o.client, o.channel], ['h:2', '7003', '/db']);
  });

  test('environment variables fill in what flags left unset; flags win', () => {
    const env = { TUNNEL: 'env:1', SERVER: '80', CHANNEL: '/web', KEY: 'ek', TOKEN: 'et', PING: '900', PORT: '5000' };
    const o = parseArgs(['server', '--key', 'flag-key'], env);
    assert.deepEqual([o.tunnel, o.server, o.channel, o.key, o.token, o.ping, o.port], ['env:1', '80', '/web', 'flag-key', 'et', 900, '5000']);
  });

  test('channel keys: KEYS as JSON or as the key of /, --keys_NAME and KEYS_NAME', () => {
    const o = parseArgs(['tunnel', '--keys', '{"/":"a","/db":"b"}', '--keys_ssh', 'c', '--keys_a_b', 'd'], { KEYS_WEB: 'e', KEYS_SSH: 'ignored: the flag wins' });
    assert.deepEqual(o.keys, { '/': 'a', '/db': 'b', '/ssh': 'c', '/a/b': 'd', '/web': 'e' });
    assert.deepEqual(parseArgs(['tunnel'], { KEYS: 'plain-secret' }).keys, { '/': 'plain-secret' });
    assert.deepEqual(
      parseArgs(['tunnel', '--keys_ssh', 'from-flag'], { KEYS: '{"/ssh":"from-env","/db":"env-db"}' }).keys,
      { '/ssh': 'from-flag', '/db': 'env-db' },
      'KEYS fills in channels but never replaces a --keys_NAME flag',
    );
    assert.deepEqual(parseKeys('{"/x":"1"}', 'KEYS'), { '/x': '1' });
    assert.equal(channelFromSuffix('SSH'), '/ssh');
    assert.equal(channelFromSuffix(''), '/');
  });

  test('switches take an optional on/off value: --insecure=false is not insecure', () => {
    assert.equal(parseArgs(['client', '--insecure'], {}).insecure, true);
    assert.equal(parseArgs(['client', '--insecure=false'], {}).insecure, false);
    assert.equal(parseArgs(['client', '--insecure=no'], {}).insecure, false);
    assert.equal(parseArgs(['client', '--insecure=on'], {}).insecure, true);
    assert.throws(() => parseArgs(['client', '--insecure=maybe'], {}), (err: unknown) => err instanceof UsageError && /--insecure must be on or off/.test(err.message));
  });

  test('proxy is the seed’s name for tunnel mode', () => {
    assert.equal(parseArgs(['proxy'], {}).mode, 'tunnel');
  });

  test('open channels from the flag (repeatable) and OPEN_CHANNELS', () => {
    assert.deepEqual(parseArgs(['tunnel', '--open-channel', '/', '--open-channel', '/x'], {}).openChannels, ['/', '/x']);
    assert.deepEqual(parseArgs(['tunnel'], { OPEN_CHANNELS: '/a, /b' }).openChannels, ['/a', '/b']);
  });

  for (const [argv, pattern] of [
    [['bogus'], /unknown mode/],
    [['tunnel', '--nope'], /unknown option --nope/],
    [['tunnel', '--ping', 'soon'], /--ping must be a positive whole number \(or 0\), got "soon"/],
    [['tunnel', '--keys', '{bad json'], /not valid JSON/],
    [['tunnel', '--keys', '{"/": 5}'], /must be a string/],
    [['server', '--key'], /--key needs a value/],
    [['tunnel', '--log', 'xml'], /--log must be pretty or json/],
    [['tunnel', 'server'], /unexpected argument/],
  ] as Array<[string[], RegExp]>) {
    test(`refuses ${argv.join(' ')} with one clear line`, () => {
      assert.throws(() => parseArgs(argv, {}), (err: unknown) => err instanceof UsageError && pattern.test(err.message) && !err.message.includes('\n'));
    });
  }
});

describe('tunnel limits on the command line', () => {
  test('numbers, lists and switches, from flags and the environment', () => {
    const o = parseArgs(['tunnel', '--max-users', '100', '--trust-proxy', '10.0.0.0/8, 127.0.0.1', '--proxy-protocol', '--max-streams=9000'], { MAX_USERS_PER_IP: '7', USER_IDLE_TIMEOUT: '60000' });
    assert.deepEqual(o.limits, { maxUsers: 100, trustProxy: ['10.0.0.0/8', '127.0.0.1'], proxyProtocol: true, maxStreams: 9000, maxUsersPerIp: 7, userIdleTimeoutMs: 60000 });
    assert.equal(parseArgs(['tunnel'], { PROXY_PROTOCOL: 'off' }).limits.proxyProtocol, false);
    assert.throws(() => parseArgs(['tunnel', '--max-users', 'lots'], {}), /--max-users must be a positive whole number \(or 0\), got "lots"/);
  });

  test('the handshake size and the guessing lockouts, and trust for a PaaS router', () => {
    const o = parseArgs(['tunnel', '--max-head-bytes', '4096', '--auth-lockout=500'], { AUTH_LOCKOUT_MAX: '60000', TRUST_PROXY: 'private' });
    assert.deepEqual(o.limits, { maxHeadBytes: 4096, authLockoutMs: 500, authLockoutMaxMs: 60000, trustProxy: ['private'] });
  });
});

describe('host routing and who may come in, on the command line', () => {
  test('the tunnel: domains, routes and channel lists, from flags and the environment', () => {
    const o = parseArgs(
      ['tunnel', '--domain', 'a.example.com', '--domain=b.example.org', '--route', 'shop.test=/app, *.apps.test=/app', '--channel-allow', '/app=10.0.0.0/8,192.0.2.1', '--channel-deny', '/app=10.9.0.0/16;/db=0.0.0.0/0'],
      { ROUTES: 'ignored.test=/x' },
    );
    assert.deepEqual(o.domains, ['a.example.com', 'b.example.org']);
    assert.deepEqual(o.routes, { 'shop.test': '/app', '*.apps.test': '/app' }, 'a flag wins over its variable');
    assert.deepEqual(o.channelPolicies, { '/app': { allow: ['10.0.0.0/8', '192.0.2.1'], deny: ['10.9.0.0/16'] }, '/db': { deny: ['0.0.0.0/0'] } });
    const e = parseArgs(['tunnel'], { DOMAIN: 'x.test,y.test', ROUTES: 'a.test=/a', CHANNEL_ALLOW: '/a=127.0.0.1;/b=::1' });
    assert.deepEqual(e.domains, ['x.test', 'y.test']);
    assert.deepEqual(e.routes, { 'a.test': '/a' });
    assert.deepEqual(e.channelPolicies, { '/a': { allow: ['127.0.0.1'] }, '/b': { allow: ['::1'] } });
  });

  test('the server agent: public, lists, PROXY headers and HTTP mode, from flags and the environment', () => {
    const o = parseArgs(['server', '--public', '--allow', '10.0.0.0/8,192.0.2.7', '--deny=10.1.0.0/16', '--send-proxy', 'v2', '--http', '--host-header', 'rewrite', '--basic-auth', 'ann:pw1', '--basic-auth', 'bob:pw2'], {});
    assert.equal(o.public, true);
    assert.deepEqual([o.allow, o.deny], [['10.0.0.0/8', '192.0.2.7'], ['10.1.0.0/16']]);
    assert.equal(o.sendProxy, 'v2');
    assert.equal(o.http, true);
    assert.equal(o.hostHeader, 'rewrite');
    assert.deepEqual(o.basicAuth, ['ann:pw1', 'bob:pw2']);
    const e = parseArgs(['server'], { PUBLIC: 'on', HTTP: 'yes', SEND_PROXY: 'v1', ALLOW: '::1', HOST_HEADER: 'app.internal', BASIC_AUTH: 'a:b' });
    assert.deepEqual([e.public, e.http, e.sendProxy, e.allow, e.hostHeader, e.basicAuth], [true, true, 'v1', ['::1'], 'app.internal', ['a:b']]);
    const off = parseArgs(['server', '--public=off'], { PUBLIC: 'on', HTTP: 'off' });
    assert.deepEqual([off.public, off.http], [false, false], 'a flag wins, and off means off');
    assert.deepEqual([parseArgs(['server'], {}).public, parseArgs(['server'], {}).http], [false, false], 'nothing is public unless said');
  });

  for (const [argv, env, pattern] of [
    [['tunnel', '--route', 'shop.test'], {}, /--route takes HOST=CHANNEL, e\.g\. shop\.example\.org=\/app; got "shop\.test"/],
    [['tunnel', '--route', '=/app'], {}, /--route takes HOST=CHANNEL/],
    [['tunnel', '--channel-allow', '/app='], {}, /--channel-allow takes CHANNEL=CIDR/],
    [['tunnel'], { ROUTES: 'x.test/app' }, /--route takes HOST=CHANNEL/],
    [['server'], { PUBLIC: 'maybe' }, /--public/],
  ] as Array<[string[], NodeJS.ProcessEnv, RegExp]>) {
    test(`refuses ${[...argv, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)].join(' ')} with one clear line`, () => {
      assert.throws(() => parseArgs(argv, env), (err: unknown) => err instanceof UsageError && pattern.test(err.message) && !err.message.includes('\n'));
    });
  }
});
