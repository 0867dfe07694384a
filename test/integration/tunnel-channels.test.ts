import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { createServerAgent, type Logger } from '../../src/index.js';
import { dialTunnel } from '../../src/transport/dial.js';
import { parseTunnelAddress } from '../../src/transport/address.js';
import { rawHandshake } from '../helpers/handshake.js';
import { Cleanup, connect, listening, readToEnd, request, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';

type Err = Error & { code?: string };
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A logger that keeps every line and field, to prove what never appears in logs. */
function recordingLogger(lines: string[]): Logger {
  const log: Logger = {
    debug: (m, f) => void lines.push(m + JSON.stringify(f ?? {})),
    info: (m, f) => void lines.push(m + JSON.stringify(f ?? {})),
    warn: (m, f) => void lines.push(m + JSON.stringify(f ?? {})),
    error: (m, f) => void lines.push(m + JSON.stringify(f ?? {})),
    child: () => log,
  };
  return log;
}

function dial(port: number, hello: { role: 'server' | 'client'; channel: string; key?: string; token?: string }) {
  return dialTunnel({ address: parseTunnelAddress(`127.0.0.1:${port}`), hello, userAgent: 'test', timeoutMs: 5000 });
}

describe('channels, keys and tokens', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('bad key, missing key and unknown channel are refused with their reason, and disturb nothing else', async () => {
    const lines: string[] = [];
    const app = http.createServer((_req, res) => res.end('fine'));
    const appPort = await listening(app, cleanup);
    const { port, address, tunnel } = await startTunnel(cleanup, { keys: { '/': 'root-key', '/ssh': 'ssh-key' }, logger: recordingLogger(lines), authLockoutMs: 0 });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'root-key' });
    const cases: Array<[Partial<Parameters<typeof createServerAgent>[0]>, string, RegExp]> = [
      [{ channel: '/ssh', key: 'WRONG-SECRET-1' }, 'ERR_RHOST_BAD_KEY', /^bad key for \/ssh \(or the tunnel has no channel \/ssh\)$/],
      [{ channel: '/ssh' }, 'ERR_RHOST_UNAUTHORIZED', /key is required for \/ssh/],
      [{ channel: '/nope', key: 'WRONG-SECRET-2' }, 'ERR_RHOST_BAD_KEY', /^bad key for \/nope \(or the tunnel has no channel \/nope\)$/],
    ];
    for (const [options, code, message] of cases) {
      const agent = createServerAgent({ tunnel: address, target: '1', ...options });
      const fatal = once(agent, 'fatal');
      await assert.rejects(agent.start(), (err: Err) => err.code === code && message.test(err.message));
      await fatal;
      await agent.close();
    }
    assert.equal((await request(port, { path: '/' })).body.toString(), 'fine', 'users are still served');
    assert.equal(tunnel.stats().channels.find((c) => c.name === '/')?.server, true);
    const all = lines.join('\n');
    for (const secret of ['root-key', 'ssh-key', 'WRONG-SECRET-1', 'WRONG-SECRET-2']) assert.ok(!all.includes(secret), `${secret} was logged`);
    assert.ok(lines.some((l) => l.includes('refused agent') && l.includes('bad key for /ssh')), 'the refusal was logged');
  });

  test('names cannot be listed: a name that is no channel answers as a wrong key does, before and after failures', async () => {
    const { port } = await startTunnel(cleanup, { keys: { '/ssh': 'ssh-key-0123456789' }, authLockoutMs: 60_000 });
    const attempt = async (channel: string, from: string) => {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
      await once(socket, 'connect');
      const outcome = await rawHandshake(socket, { channel, key: 'a-guess' });
      socket.destroy();
      return outcome.ok ? outcome : { ...outcome, reason: outcome.reason.replaceAll(channel, 'NAME') };
    };
    const real = await attempt('/ssh', '127.0.0.41');
    const none = await attempt('/nope', '127.0.0.42');
    assert.deepEqual(none, real, 'the same refusal, after the same upgrade, for a channel and for no channel');
    assert.ok(!real.ok && real.inside && real.code === 'ERR_RHOST_BAD_KEY');
    // After a failure on one unknown name, the next unknown name still looks like a real channel: it is not locked out apiece.
    const next = await attempt('/other', '127.0.0.42');
    const sshNow = await attempt('/ssh', '127.0.0.42');
    assert.deepEqual(next, sshNow);
    assert.ok(!next.ok && next.code === 'ERR_RHOST_BAD_KEY', JSON.stringify(next));
  });

  test('an agent of protocol 1 is told to upgrade; with allowLegacyAuth it works beside protocol 2, with warnings', async () => {
    const socketTo = async (port: number) => {
      const socket = net.connect(port, '127.0.0.1');
      await once(socket, 'connect');
      cleanup.add(() => socket.destroy());
      return socket;
    };
    const strict = await startTunnel(cleanup, { keys: { '/echo': 'echo-key-0123456789' } });
    const refused = await rawHandshake(await socketTo(strict.port), { versions: [1], channel: '/echo', key: 'echo-key-0123456789' });
    assert.ok(!refused.ok && refused.status === 426 && refused.code === 'ERR_RHOST_VERSION', JSON.stringify(refused));
    assert.match(!refused.ok ? refused.reason : '', /sends its key in the clear.*upgrade the agent.*--allow-legacy-auth/);

    const lines: string[] = [];
    const { port, address } = await startTunnel(cleanup, { keys: { '/echo': 'echo-key-0123456789' }, allowLegacyAuth: true, logger: recordingLogger(lines) });
    assert.ok(lines.some((l) => l.startsWith('legacy auth is ON')), 'a warning at start');
    // A protocol 1 server agent, its key and token in the request, serving an echo over its session.
    const old = await socketTo(port);
    const registered = await rawHandshake(old, { versions: [1], channel: '/echo', key: 'echo-key-0123456789', token: 'old-token-0123456789' });
    assert.ok(registered.ok, JSON.stringify(registered));
    const { Session } = await import('../../src/mux/session.js');
    const { Role } = await import('../../src/protocol/index.js');
    const session = new Session(old, { role: Role.Initiator, head: registered.rest });
    cleanup.add(() => session.destroy());
    session.on('stream', (stream) => stream.pipe(stream));
    assert.ok(lines.some((l) => /speaks the retired protocol 1.*crossed the wire/.test(l)), lines.join('\n'));
    // A protocol 2 client agent proves the same token against the verifier the tunnel made from it.
    const { port: local } = await startClientAgent(cleanup, { tunnel: address, channel: '/echo', token: 'old-token-0123456789' });
    const user = await connect(local);
    user.end('across versions');
    assert.equal((await readToEnd(user)).toString(), 'across versions');
    // And a protocol 1 client agent's clear token is checked against that verifier too.
    assert.ok((await rawHandshake(await socketTo(port), { versions: [1], role: 'client', channel: '/echo', token: 'old-token-0123456789' })).ok);
    const wrong = await rawHandshake(await socketTo(port), { versions: [1], role: 'client', channel: '/echo', token: 'wrong-token-0123456789' });
    assert.ok(!wrong.ok && wrong.code === 'ERR_RHOST_BAD_TOKEN' && !wrong.inside, JSON.stringify(wrong));
  });

  test('a server agent that opens a stream gets RST REFUSED_STREAM, and keeps its session', async () => {
    const { Session } = await import('../../src/mux/session.js');
    const { Role, WireError } = await import('../../src/protocol/index.js');
    const { port } = await startTunnel(cleanup, { keys: { '/': 'root-key-0123456789' } });
    const d = await dial(port, { role: 'server', channel: '/', key: 'root-key-0123456789' });
    const session = new Session(d.transport, { role: Role.Initiator, id: d.sessionId, head: d.head });
    cleanup.add(() => session.destroy());
    const stream = session.open({ channel: '/' });
    const [err] = (await once(stream, 'error')) as [Err & { wireCode?: number }];
    assert.equal(err.wireCode, WireError.RefusedStream);
    assert.ok((await session.ping()) > 0 && !session.closed, 'the session is fine');
  });

  test('a second server agent for a held channel is refused while the holder is alive', async () => {
    const { port, address } = await startTunnel(cleanup, { keys: { '/db': 'k' } });
    await startServerAgent(cleanup, { tunnel: address, target: '1', channel: '/db', key: 'k' });
    await assert.rejects(dial(port, { role: 'server', channel: '/db', key: 'k' }), (err: Err) => {
      return err.code === 'ERR_RHOST_CHANNEL_TAKEN' && /another server agent holds \/db/.test(err.message);
    });
  });

  test('a holder that stopped answering is replaced by the next server agent', async () => {
    const { port, tunnel } = await startTunnel(cleanup, { keys: { '/db': 'k' } });
    const stale = await dial(port, { role: 'server', channel: '/db', key: 'k' });
    stale.transport.pause(); // registered, then silent: it will never answer a PING
    const agent = createServerAgent({ tunnel: `127.0.0.1:${port}`, target: '1', channel: '/db', key: 'k' });
    cleanup.add(() => agent.close());
    await agent.start();
    assert.equal(tunnel.stats().channels.find((c) => c.name === '/db')?.server, true);
    stale.transport.destroy();
  });

  test('two server agents arriving while a silent holder is pinged: one registers, the other is refused', async () => {
    const { port, tunnel } = await startTunnel(cleanup, { keys: { '/db': 'k' } });
    const stale = await dial(port, { role: 'server', channel: '/db', key: 'k' });
    stale.transport.pause(); // it will never answer the PING that decides whether it still holds /db
    const results = await Promise.allSettled([dial(port, { role: 'server', channel: '/db', key: 'k' }), dial(port, { role: 'server', channel: '/db', key: 'k' })]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected');
    assert.equal(won.length, 1, 'exactly one takes the channel');
    assert.equal(refused.length, 1);
    assert.equal(((refused[0] as PromiseRejectedResult).reason as Err).code, 'ERR_RHOST_CHANNEL_TAKEN');
    assert.equal(tunnel.stats().channels.find((c) => c.name === '/db')?.server, true);
    for (const r of won) (r as PromiseFulfilledResult<Awaited<ReturnType<typeof dial>>>).value.transport.destroy();
    stale.transport.destroy();
  });

  test('a holder that is draining (it sent GOAWAY) gives way to a new server agent at once, and finishes its own streams', async () => {
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
    const echoPort = await listening(echo, cleanup);
    const { port, address } = await startTunnel(cleanup, { keys: { '/': 'drain-key-0123456789' } });
    const leaving = await startServerAgent(cleanup, { tunnel: address, target: String(echoPort), key: 'drain-key-0123456789' });
    const user = await connect(port);
    user.write('one ');
    await once(user, 'data');
    const drained = leaving.close({ drainTimeoutMs: 10_000 }); // GOAWAY; the user's stream may finish
    const warnings: string[] = [];
    const logger: Logger = { debug: () => {}, info: () => {}, warn: (m) => void warnings.push(m), error: (m) => void warnings.push(m), child: () => logger };
    const next = createServerAgent({ tunnel: address, target: String(echoPort), key: 'drain-key-0123456789', logger });
    cleanup.add(() => next.close());
    await next.start();
    assert.deepEqual(warnings, [], 'registered at the first attempt, no 409');
    user.end('two');
    assert.equal((await readToEnd(user)).toString(), 'two', 'the old agent carried its user to the end');
    await drained;
  });

  test('a client agent may send OPEN and DATA in the same write as its AUTH: nothing is refused or lost', async () => {
    const { Decoder, FrameType, encodeFrame } = await import('../../src/protocol/index.js');
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
    const echoPort = await listening(echo, cleanup);
    const { port, address } = await startTunnel(cleanup, { keys: { '/echo': 'k' } });
    await startServerAgent(cleanup, { tunnel: address, target: String(echoPort), channel: '/echo', key: 'k', token: 't' });
    const socket = await connect(port);
    socket.on('error', () => {});
    const frames = Buffer.concat([
      encodeFrame({ type: FrameType.Open, streamId: 1, meta: { channel: '/echo', remoteAddress: '', remotePort: 0 } }),
      encodeFrame({ type: FrameType.Data, streamId: 1, payload: Buffer.from('early bytes') }),
      encodeFrame({ type: FrameType.Fin, streamId: 1 }),
    ]);
    const answer = await rawHandshake(socket, { role: 'client', channel: '/echo', token: 't', afterAuth: frames });
    assert.ok(answer.ok, JSON.stringify(answer));
    const seen: string[] = [];
    let echoed = '';
    const finished = new Promise<void>((resolve) => {
      const decoder = new Decoder({
        dataHeader: () => {},
        data: (_id, piece) => void (echoed += piece.toString()),
        control: (frame) => {
          seen.push(`${FrameType[frame.type]}#${frame.streamId}`);
          if (frame.type === FrameType.Fin || frame.type === FrameType.Rst) resolve();
        },
      });
      decoder.write(answer.rest);
      socket.on('data', (chunk: Buffer) => decoder.write(chunk));
      socket.resume();
    });
    await finished;
    assert.ok(seen.includes('Ack#1'), seen.join(' '));
    assert.ok(!seen.includes('Rst#1'), `the stream was refused: ${seen.join(' ')}`);
    assert.equal(echoed, 'early bytes');
    socket.destroy();
  });

  test('client agents need the token the server agent set', async () => {
    const { port, address } = await startTunnel(cleanup, { keys: { '/svc': 'k', '/quiet': 'q' }, authLockoutMs: 0 });
    await assert.rejects(dial(port, { role: 'client', channel: '/svc', token: 't' }), (err: Err) => err.code === 'ERR_RHOST_NO_SERVER');
    await startServerAgent(cleanup, { tunnel: address, target: '1', channel: '/svc', key: 'k', token: 'right' });
    await startServerAgent(cleanup, { tunnel: address, target: '1', channel: '/quiet', key: 'q' });
    await assert.rejects(dial(port, { role: 'client', channel: '/svc', token: 'wrong' }), (err: Err) => err.code === 'ERR_RHOST_BAD_TOKEN' && err.message === 'bad token for /svc');
    await assert.rejects(dial(port, { role: 'client', channel: '/svc' }), (err: Err) => err.code === 'ERR_RHOST_UNAUTHORIZED');
    // A server agent that set no token registered no verifier: to a client agent that is the same as no server agent at all.
    await assert.rejects(dial(port, { role: 'client', channel: '/quiet', token: 'x' }), (err: Err) => err.code === 'ERR_RHOST_NO_SERVER');
    await assert.rejects(dial(port, { role: 'client', channel: '/nope', token: 'x' }), (err: Err) => err.code === 'ERR_RHOST_NO_SERVER', 'nor can a name that is no channel be told apart');
    const ok = await dial(port, { role: 'client', channel: '/svc', token: 'right' });
    ok.transport.destroy();
  });

  test('client agent streams reach the server agent, many at once, sha256-equal both ways', async () => {
    const echo = net.createServer({ allowHalfOpen: true }, (s) => s.on('error', () => {}).pipe(s));
    const echoPort = await listening(echo, cleanup);
    const { address } = await startTunnel(cleanup, { keys: { '/echo': 'k' } });
    await startServerAgent(cleanup, { tunnel: address, target: String(echoPort), channel: '/echo', key: 'k', token: 't' });
    const { port } = await startClientAgent(cleanup, { tunnel: address, channel: '/echo', token: 't' });
    await Promise.all(
      Array.from({ length: 30 }, async () => {
        const payload = randomBytes(200_000 + Math.floor(Math.random() * 300_000));
        const socket = await connect(port);
        socket.end(payload);
        assert.equal(sha256(await readToEnd(socket)), sha256(payload));
      }),
    );
  });

  test('a new token from the server agent drops the client agents that used the old one', async () => {
    const { address } = await startTunnel(cleanup, { keys: { '/t': 'k' }, authLockoutMs: 0 });
    const first = await startServerAgent(cleanup, { tunnel: address, target: '1', channel: '/t', key: 'k', token: 'old' });
    const { agent: client } = await startClientAgent(cleanup, { tunnel: address, channel: '/t', token: 'old' });
    const fatal = once(client, 'fatal') as Promise<[Err]>;
    await first.close();
    await startServerAgent(cleanup, { tunnel: address, target: '1', channel: '/t', key: 'k', token: 'new' });
    const [err] = await fatal;
    assert.equal(err.code, 'ERR_RHOST_BAD_TOKEN');
  });
});
