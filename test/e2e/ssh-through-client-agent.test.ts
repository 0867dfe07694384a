import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cleanup, startClientAgent, startServerAgent, startTunnel } from '../helpers/rig.js';
import { freePort } from '../helpers/cli.js';
import { requireBinaries, which } from '../helpers/system.js';

const run = promisify(execFile);
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A real sshd on a free loopback port, with a generated host key and key-only auth. */
async function startSshd(dir: string, cleanup: Cleanup): Promise<{ port: number; key: string }> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'user_key')]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_key.pub')));
  const port = await freePort();
  const config = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${join(dir, 'host_key')}`,
    `PidFile ${join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'UsePAM no',
    'StrictModes no',
    'PermitRootLogin prohibit-password',
    'Subsystem sftp internal-sftp',
    'LogLevel INFO',
  ].join('\n');
  writeFileSync(join(dir, 'sshd_config'), `${config}\n`);
  try {
    mkdirSync('/run/sshd', { recursive: true }); // sshd's privilege-separation directory
  } catch {
    // not root: sshd then runs without privilege separation
  }
  const sshd: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  cleanup.add(async () => {
    if (sshd.exitCode === null) {
      sshd.kill();
      await new Promise((resolve) => sshd.once('exit', resolve));
    }
  });
  await new Promise<void>((resolve, reject) => {
    let log = '';
    sshd.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes('Server listening')) resolve();
    });
    sshd.once('exit', (code) => reject(new Error(`sshd exited (${code}): ${log}`)));
  });
  return { port, key: join(dir, 'user_key') };
}

function sshOptions(key: string): string[] {
  return ['-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR'];
}

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
