import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, run, start, stop, waitForPort } from './procs.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));
const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

/**
 * A forked bench worker (bench/lib/worker.ts) and its first message.
 * `idle`: it runs under SCHED_IDLE, on CPU nothing else wants: a stand-in
 * for a load from other machines, whose CPU this small one would not pay.
 */
export async function worker<T = Record<string, unknown>>(role: string, options: object, idle = false): Promise<{ child: ChildProcess; first: T }> {
  const how = idle ? { execPath: 'chrt', execArgv: ['--idle', '0', process.execPath] } : {};
  const child = fork(WORKER, [role, JSON.stringify(options)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...how });
  const [first] = (await Promise.race([once(child, 'message'), once(child, 'exit').then(() => Promise.reject(new Error(`worker ${role} exited`)))])) as [T];
  return { child, first };
}

/** Asks a worker something over IPC and resolves with its answer. */
export async function ask<T>(child: ChildProcess, question: string): Promise<T> {
  const answer = once(child, 'message') as Promise<[T]>;
  child.send(question);
  return (await answer)[0];
}

/** A way from the load generator to a service: its port, and what to stop afterwards. */
export interface Path {
  name: string;
  port: number;
  /** Processes whose memory counts for this path (tunnel, agent). */
  pids: Record<string, number>;
  /** The rhost workers, for IPC questions. */
  workers?: Record<string, ChildProcess>;
  stop(): Promise<void>;
}

export function direct(target: number): Path {
  return { name: 'direct', port: target, pids: {}, stop: async () => {} };
}

function nginxConf(dir: string, body: string): string {
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `load_module ${NGINX_STREAM_MODULE};
daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log error;
events { worker_connections 20000; }
${body}\n`,
  );
  return conf;
}

/** nginx serving a small page on a free port: the service of the HTTP scenarios; over TLS with `tls` (PEM files). */
export async function nginxPage(tls?: { cert: string; key: string }): Promise<{ port: number; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'rhost-bench-nginx-'));
  const port = await freePort();
  writeFileSync(join(dir, 'index.html'), `<!doctype html><title>bench</title><p>${'x'.repeat(512)}</p>\n`);
  const conf = nginxConf(
    dir,
    `http { access_log off; keepalive_requests 1000000; client_body_temp_path ${dir}/b; proxy_temp_path ${dir}/p; fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;
  server { listen 127.0.0.1:${port} ${tls ? 'ssl ' : ''}reuseport backlog=4096; root ${dir};${tls ? ` ssl_certificate ${tls.cert}; ssl_certificate_key ${tls.key};` : ''} } }`,
  );
  const child = start('nginx', ['-p', dir, '-c', conf]);
  await waitForPort(port);
  return { port, stop: () => stop(child) };
}

/** nginx's stream proxy in front of `target`: one C hop, the first baseline. */
export async function nginxStream(target: number): Promise<Path> {
  const dir = mkdtempSync(join(tmpdir(), 'rhost-bench-stream-'));
  const port = await freePort();
  const conf = nginxConf(dir, `stream { server { listen 127.0.0.1:${port} backlog=4096; proxy_pass 127.0.0.1:${target}; } }`);
  const child = start('nginx', ['-p', dir, '-c', conf]);
  await waitForPort(port);
  return { name: 'nginx stream proxy', port, pids: { proxy: child.pid! }, stop: () => stop(child) };
}

/**
 * ssh with aes128-gcm to a local sshd, forwarding a free port to `target`:
 * `-R` (the sshd listens: the second baseline) or `-L` (ssh listens; two
 * hops, as rhost has).
 */
