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
  sniff,
} from '../../src/protocol/index.js';

const HELLO = { role: 'server' as const, channel: '/ssh', versions: [1], key: 'k€y, with=odd (chars)', token: 't0ken' };
const REQUEST = buildAgentRequest(HELLO, { host: 'tunnel.example:443', userAgent: 'rhost/0.1.0' });

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
  test('round-trips role, channel, versions and credentials with any characters', () => {
    const req = parseAgentRequest(headOf(REQUEST));
    assert.equal(req.role, 'server');
    assert.equal(req.channel, '/ssh');
    assert.deepEqual(req.versions, [1]);
    assert.equal(req.key, HELLO.key);
    assert.equal(req.token, HELLO.token);
    assert.equal(req.upgrade, 'rhost');
    assert.equal(req.userAgent, 'rhost/0.1.0');
  });

  test('credentials travel in Authorization, never in User-Agent', () => {
    const ua = /\r\nUser-Agent: ([^\r]*)/.exec(REQUEST)![1]!;
    assert.ok(!ua.includes('t0ken'));
    assert.match(REQUEST, /\r\nAuthorization: Rhost key=[^,\r]+, token=t0ken\r\n/);
  });

  test('parses what nginx forwards: reordered, lower-case Connection', () => {
    const text = 'GET /.rhost HTTP/1.1\r\nUpgrade: rhost\r\nConnection: upgrade\r\nHost: x\r\nX-Real-IP: 1.2.3.4\r\nRhost-Version: 1\r\nRhost-Role: client\r\nRhost-Channel: /\r\nAuthorization: Rhost token=abc';
    const req = parseAgentRequest(text);
    assert.equal(req.role, 'client');
    assert.equal(req.token, 'abc');
    assert.equal(req.key, undefined);
  });

  const bad: Array<[string, string]> = [
    ['a repeated Authorization', headOf(REQUEST) + '\r\nAuthorization: Rhost key=other'],
    ['no Upgrade', headOf(REQUEST).replace('Upgrade: rhost\r\n', '')],
    ['a bad role', headOf(REQUEST).replace('Rhost-Role: server', 'Rhost-Role: admin')],
    ['an invalid channel', headOf(REQUEST).replace('Rhost-Channel: /ssh', 'Rhost-Channel: ssh')],
    ['no version', headOf(REQUEST).replace(/Rhost-Version: 1\r\n/, '')],
    ['folded headers', headOf(REQUEST) + '\r\n continued'],
    ['HTTP/1.0', headOf(REQUEST).replace('HTTP/1.1', 'HTTP/1.0')],
    ['a Basic Authorization', headOf(REQUEST).replace(/Authorization: .*$/, 'Authorization: Basic Zm9vOmJhcg==')],
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
  test('101 carries version and session id', () => {
    const answer = parseTunnelResponse(headOf(buildAcceptResponse(1, 'abc123')));
    assert.deepEqual({ ok: answer.ok, version: answer.ok && answer.version, id: answer.ok && answer.sessionId }, { ok: true, version: 1, id: 'abc123' });
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
    assert.equal(negotiateVersion([2, 1]), 1);
    assert.equal(negotiateVersion([3, 2]), undefined);
    assert.equal(negotiateVersion([1], [2, 1]), 1);
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
