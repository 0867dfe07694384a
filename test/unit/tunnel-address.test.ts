import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseTunnelAddress, splitHostPort } from '../../src/transport/address.js';
import { reconnectDelay } from '../../src/agent/link.js';

test('the seed’s tunnel address forms and URLs', () => {
  const cases: Array<[string, object]> = [
    ['example.com', { scheme: 'tcp', host: 'example.com', port: 80 }],
    ['example.com:7000', { scheme: 'tcp', host: 'example.com', port: 7000 }],
    ['7000', { scheme: 'tcp', host: 'localhost', port: 7000 }],
    ['http://example.com:8080', { scheme: 'tcp', host: 'example.com', port: 8080 }],
    ['http://example.com', { scheme: 'tcp', host: 'example.com', port: 80 }],
    ['https://example.com', { scheme: 'tls', host: 'example.com', port: 443 }],
    ['ws://example.com', { scheme: 'ws', host: 'example.com', port: 80 }],
    ['wss://example.com:8443', { scheme: 'wss', host: 'example.com', port: 8443 }],
    ['[::1]:7000', { scheme: 'tcp', host: '::1', port: 7000 }],
    ['http://[::1]:7000', { scheme: 'tcp', host: '::1', port: 7000 }],
  ];
  for (const [text, expected] of cases) {
    const { scheme, host, port } = parseTunnelAddress(text);
    assert.deepEqual({ scheme, host, port }, expected, text);
  }
  assert.equal(parseTunnelAddress('https://example.com').hostHeader, 'example.com');
  assert.throws(() => parseTunnelAddress('http://example.com/path'), /must not have a path/);
  assert.deepEqual(splitHostPort('x', '0.0.0.0:80', 'localhost', 1), { host: '0.0.0.0', port: 80 });
});

test('a service or listen address that is no host:port is refused, not taken for a host name', () => {
  for (const bad of ['http://127.0.0.1:8080', ':8080', 'a:b:c', '[zz]:1', 'host name', 'host:port', 'h:99999']) {
    assert.throws(() => splitHostPort('target', bad, 'localhost', 80), (err: Error & { code?: string }) => err.code === 'ERR_RHOST_BAD_OPTION' && /target/.test(err.message), bad);
  }
  assert.deepEqual(splitHostPort('target', '::1', 'localhost', 80), { host: '::1', port: 80 });
  assert.deepEqual(splitHostPort('target', '[::1]:22', 'localhost', 80), { host: '::1', port: 22 });
  assert.deepEqual(splitHostPort('target', 'db_1:5432', 'localhost', 80), { host: 'db_1', port: 5432 });
});

test('reconnect delays grow exponentially with jitter, up to the cap', () => {
  const low = () => 0;
  const high = () => 0.999999;
  assert.equal(reconnectDelay(0, 100, 2000, high), 100);
  assert.equal(reconnectDelay(0, 100, 2000, low), 50);
  assert.equal(reconnectDelay(3, 100, 2000, high), 800);
  assert.equal(reconnectDelay(10, 100, 2000, high), 2000);
  assert.equal(reconnectDelay(50, 100, 2000, low), 1000);
});

test('which proxy an agent leaves through', async () => {
  const { chooseProxy } = await import('../../src/transport/proxy.js');
  const env = { HTTPS_PROXY: 'http://secure-proxy:3128', http_proxy: 'plain-proxy:8080', NO_PROXY: '.internal, 10.1.2.3, example.org:7000' };
  assert.equal(chooseProxy('tunnel.example.com', 443, true, undefined, env)?.url.host, 'secure-proxy:3128');
  assert.equal(chooseProxy('tunnel.example.com', 80, false, undefined, env)?.url.host, 'plain-proxy:8080');
  assert.equal(chooseProxy('a.b.internal', 80, false, undefined, env), null, 'a suffix in NO_PROXY');
  assert.equal(chooseProxy('10.1.2.3', 80, false, undefined, env), null, 'an address in NO_PROXY');
  assert.equal(chooseProxy('example.org', 7000, false, undefined, env), null, 'a host and port in NO_PROXY');
  assert.notEqual(chooseProxy('example.org', 7001, false, undefined, env), null, 'another port is proxied');
  assert.equal(chooseProxy('x', 1, false, undefined, { HTTP_PROXY: 'http://p:1', NO_PROXY: '*' }), null);
  assert.equal(chooseProxy('a.b.internal', 80, false, 'http://explicit:1', env)?.url.host, 'explicit:1', '--proxy wins over NO_PROXY');
  assert.equal(chooseProxy('x', 1, false, undefined, {}), null);
  assert.throws(() => chooseProxy('x', 1, false, 'socks5://p:1', {}), /must be an http:\/\/ proxy/);
  assert.throws(() => chooseProxy('x', 1, false, 'http://100%25:p%zz@p:1', {}), (err: Error & { code?: string }) => err.code === 'ERR_RHOST_BAD_OPTION' && /percent-encoded/.test(err.message));
});

test('NO_PROXY names IPv6 addresses bare, in brackets, and with a port', async () => {
  const { chooseProxy } = await import('../../src/transport/proxy.js');
  const proxied = (host: string, port: number, noProxy: string): boolean => chooseProxy(host, port, false, undefined, { HTTP_PROXY: 'http://p:1', NO_PROXY: noProxy }) !== null;
  assert.equal(proxied('::1', 7000, 'localhost,127.0.0.1,::1'), false, 'a bare ::1');
  assert.equal(proxied('[::1]', 7000, '[::1]'), false, 'in brackets');
  assert.equal(proxied('::1', 7000, '[::1]:7000'), false, 'in brackets with the port');
  assert.equal(proxied('::1', 7001, '[::1]:7000'), true, 'another port is proxied');
  assert.equal(proxied('2001:db8::5', 80, '2001:db8::5'), false, 'a longer address');
  assert.equal(proxied('2001:db8::6', 80, '2001:db8::5'), true, 'a different address is proxied');
});
