import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import fc from 'fast-check';
import { MAX_CLIENT_HELLO_BYTES, readClientHello } from '../../src/relay/client-hello.js';
import { MAX_HOST_BYTES, parseHost } from '../../src/relay/routes.js';
import type { Tunnel } from '../../src/index.js';
import { captureClientHello } from '../helpers/client-hello.js';
import { makePki } from '../helpers/certs.js';
import { Cleanup, listening, startServerAgent, startTunnel } from '../helpers/rig.js';
import { until } from '../helpers/wait.js';

/**
 * Fuzzes what the tunnel reads before it knows where a user goes: the TLS
 * ClientHello (for its server name) and HTTP request heads (for their
 * Host), first as pure functions, then on a live tunnel with domains,
 * routes, a wildcard certificate and pass-through names. Time-boxed like
 * live-tunnel.test: FUZZ_SECONDS for a long run (`npm run fuzz`).
 */
const SECONDS = Number(process.env.FUZZ_SECONDS ?? 4);
const PROPERTY_MS = (SECONDS * 1000) / 4;
/** A user's connection must be answered or closed within this, or the run failed (a hang). */
const ANSWER_BOUND_MS = 5000;

async function fuzz<T>(arbitrary: fc.Arbitrary<T>, run: (value: T) => Promise<void> | void): Promise<void> {
  let inFlight: Promise<void> = Promise.resolve();
  await fc.assert(fc.asyncProperty(arbitrary, async (value) => (inFlight = Promise.resolve(run(value)))), { interruptAfterTimeLimit: PROPERTY_MS, numRuns: 1_000_000, includeErrorInReport: true });
  await inFlight;
}

/** Mutations of a byte string: flips, cuts, insertions, duplications. */
const mutated = (base: Buffer): fc.Arbitrary<Buffer> =>
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 3 }), fc.uint8Array({ minLength: 1, maxLength: 8 })), { maxLength: 6 }).map((edits) => {
    let b = Buffer.from(base);
    for (const [at, kind, bytes] of edits) {
      const i = b.length ? at % b.length : 0;
      if (kind === 0) b[i] = bytes[0]!;
      else if (kind === 1) b = b.subarray(0, i);
      else if (kind === 2) b = Buffer.concat([b.subarray(0, i), Buffer.from(bytes), b.subarray(i)]);
      else b = Buffer.concat([b, b.subarray(i, i + 64)]);
    }
    return b;
  });

/** Names a Host or SNI may carry: routed, unrouted, wildcard-deep, hostile. */
const hostArb = fc.oneof(
  fc.constantFrom('blog.tunnel.test', 'BLOG.Tunnel.Test:443', 'tunnel.test', 'ssh.tunnel.test', 'nope.tunnel.test', 'a.b.tunnel.test', 'shop.test', 'x.apps.test', 'app.paas.example', '127.0.0.1', '[::1]:80'),
  fc.constantFrom('', ' ', 'a..b', '.tunnel.test', 'tunnel.test.', 'blog.tunnel.test:99999', 'blog.tunnel.test:', 'b\u00e9.tunnel.test', 'x'.repeat(MAX_HOST_BYTES + 1), '[::1', 'a b', 'blog.tunnel.test\tx'),
  fc.string({ maxLength: 40 }),
  fc.stringMatching(/^[a-z0-9.-]{1,20}\.tunnel\.test(:\d{1,5})?$/),
);

