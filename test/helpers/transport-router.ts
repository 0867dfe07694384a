import net from 'node:net';
import type { Cleanup } from './rig.js';
import { listening } from './rig.js';

/** What a router does with a connection's request head: answer it itself, hang up, or pass it (maybe rewritten) upstream. */
export type RouterDecision = { answer: string } | { close: true } | { forward: string };

/** A router in front of the tunnel, seen from the test. */
export interface RecordingRouter {
  port: number;
  /** The request head of every connection it accepted, in arrival order. */
  heads: string[];
  /** Resolves once at least `count` heads have arrived. */
  headsSeen(count: number): Promise<void>;
  /** Destroys every connection it carries, both sides, as a router restart does; new ones are routed as before. */
  dropAll(): void;
}

/** The `Upgrade:` header of a request head, lower-cased, or '' when it has none. */
export function upgradeOf(head: string): string {
  return /^upgrade:[ \t]*(.*?)[ \t]*$/im.exec(head)?.[1]?.toLowerCase() ?? '';
}

/** True when the head asks for a WebSocket upgrade. */
export const isWebSocket = (head: string): boolean => upgradeOf(head) === 'websocket';

/**
 * A router in front of `upstreamPort` (on 127.0.0.1) that reads each
 * connection's request head, records it, and lets `decide` choose; by
 * default everything is passed on unchanged. What comes after the head is
 * relayed as is, so an upgraded connection stays open through it.
 */
export async function recordingRouter(cleanup: Cleanup, upstreamPort: number, decide: (head: string) => RouterDecision = (head) => ({ forward: head })): Promise<RecordingRouter> {
  const heads: string[] = [];
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const live = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    live.add(s);
    s.once('close', () => live.delete(s));
  };
  const server = net.createServer((client) => {
    track(client);
    client.on('error', () => {});
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) return;
      client.off('data', onData);
      const head = buffered.subarray(0, end + 4).toString('latin1');
      const rest = buffered.subarray(end + 4);
      heads.push(head);
      for (const w of waiters.filter((w) => heads.length >= w.count)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
      const decision = decide(head);
      if ('close' in decision) return void client.destroy();
      if ('answer' in decision) return void client.write(decision.answer); // and keep the connection open, as keep-alive routers do
      const upstream = net.connect(upstreamPort, '127.0.0.1');
      track(upstream);
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.write(decision.forward);
      upstream.write(rest);
      client.pipe(upstream).pipe(client);
    };
    client.on('data', onData);
  });
  const port = await listening(server, cleanup);
  const dropAll = (): void => live.forEach((s) => s.destroy());
  cleanup.add(dropAll);
  return {
    port,
    heads,
    headsSeen: (count) => (heads.length >= count ? Promise.resolve() : new Promise((resolve) => waiters.push({ count, resolve }))),
    dropAll,
  };
}
