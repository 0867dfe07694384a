import type net from 'node:net';
import { sniff } from '../protocol/index.js';

const EMPTY = Buffer.alloc(0);

/**
 * Classifies a new connection from its first bytes (docs/protocol.md §2).
 * Calls `done` once: `agent` or `user` with the bytes read so far (the socket
 * is left paused, nothing lost), or `null` when it closed first. A user that
 * sends nothing within `timeoutMs` is a user: server-speaks-first protocols
 * must not hang.
 */
export function sniffConnection(
  socket: net.Socket,
  timeoutMs: number,
  done: (kind: 'agent' | 'user' | null, first: Buffer) => void,
): void {
  let first: Buffer = EMPTY;
  let settled = false;
  const finish = (kind: 'agent' | 'user' | null): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('end', onEnd);
    socket.off('close', onClose);
    socket.pause();
    done(kind, first);
  };
  const onData = (chunk: Buffer): void => {
    first = first.length === 0 ? chunk : Buffer.concat([first, chunk]);
    const kind = sniff(first);
    if (kind !== 'more') finish(kind);
  };
  // A user that half-closes early is still a user; the bridge sees the end.
  const onEnd = (): void => finish('user');
  const onClose = (): void => finish(null);
  const timer = setTimeout(() => finish('user'), timeoutMs);
  socket.on('data', onData);
  socket.on('end', onEnd);
  socket.on('close', onClose);
}
