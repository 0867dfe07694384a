import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Cleanup } from './rig.js';
import { withFreePort } from './cli.js';

const run = promisify(execFile);

/** A real sshd on a free loopback port, with a generated host key and key-only auth. */
export async function startSshd(dir: string, cleanup: Cleanup): Promise<{ port: number; key: string }> {
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'user_key')]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_key.pub')));
  const port = await withFreePort((p) => runSshd(dir, p, cleanup));
  return { port, key: join(dir, 'user_key') };
}

async function runSshd(dir: string, port: number, cleanup: Cleanup): Promise<number> {
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
  return port;
}

/** ssh/scp options for the test's key and throwaway host keys. */
export function sshOptions(key: string): string[] {
  return ['-i', key, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR'];
}
