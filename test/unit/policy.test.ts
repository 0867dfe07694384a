import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildProxyHeader, MAX_POLICY_ENTRIES, OPEN_POLICY, parsePolicy, parseProxyHeader, policyDigest, policyHeaders, proofMessage } from '../../src/protocol/index.js';
import { ChannelPolicy } from '../../src/relay/policy.js';

describe('a server agent’s policy', () => {
  const policy = { public: true, allow: ['10.0.0.0/8', '2001:db8::/32'], deny: ['10.1.2.3'] };

  test('goes into three request headers and back', () => {
    const headers = new Map(policyHeaders(policy).map(([k, v]) => [k.toLowerCase(), v]));
    assert.deepEqual([...headers.keys()], ['rhost-public', 'rhost-allow', 'rhost-deny']);
    assert.deepEqual(parsePolicy((n) => headers.get(n)), policy);
    assert.deepEqual(policyHeaders(OPEN_POLICY), [], 'the open policy sends nothing');
    assert.deepEqual(parsePolicy(() => undefined), OPEN_POLICY);
  });

  test('bad lists are refused, saying which entry', () => {
    assert.throws(() => parsePolicy((n) => (n === 'rhost-allow' ? '10.0.0.0/8, banana' : undefined)), /Rhost-Allow has "banana", which is not an address/);
    assert.throws(() => parsePolicy((n) => (n === 'rhost-deny' ? '10.0.0.1:22' : undefined)), /an address with a port/);
    assert.throws(() => parsePolicy((n) => (n === 'rhost-public' ? 'yes' : undefined)), /Rhost-Public must be on/);
    assert.throws(() => parsePolicy((n) => (n === 'rhost-allow' ? '10.0.0.1,,10.0.0.2' : undefined)), /empty entry/);
    const many = Array.from({ length: MAX_POLICY_ENTRIES + 1 }, (_, i) => `10.0.${i >> 8}.${i & 255}`).join(',');
    assert.throws(() => parsePolicy((n) => (n === 'rhost-deny' ? many : undefined)), new RegExp(`at most ${MAX_POLICY_ENTRIES}`));
  });

  test('is signed: a proof made for one policy does not fit another', () => {
    const context = { role: 'server' as const, channel: '/app', agentNonce: 'a'.repeat(22), tunnelNonce: 'b'.repeat(22), sessionId: 'c'.repeat(32) };
    const signed = proofMessage('key', { ...context, policy: policyDigest(policy) }).toString();
    assert.match(signed, /^rhost-proof\/3,key,server,\/app,/);
    assert.notEqual(signed, proofMessage('key', { ...context, policy: policyDigest({ ...policy, deny: [] }) }).toString());
    assert.notEqual(signed, proofMessage('key', { ...context, policy: policyDigest(OPEN_POLICY) }).toString(), 'stripping every header changes it too');
    assert.match(proofMessage('key', context).toString(), /^rhost-proof\/2,/, 'protocol 2 signs no policy');
  });

  test('the tunnel admits a client only if both the agent’s and the operator’s lists do', () => {
    const channel = new ChannelPolicy({ deny: ['10.0.0.66'] });
    assert.equal(channel.restricts, true);
    assert.equal(channel.admits('192.0.2.1'), true);
    channel.declare({ public: false, allow: ['10.0.0.0/24'], deny: [] });
    assert.equal(channel.admits('10.0.0.1'), true);
    assert.equal(channel.admits('10.0.0.66'), false, 'the operator’s deny');
    assert.equal(channel.admits('192.0.2.1'), false, 'the agent’s allow');
    assert.equal(channel.admits(null), false, 'an unknown client cannot be in an allow list');
    channel.declare(OPEN_POLICY);
    assert.equal(channel.admits(null), true, 'a deny list alone admits whom it does not know');
    assert.equal(new ChannelPolicy(undefined).restricts, false);
  });
});

describe('PROXY headers a server agent writes', () => {
  const ends = (a: string, b: string) => ({ source: { address: a, port: 51000 }, destination: { address: b, port: 443 } });

  test('v1 and v2 read back as the same client, IPv4 and IPv6', () => {
    for (const version of [1, 2] as const) {
      for (const [src, dst] of [['203.0.113.7', '192.0.2.1'], ['2001:db8::7', '2001:db8::1'], ['::ffff:198.51.100.3', '192.0.2.1']]) {
        const header = buildProxyHeader(version, ends(src!, dst!));
        const parsed = parseProxyHeader(Buffer.concat([header, Buffer.from('GET / HTTP/1.1\r\n')]));
        assert.equal(parsed?.length, header.length);
        assert.deepEqual(parsed?.source, { address: src === '::ffff:198.51.100.3' ? '198.51.100.3' : src, port: 51000 }, `v${version} ${src}`);
      }
    }
    assert.equal(buildProxyHeader(1, ends('203.0.113.7', '192.0.2.1')).toString(), 'PROXY TCP4 203.0.113.7 192.0.2.1 51000 443\r\n');
  });

  test('an unknown or mixed pair says so, and the service uses the connection’s own addresses', () => {
    assert.equal(buildProxyHeader(1, null).toString(), 'PROXY UNKNOWN\r\n');
    assert.equal(buildProxyHeader(1, ends('203.0.113.7', '2001:db8::1')).toString(), 'PROXY UNKNOWN\r\n');
    const v2 = buildProxyHeader(2, ends('', '192.0.2.1'));
    assert.equal(v2.length, 16);
    assert.deepEqual(parseProxyHeader(v2), { length: 16, source: null });
  });
});
