import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

/** bin/rhost.js, from dist/test/helpers. */
export const RHOST_BIN = fileURLToPath(new URL('../../../bin/rhost.js', import.meta.url));

/** A running `rhost` process whose output lines are kept and can be waited for. */
export class RhostProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<number | null>;
  #waiters: Array<{ pattern: RegExp; resolve: (line: string) => void }> = [];

  /**
   * `prefix` runs it under another command, e.g. `ip netns exec NAME`. It
   * logs JSON (`--log json`) unless told otherwise, so tests wait on
   * `event` fields and codes, not on the wording of messages.
   */
  constructor(args: string[], env: NodeJS.ProcessEnv = {}, prefix: string[] = []) {
    const log = args.includes('--log') || env.LOG !== undefined || args.length === 0 || args[0]!.startsWith('-') ? [] : ['--log', 'json'];
    const [file, ...rest] = [...prefix, process.execPath, RHOST_BIN, ...args, ...log];
    this.child = spawn(file!, rest, { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    // 'close', not 'exit': it comes after the output has been read to the end
    this.exited = once(this.child, 'close').then(([code]) => code as number | null);
    let buffered = '';
    this.child.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      const parts = buffered.split('\n');
      buffered = parts.pop()!;
      for (const line of parts) this.#line(line);
    });
    this.child.stderr!.on('data', (d: Buffer) => this.stderr.push(...d.toString().split('\n').filter(Boolean)));
  }

  #line(line: string): void {
    this.lines.push(line);
    this.#waiters = this.#waiters.filter((w) => (w.pattern.test(line) ? (w.resolve(line), false) : true));
  }

  /** Resolves with the first output line matching `pattern` (already printed or yet to come). */
  waitFor(pattern: RegExp): Promise<string> {
    const seen = this.lines.find((l) => pattern.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      this.#waiters.push({ pattern, resolve });
      this.exited.then((code) => reject(new Error(`rhost exited (${code}) before printing ${pattern}: ${this.stderr.join(' | ')}`)));
    });
  }

  /** The log lines that are JSON objects (`--log json`), parsed. */
  get events(): Array<Record<string, unknown>> {
    return this.lines.flatMap((l) => {
      try {
        const v = JSON.parse(l) as unknown;
        return v && typeof v === 'object' ? [v as Record<string, unknown>] : [];
      } catch {
        return [];
      }
    });
  }

  /**
   * Resolves with the first `--log json` entry whose `event` field is
   * `event` (and that `match` accepts): tests wait on fields and codes, not
   * on the wording of a message.
   */
  waitForEvent(event: string, match: (entry: Record<string, unknown>) => boolean = () => true): Promise<Record<string, unknown>> {
    const test = (line: string): boolean => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown>;
        return entry.event === event && match(entry);
      } catch {
        return false;
      }
    };
    return this.waitFor({ test } as RegExp).then((line) => JSON.parse(line) as Record<string, unknown>);
  }

  /** The port a tunnel (or a client agent) started with `--log json` listens on: what it logged, never guessed beforehand. */
  async listeningPort(): Promise<number> {
    return Number((await this.waitForEvent('listening')).port);
  }

  /** Sends a signal and resolves with the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/**
 * A port nothing listens on right now (taken from the kernel, then
 * released). Racy by nature: for daemons that cannot listen on port 0 and
 * say where, use `withFreePort`, which retries when the port was taken.
 */
async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Starts something that needs a port number in advance (nginx, sshd,
 * tinyproxy: they cannot report a port-0 bind) on a free port, and starts
 * it again on another when the port was taken in between: `start` rejects
 * with an error whose message says so (EADDRINUSE, "Address already in
 * use").
 */
export async function withFreePort<T>(start: (port: number) => Promise<T>, attempts = 5): Promise<T> {
  for (let i = 1; ; i++) {
    const port = await freePort();
    try {
      return await start(port);
    } catch (err) {
      if (i >= attempts || !/EADDRINUSE|already in use/i.test(String((err as Error).message))) throw err;
    }
  }
}
