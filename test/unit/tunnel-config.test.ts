import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveTunnelConfig, isLoopback } from '../../src/relay/config.js';
import { createServerAgent, createClientAgent, RhostError } from '../../src/index.js';

const badOption = (pattern: RegExp) => (err: unknown) => err instanceof RhostError && err.code === 'ERR_RHOST_BAD_OPTION' && pattern.test(err.message);

describe('secure by default', () => {
  test('a tunnel reachable from other machines with no key at all refuses to start, saying how to fix it', () => {
    assert.throws(() => resolveTunnelConfig({ host: '0.0.0.0' }), badOption(/KEYS=.*--open-channel/));
    assert.throws(() => resolveTunnelConfig({ host: '::' }), badOption(/reachable from other machines/));
  });

  test('on loopback with no keys, / is open, and marked implicit', () => {
    const c = resolveTunnelConfig({ host: '127.0.0.1' });
    assert.deepEqual(c.openChannels, ['/']);
    assert.equal(c.implicitOpen, true);
  });

  test('with any key configured, only configured channels exist, even on loopback', () => {
    const c = resolveTunnelConfig({ host: '127.0.0.1', keys: { '/ssh': 'k' } });
    assert.deepEqual(c.openChannels, []);
  });

  test('opening a channel to everyone takes an explicit openChannels entry', () => {
    const c = resolveTunnelConfig({ host: '0.0.0.0', openChannels: ['/'] });
    assert.deepEqual(c.openChannels, ['/']);
    assert.equal(c.implicitOpen, false);
  });

  test('an empty key is an error that names the explicit alternative', () => {
    assert.throws(() => resolveTunnelConfig({ keys: { '/': '' } }), badOption(/--open-channel \//));
  });

  test('bad channel names and numbers are refused naming the option', () => {
    assert.throws(() => resolveTunnelConfig({ keys: { ssh: 'k' } }), badOption(/option keys names an invalid channel/));
    assert.throws(() => resolveTunnelConfig({ port: 70000 }), badOption(/option port must be an integer/));
    assert.throws(() => resolveTunnelConfig({ openChannels: ['/a'], keys: { '/a': 'k' } }), badOption(/also has a key/));
    assert.throws(() => resolveTunnelConfig({ session: { maxStreams: 0 } }), badOption(/option maxStreams/));
    assert.throws(() => resolveTunnelConfig({ trustProxy: ['privat'] }), badOption(/trustProxy has "privat", which is not an address, a CIDR range, loopback or private/));
    assert.deepEqual(resolveTunnelConfig({ trustProxy: ['private', '203.0.113.0/24'] }).trustProxy, ['private', '203.0.113.0/24']);
    // An address with a port would match nothing: refused, saying what to write.
    assert.throws(() => resolveTunnelConfig({ trustProxy: ['127.0.0.1:8080'] }), badOption(/an address with a port.*write 127\.0\.0\.1$/));
    assert.throws(() => resolveTunnelConfig({ trustProxy: ['[::1]:8080'] }), badOption(/an address with a port.*write ::1$/));
    assert.throws(() => resolveTunnelConfig({ trustProxy: ['::1:8080'] }), badOption(/reads as ::1 with port 8080/));
    assert.deepEqual(resolveTunnelConfig({ trustProxy: ['2001:db8::22', '::1'] }).trustProxy, ['2001:db8::22', '::1'], 'addresses that merely end in digits are fine');
  });

  test('agents check their options', () => {
    assert.throws(() => createServerAgent({ target: '' }), badOption(/target is required/));
    assert.throws(() => createServerAgent({ target: '80', channel: 'nope' }), badOption(/option channel/));
    assert.throws(() => createServerAgent({ target: '80', tunnel: 'ftp://x' }), badOption(/unsupported scheme/));
    assert.throws(() => createClientAgent({ listen: 'x:99999' }), badOption(/bad port/));
    assert.throws(() => createServerAgent({ target: '80', key: '' }), badOption(/option key/));
  });

  test('loopback addresses', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.ok(isLoopback(h), h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', 'example.com']) assert.ok(!isLoopback(h), h);
  });
});
