import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cleanup, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';
import { sshOptions, startSshd } from '../helpers/sshd.js';
import { requireBinaries, which } from '../helpers/system.js';

const run = promisify(execFile);
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('SSH through a client agent (the seed’s use case)', () => {
  const cleanup = new Cleanup();
  let dir = '';
  let clientPort = 0;
  let key = '';
  let ready = false;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rhost-ssh-'));
    cleanup.add(() => rmSync(dir, { recursive: true, force: true }));
    if (['sshd', 'ssh', 'scp', 'ssh-keygen'].some((b) => which(b) === null)) return; // the tests say what is missing
    const sshd = await startSshd(dir, cleanup);
    key = sshd.key;
    const { address } = await startTunnel(cleanup, { keys: { '/ssh': 'ssh-key' } });
    await startServerAgent(cleanup, { tunnel: address, target: String(sshd.port), channel: '/ssh', key: 'ssh-key', token: 'let-me-in' });
    ({ port: clientPort } = await startClientAgent(cleanup, { tunnel: address, channel: '/ssh', token: 'let-me-in' }));
    ready = true;
  });
  after(() => cleanup.run());

  test('ssh -p <client port> localhost runs a remote command', async (t) => {
    if (!requireBinaries(t, 'sshd', 'ssh', 'ssh-keygen')) return;
    assert.ok(ready);
    const { stdout } = await run('ssh', [...sshOptions(key), '-p', String(clientPort), `${userInfo().username}@127.0.0.1`, 'echo hello-from-behind-nat; echo $((6*7))'], { timeout: 30_000 });
    assert.equal(stdout, 'hello-from-behind-nat\n42\n');
  });

  test('a 20 MB file copied with scp arrives sha256-equal', async (t) => {
    if (!requireBinaries(t, 'sshd', 'scp', 'ssh-keygen')) return;
    assert.ok(ready);
    const data = randomBytes(20 * 1024 * 1024);
    writeFileSync(join(dir, 'upload.bin'), data);
    await run('scp', [...sshOptions(key), '-P', String(clientPort), join(dir, 'upload.bin'), `${userInfo().username}@127.0.0.1:${join(dir, 'arrived.bin')}`], { timeout: 60_000 });
    assert.equal(sha256(readFileSync(join(dir, 'arrived.bin'))), sha256(data));
    await run('scp', [...sshOptions(key), '-P', String(clientPort), `${userInfo().username}@127.0.0.1:${join(dir, 'arrived.bin')}`, join(dir, 'back.bin')], { timeout: 60_000 });
    assert.equal(sha256(readFileSync(join(dir, 'back.bin'))), sha256(data), 'and back down again');
  });
});
