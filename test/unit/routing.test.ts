import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseHost, RouteTable } from '../../src/relay/routes.js';
import { readClientHello, MAX_CLIENT_HELLO_BYTES } from '../../src/relay/client-hello.js';
import { captureClientHello } from '../helpers/client-hello.js';

describe('Host headers', () => {
  test('names come back lower-case, without port or trailing dot; IP literals as they are', () => {
    assert.deepEqual(parseHost('App.Tunnel.TEST.:8443'), { name: 'app.tunnel.test' });
    assert.deepEqual(parseHost('localhost'), { name: 'localhost' });
    assert.deepEqual(parseHost('[2001:DB8::1]:80'), { name: '[2001:db8::1]' });
    assert.deepEqual(parseHost('203.0.113.7:80'), { name: '203.0.113.7' });
    assert.deepEqual(parseHost(''), { name: '' }, 'an empty Host is allowed (no authority) and routes nowhere');
  });

  test('what is not a reg-name, a port or an IP literal is refused, saying why', () => {
    for (const [value, why] of [
      ['a b.example', /reg-name/],
      ['a"b.example', /reg-name/],
      ['a\u00e9.example', /reg-name/],
      ['example.com:80x', /port/],
      ['example.com:123456', /port/],
      ['[::1', /IP literal/],
      ['[not-an-ip]', /IP literal/],
      ['[::1]x', /after its IP literal/],
      [`${'a'.repeat(256)}`, /longer than 255/],
    ] as const) {
      const parsed = parseHost(value);
      assert.ok('error' in parsed && why.test(parsed.error), `${value}: ${JSON.stringify(parsed)}`);
    }
    assert.ok('name' in parseHost(`${'a'.repeat(255)}:80`), '255 bytes, and a port, is the limit');
  });
});

describe('the route table', () => {
  const table = new RouteTable(['tunnel.test', 'eu.tunnel.test'], { 'shop.example.org': '/shop', '*.shops.test': '/shop', 'exact.tunnel.test': '/x' });

  test('exact routes, then one label under a wildcard, then the longest domain', () => {
    assert.deepEqual(table.resolve('shop.example.org'), { channel: '/shop', by: 'route' });
    assert.deepEqual(table.resolve('a.shops.test'), { channel: '/shop', by: 'route' });
    assert.equal(table.resolve('a.b.shops.test'), null, 'a wildcard covers one label');
    assert.equal(table.resolve('shops.test'), null, 'and not the name itself');
    assert.deepEqual(table.resolve('exact.tunnel.test'), { channel: '/x', by: 'route' }, 'a route wins over a domain');
    assert.deepEqual(table.resolve('tunnel.test'), { channel: '/', by: 'domain' });
    assert.deepEqual(table.resolve('app.tunnel.test'), { channel: '/app', by: 'domain' });
    assert.deepEqual(table.resolve('app.eu.tunnel.test'), { channel: '/app', by: 'domain' }, 'the longest domain decides');
    assert.deepEqual(table.resolve('a.b.tunnel.test'), { channel: null, by: 'domain' }, 'two labels under a domain name no channel');
    assert.deepEqual(table.resolve('-x.tunnel.test'), { channel: null, by: 'domain' }, 'nor does a label no channel may be called');
    assert.equal(table.resolve('notunnel.test'), null, 'a suffix is not a subdomain');
    assert.equal(table.resolve('example.net'), null);
    assert.equal(table.enabled, true);
    assert.equal(new RouteTable([], {}).enabled, false);
  });

  test('bad domains, patterns and channels are refused by name', () => {
    assert.throws(() => new RouteTable(['bad domain'], {}), /domain "bad domain" is not a host name/);
    assert.throws(() => new RouteTable([], { 'a.*.example': '/x' }), /route "a\.\*\.example" is not a host name \(or \*\.name\)/);
    assert.throws(() => new RouteTable([], { 'shop.example': 'x' }), /leads to "x", which is not a channel name/);
  });
});

describe('ClientHello server names', () => {
  test('a real ClientHello gives its server name, whole or in any split, and more is asked for before it is whole', async () => {
    const hello = await captureClientHello('App.Tunnel.Test');
    assert.deepEqual(readClientHello(hello), { sni: 'app.tunnel.test' });
    for (let cut = 0; cut < hello.length; cut += 7) assert.deepEqual(readClientHello(hello.subarray(0, cut)), { need: 'more' }, `at ${cut} bytes`);
    assert.deepEqual(readClientHello(await captureClientHello(null)), { sni: null }, 'a ClientHello without SNI');
  });

  test('a ClientHello split across records is reassembled', async () => {
    const hello = await captureClientHello('split.tunnel.test');
    const body = hello.subarray(5, 5 + hello.readUInt16BE(3));
    const records = [body.subarray(0, 50), body.subarray(50, 51), body.subarray(51)].map((part) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, part.length >> 8, part.length & 0xff]), part]));
    assert.deepEqual(readClientHello(Buffer.concat(records)), { sni: 'split.tunnel.test' });
  });

  test('malformed ones are refused, and none is read past its limit', async () => {
    const hello = await captureClientHello('x.tunnel.test');
    const mutate = (at: number, value: number): Buffer => {
      const copy = Buffer.from(hello);
      copy[at] = value;
      return copy;
    };
    for (const [why, bytes] of [
      ['not a handshake record', mutate(0, 0x17)],
      ['not a ClientHello', mutate(5, 0x02)],
      ['a zero-length record', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x00])],
      ['a record longer than TLS allows', Buffer.from([0x16, 0x03, 0x01, 0x40, 0x01])],
      ['a handshake longer than the limit', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x01, 0x00, 0x00])],
      ['a body too short for itself', Buffer.from([0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03])],
    ] as const) {
      const result = readClientHello(bytes);
      assert.ok('error' in result, `${why}: ${JSON.stringify(result)}`);
    }
    const endless = Buffer.concat(Array.from({ length: 3 }, () => Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x18, 0x00]), Buffer.alloc(0x1800)])));
    endless[5] = 0x01;
    endless.writeUIntBE(0xfffff, 6, 3);
    assert.ok(MAX_CLIENT_HELLO_BYTES < endless.length);
    assert.ok('error' in readClientHello(endless), 'a ClientHello that would exceed the limit is refused, not waited for');
  });
});
