import net from 'node:net';
import type { Cleanup } from './rig.js';
import { listening } from './rig.js';

/**
 * A TCP relay in front of `target` that can turn into a black hole: after
 * `blackhole()`, the connections it carries stay open but forward nothing,
 * either way, like a link whose packets are silently dropped. Connections
 * made afterwards are relayed normally.
 */
export async function blackholeRelay(cleanup: Cleanup, target: number): Promise<{ port: number; blackhole: () => void; carried: () => number }> {
  const live = new Set<{ dead: boolean }>();
  let count = 0;
  const server = net.createServer((client) => {
    count++;
    const link = { dead: false };
    live.add(link);
    const upstream = net.connect(target, '127.0.0.1');
    const forward = (from: net.Socket, to: net.Socket): void => {
      from.on('data', (d: Buffer) => link.dead || to.write(d));
      from.on('end', () => link.dead || to.end());
    };
    forward(client, upstream);
    forward(upstream, client);
    const close = (): void => {
      live.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', () => link.dead || close());
    upstream.on('close', () => link.dead || close());
    cleanup.add(close);
  });
  const port = await listening(server, cleanup);
  return {
    port,
    blackhole: () => {
      for (const link of live) link.dead = true;
      live.clear();
    },
    carried: () => count,
  };
}
