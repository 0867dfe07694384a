import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { forwardedClient, limitKey } from '../../src/relay/client-address.js';
import { AddressSet as TrustedProxies, normalizeIp, parseProxyHeader } from '../../src/protocol/index.js';

const V2 = (family: number, addresses: number[], command = 1): Buffer =>
  Buffer.concat([
    Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20 | command, family]),
    Buffer.from([addresses.length >> 8, addresses.length & 0xff]),
    Buffer.from(addresses),
  ]);

describe('PROXY protocol headers', () => {
  test('v1 TCP4 and TCP6, with the bytes after it left alone', () => {
    const wire = Buffer.from('PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n');
    assert.deepEqual(parseProxyHeader(wire), { length: 41, source: { address: '203.0.113.9', port: 5555 } });
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8:0::1 ::1 6000 80\r\n'))?.source, { address: '2001:db8::1', port: 6000 });
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { length: 15, source: null });
  });

  test('v2 IPv4 and IPv6, and LOCAL (a health check) with no address', () => {
    const v4 = V2(0x11, [198, 51, 100, 7, 10, 0, 0, 1, 0x1f, 0x90, 0, 80]);
    assert.deepEqual(parseProxyHeader(v4), { length: 28, source: { address: '198.51.100.7', port: 8080 } });
    const v6 = V2(0x21, [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 7, ...Array(15).fill(0), 1, 0x12, 0x34, 0, 80]);
    assert.deepEqual(parseProxyHeader(v6)?.source, { address: '2001:db8::7', port: 0x1234 });
    assert.deepEqual(parseProxyHeader(V2(0x11, [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2], 0))?.source, null);
  });

  test('every split of a header waits for more, then parses the same', () => {
    for (const wire of [Buffer.from('PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\n'), V2(0x11, [198, 51, 100, 7, 10, 0, 0, 1, 0x1f, 0x90, 0, 80])]) {
      for (let i = 0; i < wire.length; i++) assert.equal(parseProxyHeader(wire.subarray(0, i)), null, `prefix ${i}`);
      assert.ok(parseProxyHeader(wire)?.source);
    }
  });

  test('anything else is refused, and a v1 line is bounded', () => {
    for (const bad of ['GET / HTTP/1.1\r\n', 'PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n', 'PROXY TCP4 nope 1.2.3.4 1 2\r\n', `PROXY TCP4 ${'1'.repeat(200)}`]) {
      assert.throws(() => parseProxyHeader(Buffer.from(bad)), RangeError, bad.slice(0, 20));
    }
  });
});

describe('trusted proxies and X-Forwarded-For', () => {
  const trusted = new TrustedProxies(['127.0.0.0/8', '10.0.0.1', '2001:db8::/32']);

  test('addresses and CIDR ranges, v4 and v6', () => {
    assert.ok(trusted.has('127.9.9.9') && trusted.has('10.0.0.1') && trusted.has('2001:db8::5'));
    assert.ok(!trusted.has('10.0.0.2') && !trusted.has('203.0.113.1') && !trusted.has(''));
  });

  test('`private` trusts the internal ranges a PaaS router comes from, and nothing public', () => {
    const paas = new TrustedProxies(['private']);
    for (const inside of ['10.1.2.3', '172.31.0.9', '192.168.1.1', '100.64.0.1', '127.0.0.1', '169.254.1.1', 'fd00::1', 'fe80::1', '::1']) {
      assert.ok(paas.has(inside), inside);
    }
    for (const outside of ['172.32.0.1', '100.128.0.1', '8.8.8.8', '2001:db8::1', '11.0.0.1']) assert.ok(!paas.has(outside), outside);
    assert.ok(new TrustedProxies(['loopback']).has('127.0.0.2') && !new TrustedProxies(['loopback']).has('10.0.0.1'));
  });

  test('the client is the right-most hop that is not a trusted proxy', () => {
    assert.equal(forwardedClient('6.6.6.6, 9.9.9.9, 10.0.0.1', '127.0.0.1', trusted), '9.9.9.9');
    assert.equal(forwardedClient('9.9.9.9', '203.0.113.5', trusted), '203.0.113.5', 'an untrusted peer’s header is ignored');
    assert.equal(forwardedClient(undefined, '127.0.0.1', trusted), '127.0.0.1');
    assert.equal(forwardedClient('not-an-ip', '127.0.0.1', trusted), '127.0.0.1');
  });

  test('one spelling per address', () => {
    assert.equal(normalizeIp('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(normalizeIp('::FFFF:192.0.2.1'), '192.0.2.1', 'upper case');
    assert.equal(normalizeIp('0:0:0:0:0:ffff:c000:201'), '192.0.2.1', 'mapped, in hex groups (PROXY v2 spells it so)');
    assert.equal(normalizeIp('2001:0DB8:0000::0001'), '2001:db8::1');
    assert.equal(normalizeIp('fe80::1%eth0'), 'fe80::1', 'a link-local zone is dropped, not thrown on');
    assert.equal(normalizeIp('fe80::1%' + 'x'.repeat(300)), 'fe80::1');
    assert.equal(normalizeIp('not an address'), 'not an address');
  });

  test('limits count IPv4 by address and IPv6 by /64', () => {
    assert.equal(limitKey('192.0.2.1'), '192.0.2.1');
    assert.equal(limitKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:db8:1:2::ffff'), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(limitKey('::1'), '0:0:0:0::/64');
    assert.notEqual(limitKey('2001:db8:1:3::1'), limitKey('2001:db8:1:2::1'));
  });
});
