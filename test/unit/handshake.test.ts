import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  buildAgentRequest,
  buildAcceptResponse,
  buildRefusal,
  HandshakeError,
  HeadReader,
  isValidChannel,
  looksLikeHttp,
  negotiateVersion,
  parseAgentRequest,
  parseAuthorization,
  parseTunnelResponse,
  retryAfterMs,
  MAX_RETRY_AFTER_MS,
  sniff,
} from '../../src/protocol/index.js';

const NONCE = 'AAECAwQFBgcICQoLDA0ODw';
const HELLO = { role: 'server' as const, channel: '/ssh', versions: [2], nonce: NONCE };
const REQUEST = buildAgentRequest(HELLO, { host: 'tunnel.example:443', userAgent: 'rhost/0.1.0' });
/** What a protocol 1 agent sent: the key and token in the request. */
const LEGACY = { role: 'server' as const, channel: '/ssh', versions: [1], legacy: { key: 'k€y, with=odd (chars)', token: 't0ken' } };
const LEGACY_REQUEST = buildAgentRequest(LEGACY, { host: 'tunnel.example:443', userAgent: 'rhost/0.1.0' });

function headOf(text: string): string {
  return text.slice(0, text.indexOf('\r\n\r\n'));
}

describe('first-bytes classification', () => {
  test('an agent request is an agent at full length and "more" on every shorter prefix', () => {
    const bytes = Buffer.from(REQUEST);
    assert.equal(sniff(bytes), 'agent');
    for (let i = 0; i <= 'GET /.rhost'.length; i++) assert.equal(sniff(bytes.subarray(0, i)), 'more', `prefix ${i}`);
  });

  test('users are told apart on the first byte that differs', () => {
    assert.equal(sniff(Buffer.from('HEAD / HTTP/1.1\r\n')), 'user');
    assert.equal(sniff(Buffer.from('HEAD /.rhost HTTP/1.1\r\n')), 'user');
    assert.equal(sniff(Buffer.from('GET / HTTP/1.1\r\n')), 'user');
    assert.equal(sniff(Buffer.from('GET /.rhostx HTTP/1.1')), 'user');
    assert.equal(sniff(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')), 'user');
    assert.equal(sniff(Buffer.from([0x16, 0x03, 0x01])), 'user');
    assert.equal(sniff(Buffer.from('GET /.rhost?x=1 HTTP/1.1')), 'agent');
  });

  test('HTTP requests are recognised for friendly error pages', () => {
    assert.ok(looksLikeHttp(Buffer.from('GET / HTTP/1.1')));
    assert.ok(looksLikeHttp(Buffer.from('OPTIONS * HTTP/1.1')));
    assert.ok(!looksLikeHttp(Buffer.from('SSH-2.0-x')));
    assert.ok(!looksLikeHttp(Buffer.from([0x16, 3, 1])));
  });
});

describe('agent request', () => {
  test('round-trips role, channel, versions and the nonce; a version 2 request holds no secret', () => {
    const req = parseAgentRequest(headOf(REQUEST));
    assert.equal(req.role, 'server');
    assert.equal(req.channel, '/ssh');
    assert.deepEqual(req.versions, [2]);
    assert.equal(req.nonce, NONCE);
    assert.equal(req.legacy, undefined);
    assert.equal(req.upgrade, 'rhost');
    assert.equal(req.userAgent, 'rhost/0.1.0');
    assert.doesNotMatch(REQUEST, /Authorization/i);
  });

  test('protocol 1 credentials, in Authorization with any characters, are still read (for --allow-legacy-auth)', () => {
    const req = parseAgentRequest(headOf(LEGACY_REQUEST));
    assert.deepEqual(req.legacy, LEGACY.legacy);
    const ua = /\r\nUser-Agent: ([^\r]*)/.exec(LEGACY_REQUEST)![1]!;
    assert.ok(!ua.includes('t0ken'));
    assert.match(LEGACY_REQUEST, /\r\nAuthorization: Rhost key=[^,\r]+, token=t0ken\r\n/);
  });

  test('parses what nginx forwards: reordered, lower-case Connection', () => {
    const text = `GET /.rhost HTTP/1.1\r\nUpgrade: rhost\r\nConnection: upgrade\r\nHost: x\r\nX-Real-IP: 1.2.3.4\r\nRhost-Version: 2\r\nRhost-Role: client\r\nRhost-Channel: /\r\nrhost-nonce: ${NONCE}`;
    const req = parseAgentRequest(text);
    assert.equal(req.role, 'client');
    assert.equal(req.nonce, NONCE);
  });

  const bad: Array<[string, string]> = [
    ['a repeated Authorization', headOf(LEGACY_REQUEST) + '\r\nAuthorization: Rhost key=other'],
    ['a repeated Rhost-Nonce', headOf(REQUEST) + `\r\nRhost-Nonce: ${NONCE}`],
    ['a nonce that is not base64url of 16 or more bytes', headOf(REQUEST).replace(NONCE, 'short')],
    ['no Host (HTTP/1.1 requires it)', headOf(REQUEST).replace(/Host: [^\r]*\r\n/, '')],
    ['an empty Host', headOf(REQUEST).replace(/Host: [^\r]*/, 'Host: ')],
    ['no Upgrade', headOf(REQUEST).replace('Upgrade: rhost\r\n', '')],
    ['a bad role', headOf(REQUEST).replace('Rhost-Role: server', 'Rhost-Role: admin')],
    ['an invalid channel', headOf(REQUEST).replace('Rhost-Channel: /ssh', 'Rhost-Channel: ssh')],
    ['no version', headOf(REQUEST).replace(/Rhost-Version: 2\r\n/, '')],
    ['folded headers', headOf(REQUEST) + '\r\n continued'],
    ['HTTP/1.0', headOf(REQUEST).replace('HTTP/1.1', 'HTTP/1.0')],
    ['a Basic Authorization', headOf(LEGACY_REQUEST).replace(/Authorization: .*$/, 'Authorization: Basic Zm9vOmJhcg==')],
    ['a quoted credential', headOf(LEGACY_REQUEST).replace(/Authorization: .*$/, 'Authorization: Rhost key="quoted"')],
  ];
  for (const [name, text] of bad) {
    test(`refuses ${name} with 400`, () => {
      assert.throws(() => parseAgentRequest(text), (err: unknown) => err instanceof HandshakeError && err.status === 400 && err.code === 'ERR_RHOST_BAD_HANDSHAKE');
    });
  }

  test('parses Authorization parameters in any order and case', () => {
    assert.deepEqual(parseAuthorization('rhost TOKEN=a%20b ,  key=c'), { token: 'a b', key: 'c' });
    assert.deepEqual(parseAuthorization('Rhost'), {});
  });
});

describe('head reader', () => {
  test('finds the end of the head at any split and keeps the bytes after it', () => {
    const wire = Buffer.concat([Buffer.from(REQUEST), Buffer.from([1, 2, 3])]);
    for (let i = 0; i < wire.length; i++) {
      const reader = new HeadReader();
      const first = reader.push(wire.subarray(0, i));
      const result = first ?? reader.push(wire.subarray(i));
      assert.ok(result, `split at ${i}`);
      assert.equal(result.head, headOf(REQUEST));
      assert.deepEqual([...result.rest], first ? [...wire.subarray(REQUEST.length, i)] : [1, 2, 3]);
    }
  });

  test('throws 431 past its byte limit', () => {
    const reader = new HeadReader(1024);
    assert.throws(
      () => {
        for (let i = 0; i < 20; i++) reader.push(Buffer.from(`X-Pad-${i}: ${'a'.repeat(100)}\r\n`));
      },
      (err: unknown) => err instanceof HandshakeError && err.status === 431,
    );
  });
});

describe('tunnel answer', () => {
  const SESSION = '6f1c0e3a9b2d4c5e8f7a6b5c4d3e2f10';
  const CHALLENGE = { nonce: 'EBESExQVFhcYGRobHB0eHw', salt: Buffer.alloc(16, 7), iterations: 50_000 };

  test('a version 2 101 carries version, session id and the challenge', () => {
    const answer = parseTunnelResponse(headOf(buildAcceptResponse(2, SESSION, CHALLENGE)));
    assert.ok(answer.ok);
    assert.equal(answer.version, 2);
    assert.equal(answer.sessionId, SESSION);
    assert.deepEqual(answer.challenge, CHALLENGE);
  });

  test('a version 2 101 without a usable challenge is not rhost', () => {
    assert.throws(() => parseTunnelResponse(headOf(buildAcceptResponse(2, SESSION, null))), /Rhost-Nonce/);
    assert.throws(() => parseTunnelResponse(headOf(buildAcceptResponse(2, 'abc', CHALLENGE))), /Rhost-Session/);
    for (const iterations of [999, 1_000_001]) {
      assert.throws(() => parseTunnelResponse(headOf(buildAcceptResponse(2, SESSION, { ...CHALLENGE, iterations }))), /iterations/);
    }
  });

  test('Retry-After is whole seconds, capped at the longest lockout so that no timer overflows', () => {
    assert.equal(retryAfterMs('3'), 3000);
    assert.equal(retryAfterMs('99999999999'), MAX_RETRY_AFTER_MS);
    assert.equal(retryAfterMs(99999999999), MAX_RETRY_AFTER_MS);
    for (const junk of ['-1', '1.5', 'Wed, 21 Oct 2015 07:28:00 GMT', '', undefined]) assert.equal(retryAfterMs(junk), 0, String(junk));
  });

  test('a refusal carries status, code and the one-line reason', () => {
    const text = buildRefusal('ERR_RHOST_BAD_KEY', 'bad key for /ssh\nsecond line');
    const head = headOf(text);
    const answer = parseTunnelResponse(head, text.slice(head.length + 4));
    assert.equal(answer.ok, false);
    if (!answer.ok) {
      assert.equal(answer.status, 403);
      assert.equal(answer.code, 'ERR_RHOST_BAD_KEY');
      assert.equal(answer.reason, 'bad key for /ssh second line');
    }
  });

  test('version negotiation picks the newest common version or none', () => {
    assert.equal(negotiateVersion([2, 1]), 2, 'an agent of protocol 2 keeps working');
    assert.equal(negotiateVersion([3, 2]), 3);
    assert.equal(negotiateVersion([4, 3]), 3);
    assert.equal(negotiateVersion([1]), undefined, 'agents of protocol 1 are refused unless the tunnel allows legacy auth');
    assert.equal(negotiateVersion([1], [3, 2, 1]), 1);
    assert.equal(negotiateVersion([5, 4]), undefined);
  });

  test('an answer that is not rhost is reported as unexpected', () => {
    assert.throws(() => parseTunnelResponse('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket'), /not an rhost upgrade/);
    assert.throws(() => parseTunnelResponse('SSH-2.0-OpenSSH'), /not an HTTP response/);
  });
});

describe('channel names', () => {
  test('accepts /, /ssh, /a/b and refuses the rest', () => {
    for (const ok of ['/', '/ssh', '/a/b', '/db-1', '/x.y_z']) assert.ok(isValidChannel(ok), ok);
    for (const no of ['', 'ssh', '//', '/a/', '/SSH', '/a b', '/-x', `/${'a'.repeat(200)}`]) assert.ok(!isValidChannel(no), no);
  });
});
