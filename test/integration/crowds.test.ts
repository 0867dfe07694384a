import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { Cleanup, listening, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';
import { until } from '../helpers/wait.js';
import { rawHandshake } from '../helpers/handshake.js';

/** A raw connection from a chosen loopback source address. */
async function connectFrom(port: number, localAddress: string): Promise<net.Socket> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress });
  socket.on('error', () => {});
  await once(socket, 'connect');
  return socket;
}

/** A GET from `localAddress`; resolves with the status line, or `reset` / `closed` when no answer came. */
async function get(port: number, localAddress: string, delayMs = 0): Promise<string> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress });
  let answer = '';
  return new Promise((resolve) => {
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNRESET' ? 'reset' : String(err.code)));
    socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    socket.on('close', () => resolve(answer ? answer.split('\r\n', 1)[0]! : 'closed'));
    socket.once('connect', () => setTimeout(() => socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), delayMs));
  });
}

/** A service that answers an HTTP GET and holds any other connection open, saying nothing. */
function holdingService(): net.Server {
  return net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', (d: Buffer) => {
      if (d.toString('latin1').startsWith('GET ')) s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
    });
  });
}

describe('crowds of strangers', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('anonymous users that send a byte and go silent cannot lock out newcomers, nor starve client agents', async () => {
    const appPort = await listening(holdingService(), cleanup);
    const { tunnel, port, address } = await startTunnel(cleanup, {
      keys: { '/': 'root-key-0123456789', '/c': 'c-key-0123456789' },
      maxUsers: 100,
      maxUsersPerIp: 1000, // so that eviction, not the per-address share, is what lets newcomers in
      userEvictIdleMs: 400,
      maxConnRatePerIp: 0,
    });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'root-key-0123456789' });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), channel: '/c', key: 'c-key-0123456789', token: 'tok' });
    const { port: clientPort } = await startClientAgent(cleanup, { tunnel: address, channel: '/c', token: 'tok' });
    const crowd: net.Socket[] = [];
    for (let i = 0; i < 100; i++) {
      const s = await connectFrom(port, `127.0.5.${1 + (i % 5)}`);
      s.write('X'); // a user, at once: then silence
      crowd.push(s);
    }
    cleanup.add(() => crowd.forEach((s) => s.destroy()));
    await until(() => tunnel.stats().users === 100, 'the crowd holds every anonymous slot');
    const talker = crowd[0]!; // the oldest of all, but it keeps talking
    const chatter = setInterval(() => talker.write('.'), 50);
    cleanup.add(() => clearInterval(chatter));
    assert.equal(await get(clientPort, '127.0.0.1'), 'HTTP/1.1 200 OK', 'a client agent’s stream goes through at once: its pool is its own');
    await new Promise((resolve) => setTimeout(resolve, 450)); // the crowd has been silent 400 ms
    // Newcomers that stay: each needs a slot of its own, and takes it from the longest silent.
    const stayers: net.Socket[] = [];
    for (let i = 0; i < 30; i++) {
      const s = await connectFrom(port, `127.0.6.${i + 1}`);
      s.write('X');
      stayers.push(s);
    }
    cleanup.add(() => stayers.forEach((s) => s.destroy()));
    await until(() => tunnel.stats().limits.usersEvicted === 30, 'thirty of the crowd evicted for thirty newcomers');
    assert.equal(await get(port, '127.0.6.99'), 'HTTP/1.1 200 OK', 'and a request after them is served');
    assert.ok(!talker.destroyed, 'a user with traffic is never evicted, however old');
    assert.ok(stayers.every((s) => !s.destroyed), 'the newcomers are carried');
  });

  test('a churning crowd of silent connections cannot evict a user of another network whose first bytes come 200 ms late', async () => {
    const appPort = await listening(holdingService(), cleanup);
    const { tunnel, port, address } = await startTunnel(cleanup, {
      keys: { '/': 'root-key-0123456789' },
      maxPendingHandshakes: 64,
      sniffTimeoutMs: 5000,
      maxConnRatePerIp: 0,
    });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'root-key-0123456789' });
    let flooding = true;
    let dropped = 0;
    const churn = (i: number): void => {
      if (!flooding) return;
      const s = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.7.${1 + (i % 5)}` });
      s.on('error', () => {});
      s.once('close', () => {
        dropped++;
        setImmediate(() => churn(i)); // replaced as fast as it is dropped
      });
      cleanup.add(() => s.destroy());
    };
    for (let i = 0; i < 200; i++) churn(i);
    await until(() => dropped > 500, 'the crowd churning through the pending table', 20_000);
    let ok = 0;
    for (let i = 0; i < 15; i++) if ((await get(port, '127.0.8.1', 200)) === 'HTTP/1.1 200 OK') ok++;
    flooding = false;
    console.log(`churn: ${dropped} of the crowd dropped; the late user succeeded ${ok} of 15 times; ${tunnel.stats().limits.pendingDropped} pending dropped in all`);
    assert.equal(ok, 15);
  });

  test('new connections past an address’s rate are refused at once; a user from elsewhere is served', async () => {
    const appPort = await listening(holdingService(), cleanup);
    const { tunnel, port, address } = await startTunnel(cleanup, { keys: { '/': 'root-key-0123456789' }, maxConnRatePerIp: 20, connBurstPerIp: 40 });
    await startServerAgent(cleanup, { tunnel: address, target: String(appPort), key: 'root-key-0123456789' });
    const answers = await Promise.all(Array.from({ length: 200 }, () => get(port, '127.0.9.1')));
    const served = answers.filter((a) => a === 'HTTP/1.1 200 OK').length;
    assert.ok(served >= 40 && served < 80, `${served} of 200 served: the burst, and the rate`);
    assert.ok(tunnel.stats().limits.rateRefused >= 120, `${tunnel.stats().limits.rateRefused} refused by the rate`);
    assert.equal(await get(port, '127.0.10.1'), 'HTTP/1.1 200 OK', 'another address is untouched');
  });

  test('one token holder from one address cannot take every client-agent slot of a channel', async () => {
    const { port, address } = await startTunnel(cleanup, { keys: { '/c': 'c-key-0123456789' }, maxClientsPerIp: 2 });
    await startServerAgent(cleanup, { tunnel: address, target: '1', channel: '/c', key: 'c-key-0123456789', token: 'tok' });
    const from = async (ip: string) => {
      const s = await connectFrom(port, ip);
      cleanup.add(() => s.destroy());
      return rawHandshake(s, { role: 'client', channel: '/c', token: 'tok' });
    };
    assert.ok((await from('127.0.11.1')).ok);
    assert.ok((await from('127.0.11.1')).ok);
    const third = await from('127.0.11.1');
    assert.equal(!third.ok && third.code, 'ERR_RHOST_BUSY');
    assert.ok((await from('127.0.11.2')).ok, 'another address still subscribes');
  });
});