async function sshForward(target: number, flag: '-R' | '-L'): Promise<Path> {
  const dir = mkdtempSync(join(tmpdir(), 'rhost-bench-ssh-'));
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'user')]);
  writeFileSync(join(dir, 'keys'), readFileSync(join(dir, 'user.pub')));
  const sshdPort = await freePort();
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${sshdPort}`, 'ListenAddress 127.0.0.1', `HostKey ${join(dir, 'host')}`, `PidFile ${join(dir, 'pid')}`,
      `AuthorizedKeysFile ${join(dir, 'keys')}`, 'PasswordAuthentication no', 'UsePAM no', 'StrictModes no',
      'PermitRootLogin prohibit-password', 'AllowTcpForwarding yes', 'MaxSessions 100', 'LogLevel ERROR',
    ].join('\n') + '\n',
  );
  const sshd = start('/usr/sbin/sshd', ['-D', '-e', '-f', join(dir, 'sshd_config')]);
  await waitForPort(sshdPort);
  const port = await freePort();
  const ssh = start('ssh', [
    '-N', '-i', join(dir, 'user'), '-p', String(sshdPort), '-c', 'aes128-gcm@openssh.com',
    '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'ExitOnForwardFailure=yes', '-o', 'LogLevel=ERROR',
    flag, `127.0.0.1:${port}:127.0.0.1:${target}`, `${userInfo().username}@127.0.0.1`,
  ]);
  await waitForPort(port);
  return {
    name: `ssh ${flag} (aes128-gcm)`,
    port,
    pids: { sshd: sshd.pid!, ssh: ssh.pid! },
    stop: async () => {
      await stop(ssh);
      await stop(sshd);
    },
  };
}

/** `ssh -R` with aes128-gcm to a local sshd: the second baseline. */
export const sshReverse = (target: number): Promise<Path> => sshForward(target, '-R');

/** `ssh -L` with aes128-gcm through a local sshd: two hops, as rhost has. */
export const sshLocal = (target: number): Promise<Path> => sshForward(target, '-L');

/** A one-hop Node `net` pipe in front of `target`: Node's floor. */
export async function nodePipe(target: number): Promise<Path> {
  const pipe = await worker<{ port: number }>('nodePipe', { target });
  return { name: 'node net pipe', port: pipe.first.port, pids: { pipe: pipe.child.pid! }, stop: () => stop(pipe.child) };
}

export interface RhostPathOptions {
  /** Put the server agent behind a delay line: `delayMs` each way, `queueBytes` in flight. */
  delay?: { delayMs: number; queueBytes: number };
  /** Users come through a client agent instead of the public port. */
  clientAgent?: boolean;
  /** More tunnel options (limits for the idle-stream scenario). */
  tunnel?: Record<string, unknown>;
  session?: Record<string, unknown>;
  /** How the agent reaches the tunnel: the raw upgrade (default), over TLS, or WebSocket (ws, wss). */
  transport?: 'raw' | 'tls' | 'ws' | 'wss';
  /** The server agent's channel (default `/`) and more of its options (public, http). */
  channel?: string;
  agent?: Record<string, unknown>;
  /** Added to the path's name, e.g. `, routed by Host`. */
  label?: string;
}

/** A self-signed certificate for localhost, for the TLS rows. */
export async function selfSigned(): Promise<{ cert: string; key: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'rhost-bench-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost']);
  return { cert, key };
}

/** The tunnel and a server agent, each in its own process, in front of `target`. */
export async function rhost(target: number, options: RhostPathOptions = {}): Promise<Path> {
  const session = { pingIntervalMs: 8000, ...options.session };
  const kind = options.transport ?? 'raw';
  const secure = kind === 'tls' || kind === 'wss';
  const pem = secure ? await selfSigned() : null;
  const tunnel = await worker<{ port: number }>('rhost', {
    mode: 'tunnel',
    // The load comes from one address, far past the per-address defenses (rate, share of users): those are the floods' to measure.
    options: { port: 0, keys: { [options.channel ?? '/']: 'k' }, session, maxConnRatePerIp: 0, maxUsersPerIp: 1_000_000, maxClientsPerIp: 1_000, ...(pem ? { tlsCert: pem.cert, tlsKey: pem.key } : {}), ...options.tunnel },
  });
  let agentTunnel = tunnel.first.port;
  const stops: Array<() => Promise<void>> = [];
  if (options.delay) {
    const proxy = await worker<{ port: number }>('delayProxy', { target: tunnel.first.port, ...options.delay });
    agentTunnel = proxy.first.port;
    stops.push(() => stop(proxy.child));
  }
  const scheme = { raw: 'http', tls: 'https', ws: 'ws', wss: 'wss' }[kind];
  const agent = await worker('rhost', {
    mode: 'server',
    options: {
      tunnel: `${scheme}://${secure ? 'localhost' : '127.0.0.1'}:${agentTunnel}`,
      ...(pem ? { ca: readFileSync(pem.cert, 'utf8') } : {}),
      target: String(target),
      key: 'k',
      token: 't',
      session,
      ...(options.channel ? { channel: options.channel } : {}),
      ...options.agent,
    },
  });
  let port = tunnel.first.port;
  const pids: Record<string, number> = { tunnel: tunnel.child.pid!, agent: agent.child.pid! };
  if (options.clientAgent) {
    const client = await worker<{ port: number }>('rhost', {
      mode: 'client',
      options: { tunnel: `127.0.0.1:${tunnel.first.port}`, token: 't', listen: 0, session, ...(options.channel ? { channel: options.channel } : {}) },
    });
    port = client.first.port;
    pids.client = client.child.pid!;
    stops.push(() => stop(client.child));
  }
  const label = { raw: '', tls: ', agent over TLS', ws: ', agent over WebSocket', wss: ', agent over WebSocket+TLS' }[kind];
  return {
    name: `${options.clientAgent ? 'rhost via client agent' : 'rhost'}${label}${options.label ?? ''}`,
    port,
    pids,
    workers: { tunnel: tunnel.child, agent: agent.child },
    stop: async () => {
      for (const s of stops) await s();
      await stop(agent.child);
      await stop(tunnel.child);
    },
  };
}

/** A delay line straight to `target`: direct TCP over the same long path. */
export async function delayed(target: number, delay: { delayMs: number; queueBytes: number }): Promise<Path> {
  const proxy = await worker<{ port: number }>('delayProxy', { target, ...delay });
  return { name: 'direct over the delay line', port: proxy.first.port, pids: {}, stop: () => stop(proxy.child) };
}

/** iperf3's server on a free port. */
export async function iperfServer(): Promise<{ port: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const child = start('iperf3', ['-s', '-p', String(port)]);
  await waitForPort(port);
  return { port, stop: () => stop(child) };
}
