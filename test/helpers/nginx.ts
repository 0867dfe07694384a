import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withFreePort } from './cli.js';
import type { Cleanup } from './rig.js';
import { which } from './system.js';

/** Resolves once something accepts connections on `port`. */
export async function waitForPort(port: number, timeoutMs = 10_000, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * A real nginx in the foreground on a free port, with `http` as the inside of
 * its http block (use `PORT` for the listening port). Its files live in a
 * temporary prefix.
 */
export function startNginx(cleanup: Cleanup, http: string, extraMain = ''): Promise<{ port: number; dir: string }> {
  return withFreePort((port) => startNginxOn(port, cleanup, http, extraMain));
}

async function startNginxOn(port: number, cleanup: Cleanup, http: string, extraMain: string): Promise<{ port: number; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'rhost-nginx-'));
  const conf = `
daemon off;
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
${extraMain}
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  ${http.replaceAll('PORT', String(port))}
}
`;
  writeFileSync(join(dir, 'nginx.conf'), conf);
  const nginx = spawn(which('nginx')!, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  nginx.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => nginx.once('exit', () => resolve()));
  cleanup.add(async () => {
    if (nginx.exitCode === null) nginx.kill('SIGTERM');
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  await Promise.race([waitForPort(port), exited.then(() => Promise.reject(new Error(`nginx exited: ${stderr}`)))]);
  return { port, dir };
}

/** The proxy block of a typical PaaS router: HTTP/1.1 upstream, Upgrade and Connection passed on. */
export function paasRouter(upstreamPort: number, extra = ''): string {
  return `
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:PORT;
    location / {
      proxy_pass http://127.0.0.1:${upstreamPort};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      ${extra}
    }
  }`;
}