describe(`fuzzing the server name and Host readers for ${SECONDS} s`, () => {
  const cleanup = new Cleanup();
  const hellos: Buffer[] = [];
  let tunnel: Tunnel;
  let port = 0;
  let ca = '';
  const problems: string[] = [];
  const onProblem = (err: unknown): void => void problems.push(String(err));
  const outcomes = { answered: 0, alerted: 0, closed: 0, silent: 0 };

  before(async () => {
    process.on('unhandledRejection', onProblem);
    process.on('uncaughtException', onProblem);
    for (const name of ['blog.tunnel.test', 'shop.test', 'ssh.tunnel.test', 'gone.test', null, 'a'.repeat(63) + '.tunnel.test']) hellos.push(await captureClientHello(name));
    hellos.push(await captureClientHello('blog.tunnel.test', { maxVersion: 'TLSv1.2' }));
    const pki = makePki(cleanup);
    ca = pki.caCert;
    const wildcard = pki.issue('tunnel', 'DNS:tunnel.test,DNS:*.tunnel.test');
    const keys = { '/': 'root-key-0123456789', '/blog': 'blog-key-0123456789', '/shop': 'shop-key-0123456789', '/ssh': 'ssh-key-0123456789', '/gone': 'gone-key-0123456789' };
    ({ tunnel, port } = await startTunnel(cleanup, {
      keys,
      domains: ['tunnel.test'],
      routes: { 'shop.test': '/shop', '*.apps.test': '/shop', 'gone.test': '/gone' }, // /gone has no agent: its users get an alert
      tlsCert: wildcard.cert,
      tlsKey: wildcard.key,
      sniffTimeoutMs: 100,
      handshakeTimeoutMs: 300,
      userIdleTimeoutMs: 2000,
      maxConnRatePerIp: 0,
    }));
    const app = (name: string) => http.createServer((req, res) => res.end(`${name} ${req.headers.host}`));
    const address = `127.0.0.1:${port}`;
    await startServerAgent(cleanup, { tunnel: address, key: keys['/'], target: String(await listening(app('root'), cleanup)) });
    await startServerAgent(cleanup, { tunnel: address, channel: '/blog', key: keys['/blog'], public: true, target: String(await listening(app('blog'), cleanup)) });
    // shop.test passes through (no certificate for it): a service speaking TLS of its own
    const shopTls = pki.issue('shop', 'DNS:shop.test');
    const shop = https.createServer({ cert: readFileSync(shopTls.cert), key: readFileSync(shopTls.key) }, (req, res) => res.end(`shop ${req.headers.host}`));
    await startServerAgent(cleanup, { tunnel: address, channel: '/shop', key: keys['/shop'], target: String(await listening(shop, cleanup)) });
    await startServerAgent(cleanup, { tunnel: address, channel: '/ssh', key: keys['/ssh'], target: String(await listening(net.createServer((c) => c.end('SSH-2.0-x\r\n')), cleanup)) });
    await realUsersServed();
  });
  after(async () => {
    await cleanup.run();
    process.off('unhandledRejection', onProblem);
    process.off('uncaughtException', onProblem);
  });

  /** Users of every kind still reach their sites: by Host, by SNI decrypted, by SNI passed through. */
  async function realUsersServed(): Promise<void> {
    const get = (mod: typeof http | typeof https, host: string, servername?: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const req = mod.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host }, ...(servername ? { servername, ca: readFileSync(ca) } : {}) }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('end', () => resolve(Buffer.concat(parts).toString()));
        });
        req.on('error', reject);
      });
    assert.equal(await get(http, 'blog.tunnel.test'), 'blog blog.tunnel.test');
    assert.equal(await get(http, 'app.paas.example'), 'root app.paas.example');
    assert.equal(await get(https, 'blog.tunnel.test', 'blog.tunnel.test'), 'blog blog.tunnel.test', 'decrypted by the tunnel');
    assert.equal(await get(https, 'shop.test', 'shop.test'), 'shop shop.test', "passed through: the service's own certificate");
  }

  /** Writes bytes on a fresh connection; resolves with what came back once the tunnel answers and closes, or has been quiet a while. */
  async function poke(chunks: Buffer[], end: boolean): Promise<Buffer> {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    for (const c of chunks) socket.write(c);
    if (end) socket.end();
    const closed = await new Promise<boolean>((resolve, reject) => {
      const bound = setTimeout(() => reject(new Error(`a user's connection was neither answered nor closed in ${ANSWER_BOUND_MS} ms`)), ANSWER_BOUND_MS);
      // Quiet for 100 ms after something came back, or 400 ms with nothing: a half request the app may wait on for ever.
      let quiet = setTimeout(() => done(false), 400);
      socket.on('data', () => {
        clearTimeout(quiet);
        quiet = setTimeout(() => done(false), 100);
      });
      const done = (isClosed: boolean): void => {
        clearTimeout(bound);
        clearTimeout(quiet);
        resolve(isClosed);
      };
      socket.once('close', () => done(true));
    });
    socket.destroy();
    const answer = Buffer.concat(got);
    if (answer.length === 0) outcomes[closed ? 'closed' : 'silent']++;
    else if (answer[0] === 0x15) outcomes.alerted++;
    else outcomes.answered++;
    return answer;
  }

  test('readClientHello never throws, on ClientHellos mutated, cut at every length and fed in pieces', async () => {
    for (const hello of hellos) {
      const whole = readClientHello(hello);
      assert.ok('sni' in whole, `a real ClientHello is read: ${JSON.stringify(whole)}`);
      for (let n = 0; n < hello.length; n++) assert.deepEqual(readClientHello(hello.subarray(0, n)), { need: 'more' }, `a prefix of ${n} bytes asks for more`);
    }
    await fuzz(fc.oneof(...hellos.map(mutated), fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.concat([Buffer.from([0x16, 0x03, 0x01]), Buffer.from(a)]))), (bytes) => {
      const result = readClientHello(bytes);
      if ('need' in result) assert.ok(bytes.length < MAX_CLIENT_HELLO_BYTES, 'more is never asked for past the limit');
      if ('sni' in result && result.sni !== null) {
        const parsed = parseHost(result.sni);
        assert.ok('name' in parsed && parsed.name === result.sni, `a server name is a valid, lower-case host: ${JSON.stringify(result.sni)}`);
      }
    });
  });

  test('parseHost never throws; what it accepts is a lower-case name of at most 255 bytes, without its port', async () => {
    await fuzz(hostArb, (value) => {
      const parsed = parseHost(value);
      if ('error' in parsed) return;
      // An empty Host is allowed (RFC 9112 §3.2: a target without an authority); it routes like none.
      assert.ok(Buffer.byteLength(parsed.name) <= MAX_HOST_BYTES, JSON.stringify(value));
      assert.equal(parsed.name, parsed.name.toLowerCase());
      assert.ok(/^[a-z0-9._~!$&'()*+,;=%-]*$|^\[[0-9a-f:.]+\]$/.test(parsed.name), `only reg-name bytes: ${JSON.stringify(parsed.name)}`);
    });
  });

  test('a live tunnel answers mutated ClientHellos with a site, an alert or a close, and still serves everyone', async () => {
    await fuzz(fc.tuple(fc.oneof(...hellos.map(mutated)), fc.boolean()), async ([bytes, end]) => {
      const answer = await poke([bytes], end);
      // The tunnel's own answers to TLS: a handshake from itself or the service, or an alert; never plaintext HTTP.
      if (answer.length > 0) assert.ok(answer[0] === 0x16 || answer[0] === 0x15 || answer[0] === 0x14, `a TLS user got ${JSON.stringify(answer.subarray(0, 16).toString('latin1'))}`);
      assert.deepEqual(problems, [], 'nothing unhandled');
    });
    await realUsersServed();
  });

  test('a live tunnel answers hostile request heads, pipelined, with a site, the one 404 or a 400, and still serves everyone', async () => {
    const head = fc
      .tuple(fc.constantFrom('GET', 'POST', 'HEAD', 'PUT', 'OPTIONS', 'CONNECT'), fc.array(hostArb, { minLength: 0, maxLength: 2 }), fc.constantFrom('HTTP/1.1', 'HTTP/1.0'), fc.boolean())
      .map(([method, hosts, version, body]) => {
        const lines = [`${method} / ${version}`, ...hosts.map((h) => `Host: ${h}`), ...(body ? ['Content-Length: 5'] : [])];
        return Buffer.from(`${lines.join('\r\n')}\r\n\r\n${body ? 'hello' : ''}`, 'latin1');
      });
    const requests = fc.oneof({ arbitrary: fc.array(head, { minLength: 1, maxLength: 4 }).map((h) => Buffer.concat(h)), weight: 3 }, mutated(Buffer.from('GET / HTTP/1.1\r\nHost: blog.tunnel.test\r\n\r\nGET / HTTP/1.1\r\nHost: nope.tunnel.test\r\n\r\n')));
    await fuzz(fc.tuple(requests, fc.boolean()), async ([bytes, end]) => {
      const answer = (await poke([bytes], end)).toString('latin1');
      // Every status line is a site's answer or one of the tunnel's own (502: plain HTTP reached shop.test's TLS service).
      for (const [, status] of answer.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3}) /g)) assert.ok(['200', '400', '403', '404', '405', '408', '413', '431', '501', '502', '505'].includes(status!), `status ${status}: ${answer.slice(0, 200)}`);
      assert.ok(!/SSH-2\.0/.test(answer), 'a private channel is never reached by name');
      assert.deepEqual(problems, [], 'nothing unhandled');
    });
    await realUsersServed();
  });

  test('afterwards nothing is left behind', async () => {
    await until(() => tunnel.stats().users === 0 && tunnel.stats().pending === 0, 'every fuzzed user to be gone', 10_000);
    assert.equal(tunnel.stats().bufferedBytes, 0);
    console.log(`fuzzed users: ${JSON.stringify(outcomes)}`);
    assert.ok(outcomes.answered + outcomes.alerted > 0, 'some fuzzed users were answered');
    assert.deepEqual(problems, []);
  });
});
