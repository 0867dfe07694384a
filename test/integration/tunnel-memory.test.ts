import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { newNonce } from '../../src/protocol/index.js';
import { Cleanup, startTunnel } from '../helpers/rig.js';
import { RhostProcess } from '../helpers/cli.js';
import { until } from '../helpers/mux.js';
import { usedMemory } from '../helpers/system.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;

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
    await agent.waitFor(/serving/);
    process.kill(agent.child.pid!, 'SIGSTOP'); // it reads nothing more: the tunnel must hold, or refuse
    cleanup.add(() => process.kill(agent.child.pid!, 'SIGCONT'));
    gc();
    const before = usedMemory();
    const upload = Buffer.alloc(MiB, 1);
    const users: net.Socket[] = [];
    const USERS = 300;
    for (let i = 0; i < USERS; i++) {
      const s = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.${3 + (i >> 7)}.${1 + (i % 127)}` });
      s.on('error', () => {});
      s.once('connect', () => s.end(Buffer.concat([Buffer.from('PUT /upload HTTP/1.1\r\nHost: x\r\n\r\n'), upload])));
      users.push(s);
    }
    cleanup.add(() => users.forEach((s) => s.destroy()));
    const settled = (): boolean => tunnel.stats().users + tunnel.stats().limits.usersRefused >= USERS;
    await until(settled, 'every user admitted or refused', 30_000);
    await until(() => tunnel.stats().bufferedBytes >= 0.7 * limit, 'what the admitted uploads hold to be counted', 10_000);
    gc();
    const grown = (usedMemory() - before) / MiB;
    const { bufferedBytes, users: carried, limits } = tunnel.stats();
    console.log(`uploads: ${carried} carried, ${limits.usersRefused} refused; ${(bufferedBytes / MiB).toFixed(1)} MiB counted, heap and Buffers +${grown.toFixed(1)} MiB`);
    assert.ok(limits.usersRefused > 0, 'the limit turned users away');
    assert.ok(bufferedBytes <= limit, `counted ${bufferedBytes} bytes, more than the limit`);
    assert.ok(grown < 20, `memory grew ${grown.toFixed(1)} MiB for a limit of 8 MiB`);
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
