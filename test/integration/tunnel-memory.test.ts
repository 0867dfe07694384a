import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { newNonce } from '../../src/protocol/index.js';
import { Cleanup, startTunnel } from '../helpers/rig.js';
import { RhostProcess } from '../helpers/cli.js';
import { until } from '../helpers/wait.js';
import { usedMemory } from '../helpers/system.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;

/** `node -e` text: PORT USERS; each user, from its own loopback address, uploads 1 MiB and waits. */
const UPLOADERS = `
const net = require('node:net');
const [port, users] = process.argv.slice(1).map(Number);
const body = Buffer.concat([Buffer.from('PUT /upload HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'), Buffer.alloc(1024 * 1024, 1)]);
for (let i = 0; i < users; i++) {
  const s = net.connect({ port, host: '127.0.0.1', localAddress: '127.0.' + (3 + (i >> 7)) + '.' + (1 + (i % 127)) });
  s.on('error', () => {});
  s.once('connect', () => s.end(body));
}
setInterval(() => {}, 1000);
`;

/**
 * What strangers can make the tunnel hold outside flow control is counted
 * in the memory account that turns new users away, and bounded.
 */
describe('memory the buffered-data limit sees', () => {
  const cleanup = new Cleanup();
  after(() => cleanup.run());

  test('uploads into an agent that stopped reading are counted; past the limit new users are turned away, and memory stays near it', async () => {
    const limit = 8 * MiB;
    const key = 'upload-key-0123456789';
    const { tunnel, port } = await startTunnel(cleanup, { keys: { '/': key }, maxBufferedBytes: limit, maxUsersPerIp: 10_000, maxConnRatePerIp: 0 });
    const agent = new RhostProcess(['server', '-t', `127.0.0.1:${port}`, '-s', '1', '-k', key]);
    cleanup.add(() => agent.stop('SIGKILL'));
    await agent.waitForEvent('serving');
    process.kill(agent.child.pid!, 'SIGSTOP'); // it reads nothing more: the tunnel must hold, or refuse
    cleanup.add(() => process.kill(agent.child.pid!, 'SIGCONT'));
    gc();
    const before = usedMemory();
    // The uploaders run in a process of their own: what their sockets still hold to send is not the tunnel's memory.
    const USERS = 300;
    const uploaders = spawn(process.execPath, ['-e', UPLOADERS, String(port), String(USERS)], { stdio: 'ignore' });
    cleanup.add(() => uploaders.kill('SIGKILL'));
    const settled = (): boolean => tunnel.stats().users + tunnel.stats().limits.usersRefused >= USERS;
    await until(settled, 'every user admitted or refused', 30_000);
    await until(() => tunnel.stats().bufferedBytes >= 0.7 * limit, 'what the admitted uploads hold to be counted', 10_000);
    // The refused ones got their 503 and are gone: what is left is what the tunnel holds for the carried.
    await until(() => tunnel.stats().sockets <= tunnel.stats().users + 1, 'the refused connections to close', 10_000);
    // Reads in flight on connections that just closed are still live for a moment: wait until what is held stops moving.
    let held = Infinity;
    await until(() => {
      gc();
      const now = usedMemory();
      const steady = Math.abs(now - held) < MiB;
      held = now;
      return steady;
    }, 'memory to settle', 10_000);
    const grown = (held - before) / MiB;
    const { bufferedBytes, users: carried, limits } = tunnel.stats();
    console.log(`uploads: ${carried} carried, ${limits.usersRefused} refused; ${(bufferedBytes / MiB).toFixed(1)} MiB counted, heap and Buffers +${grown.toFixed(1)} MiB`);
    assert.ok(limits.usersRefused > 0, 'the limit turned users away');
    assert.ok(bufferedBytes <= limit, `counted ${bufferedBytes} bytes, more than the limit`);
    assert.ok(grown < 12, `memory grew ${grown.toFixed(1)} MiB for a limit of 8 MiB`);
  });

  test('a WebSocket that has proven nothing may hold at most 8 KiB of an unfinished message', async () => {
    const { tunnel, port } = await startTunnel(cleanup, { keys: { '/': 'ws-key-0123456789' } });
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'connect');
    socket.write(
      [
        'GET /.rhost HTTP/1.1',
        'Host: x',
        'Connection: Upgrade',
        'Upgrade: websocket',
        'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Protocol: rhost.v1',
        'Rhost-Version: 2',
        'Rhost-Role: server',
        'Rhost-Channel: /',
        `Rhost-Nonce: ${newNonce()}`,
        '',
        '',
      ].join('\r\n'),
    );
    const [answer] = (await once(socket, 'data')) as [Buffer];
    assert.match(answer.toString('latin1'), /^HTTP\/1\.1 101 /, 'a stranger gets the upgrade: the proofs come inside it');
    const header = Buffer.from([0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    header.writeUInt32BE(4 * MiB, 6); // an AUTH that claims to be 4 MiB long
    const closed = once(socket, 'close');
    socket.write(header);
    for (let i = 0; i < 16 && !socket.destroyed; i++) socket.write(Buffer.alloc(1024));
    await closed;
    await until(() => tunnel.stats().bufferedBytes === 0 && tunnel.stats().pending === 0, 'nothing held after');
  });
});
