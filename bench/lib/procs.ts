import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

/** bin/rhost.js from dist/bench/lib. */
export const RHOST = fileURLToPath(new URL('../../../bin/rhost.js', import.meta.url));

/** Child processes started by the bench; all are killed at exit. */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

/** Starts a process; its output is kept for error messages. */
export function start(file: string, args: string[], options: SpawnOptions = {}): ChildProcess & { output: () => string } {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options }) as ChildProcess & { output: () => string };
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  child.output = () => output;
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await once(child, 'exit');
}

/** Runs a command to its end; resolves with its stdout. */
export async function run(file: string, args: string[], timeoutMs = 120_000): Promise<string> {
  const child = start(file, args);
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = await once(child, 'exit');
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${code}: ${child.output()}`);
  return stdout;
}

/** A free loopback port. */
export async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once something accepts on `port`. */
export async function waitForPort(port: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Resolves once the child printed a line matching `pattern`. */
export function waitForOutput(child: ChildProcess & { output: () => string }, pattern: RegExp, timeoutMs = 15_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): void => {
      if (pattern.test(child.output())) {
        clearTimeout(timer);
        child.stdout?.off('data', check);
        resolve();
      }
    };
    const timer = setTimeout(() => reject(new Error(`no ${pattern} in: ${child.output()}`)), timeoutMs);
    child.stdout?.on('data', check);
    check();
  });
}

/** CPU time a process has used, user and system, in µs (from /proc: clock ticks of 10 ms). */
export function cpuOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000; // utime and stime, fields 14 and 15
}

/** Resident memory of a process, in bytes. */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
