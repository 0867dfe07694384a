import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/**
 * A network namespace joined to this one by a veth pair: a second host on
 * this machine, whose link can be cut so that its packets vanish without a
 * FIN or RST. Needs root and iproute2.
 */
export class NetNamespace {
  readonly name: string;
  readonly hostIf: string;
  /** This side's address, reachable from inside. */
  readonly hostIp: string;
  /** The namespace's address. */
  readonly innerIp: string;

  constructor() {
    const id = randomBytes(3).toString('hex');
    this.name = `rhost-${id}`;
    this.hostIf = `rh${id}a`;
    const innerIf = `rh${id}b`;
    const octet = 1 + (parseInt(id.slice(0, 2), 16) % 250);
    this.hostIp = `10.213.${octet}.1`;
    this.innerIp = `10.213.${octet}.2`;
    const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'pipe' });
    ip('netns', 'add', this.name);
    ip('link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', innerIf);
    ip('link', 'set', innerIf, 'netns', this.name);
    ip('addr', 'add', `${this.hostIp}/30`, 'dev', this.hostIf);
    ip('link', 'set', this.hostIf, 'up');
    ip('netns', 'exec', this.name, 'ip', 'addr', 'add', `${this.innerIp}/30`, 'dev', innerIf);
    ip('netns', 'exec', this.name, 'ip', 'link', 'set', innerIf, 'up');
    ip('netns', 'exec', this.name, 'ip', 'link', 'set', 'lo', 'up');
  }

  /** Runs a command inside the namespace. */
  command(file: string, args: string[]): [string, string[]] {
    return ['ip', ['netns', 'exec', this.name, file, ...args]];
  }

  /** Cuts the link: from now on, packets either way are dropped in silence (no FIN, no RST). */
  cut(): void {
    execFileSync('ip', ['link', 'set', this.hostIf, 'down'], { stdio: 'pipe' });
  }

  destroy(): void {
    try {
      execFileSync('ip', ['link', 'del', this.hostIf], { stdio: 'pipe' });
    } catch {
      // gone with the namespace
    }
    execFileSync('ip', ['netns', 'del', this.name], { stdio: 'pipe' });
  }

  /** True when this machine lets the tests make namespaces (root with iproute2). */
  static available(): boolean {
    try {
      const probe = new NetNamespace();
      probe.destroy();
      return true;
    } catch {
      return false;
    }
  }
}
