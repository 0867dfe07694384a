import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { createClientAgent, createServerAgent, createTunnel, type ClientAgent, type ServerAgent, type Tunnel } from '../../src/index.js';
import type { TunnelConfig } from '../../src/relay/config.js';
import type { ServerAgentConfig } from '../../src/agent/server-agent.js';
import type { ClientAgentConfig } from '../../src/agent/client-agent.js';

/** Things to close after a test, closed in reverse order. */
export class Cleanup {
  #steps: Array<() => unknown> = [];
  add(step: () => unknown): void {
    this.#steps.push(step);
  }
  async run(): Promise<void> {
    for (const step of this.#steps.reverse()) await step();
    this.#steps = [];
  }
}

/**
 * A listening server on a free loopback port. At cleanup, connections still
 * open (a service that never closes a client that left, say) are destroyed,
 * so that closing the server cannot hang.
 */
export async function listening<T extends net.Server>(server: T, cleanup: Cleanup, host = '127.0.0.1'): Promise<number> {
  const open = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    open.add(s);
    s.once('close', () => open.delete(s));
  });
  server.listen(0, host);
  await once(server, 'listening');
  cleanup.add(() => new Promise((resolve) => server.close(resolve)));
  cleanup.add(() => open.forEach((s) => s.destroy()));
  if (server instanceof http.Server) cleanup.add(() => server.closeAllConnections());
  return (server.address() as net.AddressInfo).port;
}

export async function startTunnel(cleanup: Cleanup, options: Partial<TunnelConfig> = {}): Promise<{ tunnel: Tunnel; port: number; address: string }> {
  const tunnel = createTunnel({ port: 0, ...options });
  const { port } = await tunnel.listen();
  cleanup.add(() => tunnel.close());
  return { tunnel, port, address: `127.0.0.1:${port}` };
}

export async function startServerAgent(cleanup: Cleanup, options: Partial<ServerAgentConfig> & { target: string }): Promise<ServerAgent> {
  const agent = createServerAgent(options);
  cleanup.add(() => agent.close());
  await agent.start();
  return agent;
}

export async function startClientAgent(cleanup: Cleanup, options: Partial<ClientAgentConfig>): Promise<{ agent: ClientAgent; port: number }> {
  const agent = createClientAgent({ listen: 0, ...options });
  cleanup.add(() => agent.close());
  const { port } = await agent.listen();
  await agent.ready();
  return { agent, port };
}

/** An HTTP request through `port`; resolves with status, headers and the whole body. */
export function request(
  port: number,
  options: http.RequestOptions & { body?: Buffer | string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, agent: false, ...options }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Connects a raw TCP socket. */
export async function connect(port: number): Promise<net.Socket> {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await once(socket, 'connect');
  return socket;
}

/** Reads a socket to its end. */
export async function readToEnd(socket: net.Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  socket.on('data', (d: Buffer) => parts.push(d));
  await once(socket, 'end');
  return Buffer.concat(parts);
}
